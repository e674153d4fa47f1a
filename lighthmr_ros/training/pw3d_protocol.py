"""3DPW's standard evaluation protocol (the one Multi-HMR's table and the methods it compares with use).

Facts (shared datasets notes, section 4; naver/multi-hmr train.py and nkolot/SPIN, read for facts only):
  - ground truth: the GENDERED SMPL mesh of each actor in the camera frame, V_cam = R (SMPL(theta, beta)
    + trans) + t, centred on its own pelvis (SMPL joint 0 of that posed, translated mesh);
  - prediction: the SMPL-X vertices mapped to SMPL topology by the linear map of ``smplx2smpl.pkl``
    (``matrix``, 6890 x 10475), centred on the predicted pelvis;
  - PVE / PA-PVE: mean vertex distance (mm) before / after a scaled Procrustes alignment;
  - MPJPE / PA-MPJPE: ``J_regressor_h36m.npy`` (17 x 6890, from SPIN) regresses H36M joints from both
    centred meshes, they are re-centred on H36M joint 0 and the 14 LSP joints ``H36M_TO_J14`` compared;
  - detection threshold 0.2; precision, recall and F1 are rounded to 2 decimals as fractions, then x100.

Files (the user's; licensed, never downloaded here):
  - SMPL models as the SMPL release ships them (``basicmodel_{m,f}_lbs_10_207_0_v1.1.0.pkl``) or renamed
    the smplx way (``SMPL_MALE.pkl`` / ``SMPL_FEMALE.pkl``): a latin1 pickle of a dict with v_template,
    shapedirs, posedirs, J_regressor (scipy sparse), weights, kintree_table and f; files whose arrays are
    chumpy objects (SMPL v1.0.0) need chumpy removed first (SMPL's own v1.1.0 files are plain);
  - ``J_regressor_h36m.npy``: a (17, V_smpl) float array;
  - ``smplx2smpl.pkl``: a dict with ``matrix`` (V_smpl, V_smplx), Multi-HMR's file, or the SMPL-X
    transfer-model setup with ``mtx`` (V_smpl, 2 V_smplx: vertices then normals; the vertex half is used).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.metrics import mpjpe, pa_mpjpe

STANDARD = "3dpw-standard"
SHARED_JOINTS = "lighthmr-22joints"
PROTOCOLS = {
    STANDARD: (
        "3DPW standard protocol (as Multi-HMR's table): predicted SMPL-X -> SMPL by smplx2smpl, gendered "
        "SMPL ground truth, 14 LSP joints regressed by J_regressor_h36m, PVE on SMPL vertices, "
        "detection threshold 0.2, P/R/F1 rounded to 2 decimals"
    ),
    SHARED_JOINTS: (
        "NOT the standard 3DPW protocol: SMPL-X joints 0-21 against 3DPW's SMPL joints 0-21 (different "
        "regressors and joint set), no PVE; comparable only between lighthmr checkpoints. Give --smpl-dir, "
        "--h36m-regressor and --smplx2smpl for the standard protocol"
    ),
}
H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
STANDARD_DET_THRESHOLD = 0.2
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
SMPL_FILE_PATTERNS = {
    "male": (
        "SMPL_MALE.pkl",
        "SMPL_MALE.npz",
        "basicmodel_m_lbs_10_207_0_v1.*.pkl",
        "basicModel_m_lbs_10_207_0_v1.*.pkl",
    ),
    "female": (
        "SMPL_FEMALE.pkl",
        "SMPL_FEMALE.npz",
        "basicmodel_f_lbs_10_207_0_v1.*.pkl",
        "basicModel_f_lbs_10_207_0_v1.*.pkl",
    ),
}


def _dense(value) -> np.ndarray:
    """scipy sparse matrices (SMPL's J_regressor) and plain arrays alike, as float64 numpy."""
    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value, dtype=np.float64)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except ModuleNotFoundError as exc:
        raise DatasetError(
            f"{path} stores {exc.name} objects (SMPL v1.0.0 files hold chumpy arrays): use SMPL's "
            "v1.1.0 .pkl files, or re-save the arrays as plain numpy."
        ) from exc
    except Exception as exc:
        raise DatasetError(f"cannot read {path} ({type(exc).__name__}: {exc}); download it again.") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a {type(data).__name__}, not the dict of arrays its format has.")
    return data


