"""Where two body models' outputs correspond, so that one can be measured against the other.

Anny's rigs skin one base mesh: the default 104-bone rig of ``AnnyBody`` (the synthetic scenes' ground
truth, the Anny students) drops the base mesh's unattached vertices (13,718 left), the legacy 163-bone rig
of ``AnnyFullBody`` (the Multi-HMR-Anny teacher) keeps all 19,158. So:
  - vertices correspond through each model's ``base_mesh_vertex_indices`` (exactly: same template);
  - joints (bone heads) correspond by name where both rigs put the bone at the same rest position: all
    104 default bones exist in the legacy rig and 103 sit where they do there; the legacy ``root`` sits
    9 cm lower, so it is left out and both sides are centred on the hip mid-point instead
    (``pelvis.L``/``pelvis.R``, the heads of the two hip bones).
A model with the ground truth's own body corresponds one to one (its root is the pelvis joint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

from lighthmr_ros.body.base import BodyModel
from lighthmr_ros.errors import DatasetError

REST_TOLERANCE_M = 1e-4  # bone heads closer than this at rest are the same joint
ANNY_HIPS = ("pelvis.L", "pelvis.R")


@dataclass(frozen=True)
class Correspondence:
    """Index lists that put a prediction in the ground truth's terms.

    ``pred_joints[i]`` / ``gt_joints[i]``: the i-th shared joint in each model's joint order;
    ``root``: positions in those shared lists whose mean is the centre (MPJPE, PVE);
    ``pred_vertices``: for each ground-truth vertex, the prediction's vertex (None: no vertex map).
    """

    pred_joints: list[int]
    gt_joints: list[int]
    root: tuple[int, ...]
    pred_vertices: np.ndarray | None
    description: str


def _rest_heads(body: BodyModel) -> dict[str, np.ndarray]:
    core = body.anny
    heads = core.template_bone_heads.detach().cpu().double().numpy()
    return dict(zip(core.bone_labels, heads, strict=True))


def _is_anny(body: BodyModel) -> bool:
    core = getattr(body, "anny", None)
    return core is not None and hasattr(core, "base_mesh_vertex_indices") and hasattr(core, "bone_labels")


def mesh_positions(body: BodyModel, base_indices: np.ndarray) -> tuple[np.ndarray, int]:
    """Where Anny base-mesh vertices ``base_indices`` (any shape) sit in ``body``'s own mesh, and how many of
    them it lacks (their positions are then -1)."""
    own = body.anny.base_mesh_vertex_indices.detach().cpu().numpy()
    base_indices = np.asarray(base_indices, dtype=np.int64)
    lookup = np.full(max(int(own.max()), int(base_indices.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[own] = np.arange(len(own))
    positions = lookup[base_indices]
    return positions, int(np.unique(base_indices[positions < 0]).size)


def body_correspondence(pred: BodyModel, gt: BodyModel) -> Correspondence:
    """How ``pred``'s joints and vertices map onto ``gt``'s (DatasetError when they cannot be compared)."""
    ps, gs = pred.spec, gt.spec
    if ps.name == gs.name and ps.joint_names == gs.joint_names and ps.num_vertices == gs.num_vertices:
        every = list(range(gs.num_joints))
        return Correspondence(every, every, (gs.pelvis_index,), None, f"{gs.name}: all {gs.num_joints} joints")
    if not (_is_anny(pred) and _is_anny(gt)):
        raise DatasetError(
            f"the ground truth is in the {gs.name} body model and the checkpoint predicts {ps.name}; "
            f"no correspondence between them is known: evaluate a checkpoint of the {gs.name} family."
        )
    pred_heads, gt_heads = _rest_heads(pred), _rest_heads(gt)
    pred_index = {n: i for i, n in enumerate(ps.joint_names)}
    shared = [
        n
        for n in gs.joint_names
        if n in pred_index
        and n in pred_heads
        and n in gt_heads
        and float(np.linalg.norm(pred_heads[n] - gt_heads[n])) < REST_TOLERANCE_M
    ]
    root_name = gs.joint_names[gs.pelvis_index]
    root_names = (root_name,) if root_name in shared else ANNY_HIPS
    missing = [n for n in root_names if n not in shared]
    if missing or not shared:
        raise DatasetError(
            f"{ps.name} and {gs.name} share no centre joint ({', '.join(missing) or 'none shared'}): "
            "their outputs cannot be compared."
        )
    gt_index = {n: i for i, n in enumerate(gs.joint_names)}
    vertices, lacking = mesh_positions(pred, gt.anny.base_mesh_vertex_indices.detach().cpu().numpy())
    if lacking:
        raise DatasetError(
            f"{ps.name}'s mesh lacks {lacking} of the {gs.name} ground truth's vertices: "
            "their meshes cannot be compared."
        )
    left_out = [n for n in gs.joint_names if n not in shared]
    centre = "its root" if root_names == (root_name,) else "the hip mid-point"
    return Correspondence(
        pred_joints=[pred_index[n] for n in shared],
        gt_joints=[gt_index[n] for n in shared],
        root=tuple(shared.index(n) for n in root_names),
        pred_vertices=vertices,
        description=(
            f"{ps.name} measured as {gs.name}: {len(shared)} of {gs.num_joints} joints (same rest position; "
            f"left out: {', '.join(left_out) or 'none'}), centred on {centre}; "
            f"{len(vertices)} vertices by base-mesh index"
        ),
    )


def select_vertices(vertices: torch.Tensor, corr: Correspondence) -> torch.Tensor:
    """(..., V_pred, 3) -> (..., V_gt, 3)."""
    if corr.pred_vertices is None:
        return vertices
    return vertices[..., torch.as_tensor(corr.pred_vertices, device=vertices.device), :]


def root_from_children(body: BodyModel, posed: dict[str, torch.Tensor], shape: torch.Tensor) -> torch.Tensor:
    """(P, 3) where ``body``'s root joint is, given its root's children posed (``posed``: name -> (P, 3),
    e.g. from another rig that puts its own root elsewhere) and each person's ``shape`` (P, S).

    The children's heads ride rigidly on the root bone, so the rigid map that takes the children from the
    rest pose (``body`` at identity rotations and that shape) to ``posed`` takes the root there too."""
    spec = body.spec
    root = spec.pelvis_index
    children = [i for i, p in enumerate(spec.joint_parents) if p == root]
    names = [spec.joint_names[i] for i in children]
    missing = [n for n in names if n not in posed]
    if len(children) < 3 or missing:
        raise DatasetError(f"{spec.name}'s root cannot be placed from its children (lacking {missing or names})")
    P = shape.shape[0]
    with torch.no_grad():
        eye = torch.eye(3, dtype=torch.float32, device=shape.device).expand(P, spec.num_pose_joints, 3, 3)
        rest = body(eye.contiguous(), shape.float()).joints.double()
    dst = torch.stack([posed[n].double() for n in names], dim=1)
    R, t = roma.rigid_points_registration(rest[:, children], dst)  # posed = R rest + t
    return (torch.einsum("pij,pj->pi", R, rest[:, root]) + t).to(shape.dtype)


__all__ = [
    "Correspondence",
    "body_correspondence",
    "mesh_positions",
    "root_from_children",
    "select_vertices",
    "REST_TOLERANCE_M",
]
