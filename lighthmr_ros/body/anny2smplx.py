"""Anny meshes in SMPL-X topology, through the correspondence file Anny's authors publish.

3DPW, BEDLAM and AGORA are annotated in SMPL / SMPL-X; an Anny model (a student or the Multi-HMR-Anny
teacher) is measured on them by re-sampling its mesh on SMPL-X's vertices and regressing SMPL-X's joints
from that mesh, as methods without an SMPL skeleton are evaluated.

``anny2smplx.pth`` is part of Anny's non-commercial data (``noncommercial.zip``, which
``anny.paths.get_anny2smplx_data_path()`` downloads to ``~/.cache/anny/noncommercial/``). Its keys, as
``anny.models.smpl`` reads them:
  - ``anny2dst_vertex_indices`` (V_smplx, 3) int64 and ``anny2dst_barycentric_coordinates`` (three
    (V_smplx,) tensors, or one (3, V_smplx)): each SMPL-X vertex as a barycentric blend of three Anny
    vertices (rows sum to 1);
  - ``dst_faces`` (SMPL-X faces), and the reverse map ``dst2anny_vertex_indices`` (V_anny, 3) /
    ``dst2anny_barycentric_coordinates`` with ``anny_faces``, whose size tells which Anny mesh the file
    indexes: the default model's 13,718 vertices or the full base mesh's 19,158 (the teacher's); either is
    mapped onto the checkpoint's own mesh through the base-mesh indices.
Nothing here downloads: the file is the user's (its licence is non-commercial).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.body.base import BodyModel
from lighthmr_ros.body.correspondence import mesh_positions
from lighthmr_ros.errors import BodyModelError

FILE_NAME = "anny2smplx.pth"
REQUIRED_KEYS = ("anny2dst_vertex_indices", "anny2dst_barycentric_coordinates")


def default_anny2smplx_path() -> Path | None:
    """Where anny keeps the file once downloaded (``$ANNY_CACHE_DIR`` or ~/.cache/anny), if it is there."""
    try:
        from anny.paths import get_anny_cache_path
    except ImportError:
        return None
    path = Path(get_anny_cache_path()) / "noncommercial" / FILE_NAME
    return path if path.is_file() else None


def _anny_meshes() -> dict[int, np.ndarray]:
    """Vertex count -> base-mesh indices of the Anny meshes a correspondence file can be made on."""
    from lighthmr_ros.body.anny_model import FULLBODY_VERTICES, _load_core

    default = _load_core().base_mesh_vertex_indices.detach().cpu().numpy()
    return {len(default): default, FULLBODY_VERTICES: np.arange(FULLBODY_VERTICES)}


def _barycentric(value, rows: int, path: Path) -> torch.Tensor:
    try:
        w = torch.stack([torch.as_tensor(c) for c in value]) if isinstance(value, list | tuple) else value
        w = torch.as_tensor(w, dtype=torch.float64)
    except (TypeError, RuntimeError) as exc:
        raise BodyModelError(f"{path}: anny2dst_barycentric_coordinates is not three weight arrays ({exc})") from exc
    if w.shape == (rows, 3):
        w = w.T
    if w.shape != (3, rows):
        raise BodyModelError(
            f"{path}: anny2dst_barycentric_coordinates has shape {tuple(w.shape)}, expected (3, {rows})"
        )
    if not torch.isfinite(w).all() or (w.sum(0) - 1).abs().max() > 1e-3:
        raise BodyModelError(f"{path}: barycentric weights must be finite and sum to 1 for every SMPL-X vertex")
    return w.T.contiguous()  # (V_smplx, 3)


def _file_mesh_size(data: dict) -> int | None:
    if "dst2anny_vertex_indices" in data:
        return int(torch.as_tensor(data["dst2anny_vertex_indices"]).shape[0])
    if "anny_faces" in data:
        return int(torch.as_tensor(data["anny_faces"]).max()) + 1
    return None


@dataclass
class AnnyToSMPLX:
    """Re-samples an Anny model's mesh on SMPL-X's vertices and regresses SMPL-X's joints from it."""

    indices: torch.Tensor  # (V_smplx, 3) into the Anny model's own vertices
    weights: torch.Tensor  # (V_smplx, 3)
    smplx: BodyModel  # the SMPLXBody whose regressors give the joints (and whose mesh is the target)
    source: str

    @classmethod
    def load(cls, path: str | Path, body: BodyModel, smplx: BodyModel) -> AnnyToSMPLX:
        """The correspondence for ``body`` (an Anny model's body) onto ``smplx`` (an SMPLXBody)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise BodyModelError(
                f"{path} does not exist: anny2smplx.pth comes with Anny's non-commercial data "
                "(python -c 'import anny.paths as p; p.get_anny2smplx_data_path()' downloads it)"
            )
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BodyModelError(f"{path} is not a readable torch file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(data, dict) or any(k not in data for k in REQUIRED_KEYS):
            have = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise BodyModelError(f"{path} is not Anny's anny2smplx.pth: it needs {REQUIRED_KEYS}, has {have}")
        idx = torch.as_tensor(data["anny2dst_vertex_indices"])
        rows = int(smplx.spec.num_vertices)
        if idx.dtype.is_floating_point or idx.shape != (rows, 3):
            raise BodyModelError(
                f"{path} maps {tuple(idx.shape)} SMPL-X vertex indices, the SMPL-X model file has {rows} "
                "vertices: use the SMPL-X model the file was made for"
            )
        weights = _barycentric(data["anny2dst_barycentric_coordinates"], rows, path)
        own = body.spec.num_vertices
        size = _file_mesh_size(data)
        idx = idx.long().numpy()
        if size is None or size == own:
            if idx.min() < 0 or idx.max() >= own:
                raise BodyModelError(f"{path} indexes Anny vertices up to {idx.max()}; the model's mesh has {own}")
        else:
            meshes = _anny_meshes()
            if getattr(body, "anny", None) is None or size not in meshes:
                raise BodyModelError(
                    f"{path} is made on an Anny mesh of {size} vertices; the checkpoint's {body.spec.name} mesh "
                    f"has {own}, and no map between them is known"
                )
            idx, lacking = mesh_positions(body, meshes[size][idx])
            if lacking:
                raise BodyModelError(f"{path} blends {lacking} Anny vertices that the {body.spec.name} mesh lacks")
        return cls(torch.as_tensor(idx), weights.float(), smplx, str(path))

    def vertices(self, anny_vertices: torch.Tensor) -> torch.Tensor:
        """(P, V_anny, 3) -> (P, V_smplx, 3)."""
        idx = self.indices.to(anny_vertices.device)
        w = self.weights.to(anny_vertices.device, anny_vertices.dtype)
        return (anny_vertices[:, idx] * w[None, :, :, None]).sum(2)

    def joints(self, smplx_vertices: torch.Tensor) -> torch.Tensor:
        """(P, V_smplx, 3) -> SMPL-X's joints regressed from the mesh, in its joint order."""
        return self.smplx.joints_from_vertices(smplx_vertices)


__all__ = ["AnnyToSMPLX", "default_anny2smplx_path", "FILE_NAME"]