def find_smpl_file(folder: str | Path, gender: str) -> Path:
    """The gendered SMPL model file in ``folder`` or ``folder/smpl`` (smplx's or SMPL's own names)."""
    folder = Path(folder).expanduser()
    for where in (folder, folder / "smpl"):
        for pattern in SMPL_FILE_PATTERNS[gender]:
            hits = sorted(where.glob(pattern))
            if hits:
                return hits[-1]
    raise DatasetError(
        f"no {gender} SMPL model under {folder} (looked for {', '.join(SMPL_FILE_PATTERNS[gender])}): "
        "download SMPL from https://smpl.is.tue.mpg.de and pass its folder as --smpl-dir."
    )


class SMPLLayer(torch.nn.Module):
    """One gendered SMPL model from its release file, posed with smplx's linear blend skinning."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        else:
            data = _unpickle(path)
        missing = [k for k in SMPL_KEYS if k not in data]
        if missing:
            raise DatasetError(f"{path} lacks SMPL keys {missing}: is it an SMPL model file?")
        v = _dense(data["v_template"])
        n = len(v)
        shapedirs = _dense(data["shapedirs"])[:, :, :10]
        posedirs = _dense(data["posedirs"])
        J = _dense(data["J_regressor"])
        if shapedirs.shape[:2] != (n, 3) or posedirs.shape[:2] != (n, 3) or J.shape[1] != n:
            raise DatasetError(
                f"{path}: array sizes disagree (v_template {v.shape}, shapedirs {shapedirs.shape}, "
                f"posedirs {posedirs.shape}, J_regressor {J.shape})."
            )
        parents = np.asarray(data["kintree_table"], dtype=np.int64)[0].copy()
        parents[0] = -1
        f32 = torch.float32
        self.register_buffer("v_template", torch.as_tensor(v, dtype=f32))
        self.register_buffer("shapedirs", torch.as_tensor(shapedirs, dtype=f32))
        self.register_buffer(
            "posedirs", torch.as_tensor(posedirs.reshape(-1, posedirs.shape[-1]).T, dtype=f32)
        )
        self.register_buffer("J_regressor", torch.as_tensor(J, dtype=f32))
        self.register_buffer("weights", torch.as_tensor(_dense(data["weights"]), dtype=f32))
        self.register_buffer("parents", torch.as_tensor(parents))
        self.path = path

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @torch.no_grad()
    def forward(
        self, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V,3), joints (24,3)) of one body: pose (72,) axis-angle, betas (<=10,), transl (3,)."""
        from smplx.lbs import lbs

        b = torch.zeros(1, self.shapedirs.shape[-1])
        betas = np.asarray(betas, dtype=np.float64).reshape(-1)[: b.shape[1]]
        b[0, : len(betas)] = torch.as_tensor(betas, dtype=torch.float32)
        p = torch.as_tensor(np.asarray(pose, dtype=np.float64).reshape(1, 72), dtype=torch.float32)
        verts, joints = lbs(
            b,
            p,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.weights,
            pose2rot=True,
        )
        t = np.asarray(transl, dtype=np.float64).reshape(1, 3)
        return verts[0].double().numpy() + t, joints[0].double().numpy() + t


def load_h36m_regressor(path: str | Path) -> np.ndarray:
    path = Path(path).expanduser()
    try:
        reg = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(
            f"cannot read the H36M joint regressor {path} ({type(exc).__name__}: {exc}): use SPIN's "
            "J_regressor_h36m.npy."
        ) from exc
    if reg.ndim != 2 or reg.shape[0] != 17:
        raise DatasetError(
            f"{path} has shape {reg.shape}; J_regressor_h36m.npy is (17, number of SMPL vertices)."
        )
    return reg.astype(np.float64)


def load_smplx2smpl(path: str | Path) -> np.ndarray:
    """(V_smpl, V_smplx) vertex map from Multi-HMR's ``matrix`` or the transfer setup's ``mtx``."""
    path = Path(path).expanduser()
    data = _unpickle(path)
    if "matrix" in data:
        return _dense(data["matrix"])
    if "mtx" in data:
        m = _dense(data["mtx"])
        return m[:, : m.shape[1] // 2]  # vertices first, then normals
    raise DatasetError(
        f"{path} has neither 'matrix' (Multi-HMR's smplx2smpl.pkl) nor 'mtx' (SMPL-X transfer "
        f"setup); its keys are {sorted(data)[:8]}."
    )


@dataclass
class ThreeDPWProtocol:
    """The standard protocol's files, loaded and checked against each other."""

    smpl: dict[str, SMPLLayer]
    h36m_regressor: np.ndarray  # (17, V_smpl)
    smplx2smpl: np.ndarray  # (V_smpl, V_smplx)

    name = STANDARD

    @classmethod
    def from_files(
        cls, smpl_dir: str | Path, h36m_regressor: str | Path, smplx2smpl: str | Path
    ) -> ThreeDPWProtocol:
        smpl = {g: SMPLLayer(find_smpl_file(smpl_dir, g)) for g in ("male", "female")}
        proto = cls(smpl, load_h36m_regressor(h36m_regressor), load_smplx2smpl(smplx2smpl))
        n = {g: m.num_vertices for g, m in smpl.items()}
        if (
            len(set(n.values())) != 1
            or proto.h36m_regressor.shape[1] != n["male"]
            or proto.smplx2smpl.shape[0] != n["male"]
        ):
            raise DatasetError(
                f"the 3DPW protocol files disagree: SMPL meshes {n}, J_regressor_h36m "
                f"{proto.h36m_regressor.shape}, smplx2smpl {proto.smplx2smpl.shape}."
            )
        return proto

    def check_prediction_mesh(self, num_vertices: int) -> None:
        if num_vertices != self.smplx2smpl.shape[1]:
            raise DatasetError(
                f"smplx2smpl maps {self.smplx2smpl.shape[1]} SMPL-X vertices but the model's mesh has "
                f"{num_vertices}: evaluate an SMPL-X checkpoint with the matching model files."
            )

    def ground_truth(self, actor: dict) -> tuple[np.ndarray, np.ndarray]:
        """(vertices, pelvis) of one 3DPW actor in the camera frame (``ThreeDPWDataset`` extras['smpl'])."""
        model = self.smpl.get(actor["gender"])
        if model is None:
            raise DatasetError(f"3DPW actor gender {actor['gender']!r}: expected 'male' or 'female'.")
        verts, joints = model(actor["poses_world"], actor["betas"], actor["trans_world"])
        cam = np.asarray(actor["cam_pose"], dtype=np.float64)
        R, t = cam[:3, :3], cam[:3, 3]
        return verts @ R.T + t, joints[0] @ R.T + t

    def errors(
        self,
        pred_vertices: np.ndarray,
        pred_pelvis: np.ndarray,
        gt_vertices: np.ndarray,
        gt_pelvis: np.ndarray,
    ) -> dict[str, float]:
        """PVE, PA-PVE, MPJPE, PA-MPJPE (mm) of one matched person."""
        pred = self.smplx2smpl @ (np.asarray(pred_vertices, np.float64) - pred_pelvis)
        gt = np.asarray(gt_vertices, np.float64) - gt_pelvis
        h_pred, h_gt = self.h36m_regressor @ pred, self.h36m_regressor @ gt
        j_pred = (h_pred - h_pred[0])[list(H36M_TO_J14)]
        j_gt = (h_gt - h_gt[0])[list(H36M_TO_J14)]
        return {
            "pve": mpjpe(pred, gt),
            "pa_pve": pa_mpjpe(pred, gt),
            "mpjpe": mpjpe(j_pred, j_gt),
            "pa_mpjpe": pa_mpjpe(j_pred, j_gt),
        }


def rounded_prf1(precision: float, recall: float, f1: float) -> dict[str, float]:
    """Detection scores the way the published tables print them: fraction rounded to 2 decimals, x100."""
    return {
        k: round(v / 100.0, 2) * 100.0 for k, v in (("precision", precision), ("recall", recall), ("f1", f1))
    }


__all__ = [
    "ThreeDPWProtocol",
    "SMPLLayer",
    "find_smpl_file",
    "load_h36m_regressor",
    "load_smplx2smpl",
    "rounded_prf1",
    "PROTOCOLS",
    "STANDARD",
    "SHARED_JOINTS",
    "H36M_TO_J14",
    "STANDARD_DET_THRESHOLD",
]
