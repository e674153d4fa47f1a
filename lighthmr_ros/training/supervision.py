"""Ground truth in the model's own terms: rotations in its pose order, joints in its joint order.

Data sets annotate in SMPL-X joint order (targets.py); the model may order its pose joints
differently (our SMPL-X head predicts 53 rotations with the jaw last and the eyes fixed) and outputs
its own joint list. Both are matched by joint name. When a person has complete SMPL-X parameters
(BEDLAM, synthetic) and the model's body is SMPL-X, the GT mesh is rebuilt as the release defines it
(gt_body.py: all 11 betas and the eye rotations, which the network itself does not predict), placed
with the annotated ``transl`` (smplx convention: the posed pelvis stays at its rest position J0, so
camera-frame points = body output + transl), or pelvis-aligned to annotated 3-D joints.

``build_person_targets`` runs one small step per kind of annotation on a ``_Draft`` of the targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch

from lighthmr_ros.training.gt_body import ground_truth_body
from lighthmr_ros.training.losses import PersonTargets, joint_index_map, pose_index_map


@dataclass
class _Draft:
    """Targets under construction (rows = kept persons)."""

    rotmat: torch.Tensor  # (P, J, 3, 3) model pose order
    rot_mask: torch.Tensor  # (P, J)
    rot_used: bool
    shape: torch.Tensor | None
    shape_mask: torch.Tensor
    expression: torch.Tensor  # (P, E)
    joints: torch.Tensor  # (P, K, 3)
    joints_mask: torch.Tensor
    joints_2d: torch.Tensor  # (P, K, 2)
    joints_2d_mask: torch.Tensor
    vertices: torch.Tensor | None
    vertices_mask: torch.Tensor

    def ensure_vertices(self, num_vertices: int) -> torch.Tensor:
        if self.vertices is None:
            P, dev = self.joints.shape[0], self.joints.device
            self.vertices = torch.zeros(P, num_vertices, 3, device=dev)
        return self.vertices


def build_person_targets(batch: dict, keep: torch.Tensor, body, device) -> PersonTargets:
    """Targets for the kept persons of a collated batch (see targets.collate)."""
    spec = body.spec
    P = int(keep.sum())

    def sel(key: str) -> torch.Tensor:
        return batch[key][keep].to(device)

    draft = _pose_and_shape(sel, spec, P, device)
    _smplx_mesh(draft, sel, body, device)
    _annotated_joints(draft, sel, spec)
    _annotated_vertices(draft, sel, spec)
    _joints_2d(draft, sel, spec)
    if (
        batch.get("native_body") == spec.name
        and "native_joints" in batch
        and batch["native_joints"].shape[1] == spec.num_joints
    ):
        _native_annotation(draft, sel, "native_vertices" in batch, body, device)
    head = spec.head_index
    is_smplx = spec.name == "smplx"
    return PersonTargets(
        rotmat=draft.rotmat if draft.rot_used else None,
        rot_mask=draft.rot_mask,
        shape=draft.shape,
        shape_mask=draft.shape_mask,
        expression=draft.expression if (is_smplx and spec.num_expression) else None,
        expression_mask=sel("has_expression"),
        joints=draft.joints,
        joints_mask=draft.joints_mask,
        joints_2d=draft.joints_2d,
        joints_2d_mask=draft.joints_2d_mask,
        vertices=draft.vertices,
        vertices_mask=draft.vertices_mask,
        dist=draft.joints[:, head, 2],
        dist_mask=draft.joints_mask[:, head] & (draft.joints[:, head, 2] > 0),
    )


def _pose_and_shape(sel, spec, P: int, device) -> _Draft:
    """Rotations in the model's pose order (SMPL-X rows matched by name), betas and expression padded."""
    J, K, S, E = spec.num_pose_joints, spec.num_joints, spec.num_shape, spec.num_expression
    is_smplx = spec.name == "smplx"
    pm, ps = pose_index_map(spec.pose_joint_names or ())
    rotvec, has_rot, rot_valid = sel("rotvec"), sel("has_rotvec"), sel("rot_valid")
    rotmat = torch.eye(3, device=device).expand(P, J, 3, 3).clone()
    rot_mask = torch.zeros(P, J, dtype=torch.bool, device=device)
    if pm:
        rotmat[:, pm] = roma.rotvec_to_rotmat(rotvec[:, ps].float())
        rot_mask[:, pm] = rot_valid[:, ps] & has_rot[:, None]
    shape, has_shape, expr = sel("shape"), sel("has_shape"), sel("expression")
    shape_full = torch.zeros(P, S, device=device)
    shape_full[:, : min(S, shape.shape[1])] = shape[:, :S]
    expr_full = torch.zeros(P, E, device=device)
    expr_full[:, : min(E, expr.shape[1])] = expr[:, :E]
    no = torch.zeros(P, dtype=torch.bool, device=device)
    return _Draft(
        rotmat=rotmat,
        rot_mask=rot_mask,
        rot_used=bool(pm),
        shape=shape_full if is_smplx else None,
        shape_mask=has_shape.clone() if is_smplx else no.clone(),
        expression=expr_full,
        joints=torch.zeros(P, K, 3, device=device),
        joints_mask=torch.zeros(P, K, dtype=torch.bool, device=device),
        joints_2d=torch.zeros(P, K, 2, device=device),
        joints_2d_mask=torch.zeros(P, K, dtype=torch.bool, device=device),
        vertices=None,
        vertices_mask=no,
    )


def _smplx_mesh(draft: _Draft, sel, body, device) -> None:
    """Complete SMPL-X parameters -> the release's mesh (all betas, all 55 rotations), in the camera frame."""
    gt_body = ground_truth_body(body, device)
    if gt_body is None:
        return
    spec = body.spec
    has_rot, has_shape, rot_valid = sel("has_rotvec"), sel("has_shape"), sel("rot_valid")
    has_transl, has_j3d, j3d_valid = sel("has_transl"), sel("has_joints_3d"), sel("joints_3d_valid")
    mesh_ok = has_rot & has_shape & rot_valid.all(dim=1) & (has_transl | (has_j3d & j3d_valid[:, 0]))
    if not mesh_ok.any():
        return
    with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, enabled=False):
        out = gt_body(sel("rotvec")[mesh_ok], sel("shape")[mesh_ok], sel("expression")[mesh_ok])
        offset = torch.where(
            has_transl[mesh_ok][:, None],
            sel("transl")[mesh_ok],
            sel("joints_3d")[mesh_ok][:, 0] - out.joints[:, spec.pelvis_index],
        )
        draft.ensure_vertices(spec.num_vertices)[mesh_ok] = out.vertices + offset[:, None]
        draft.joints[mesh_ok] = out.joints + offset[:, None]
    draft.joints_mask[mesh_ok] = True
    draft.vertices_mask = draft.vertices_mask | mesh_ok


def _annotated_joints(draft: _Draft, sel, spec) -> None:
    """Annotated 3-D joints win over rebuilt ones (they are what the release measured)."""
    j3d, j3d_valid, has_j3d = sel("joints_3d"), sel("joints_3d_valid"), sel("has_joints_3d")
    jm, js = joint_index_map(spec.joint_names, count=j3d.shape[1])
    if jm:
        ann = has_j3d[:, None] & j3d_valid[:, js]
        draft.joints[:, jm] = torch.where(ann[..., None], j3d[:, js], draft.joints[:, jm])
        draft.joints_mask[:, jm] |= ann


def _annotated_vertices(draft: _Draft, sel, spec) -> None:
    """Vertices shipped by the release (AGORA) when they are the model's mesh."""
    vert_ann = sel("has_vertices") & (sel("num_vertices") == spec.num_vertices)
    if vert_ann.any():
        draft.ensure_vertices(spec.num_vertices)[vert_ann] = sel("vertices")[vert_ann][:, : spec.num_vertices]
        draft.vertices_mask = draft.vertices_mask | vert_ann


def _joints_2d(draft: _Draft, sel, spec) -> None:
    j2d, j2d_valid = sel("joints_2d"), sel("joints_2d_valid")
    jm, js = joint_index_map(spec.joint_names, count=j2d.shape[1])
    if jm:
        draft.joints_2d[:, jm] = j2d[:, js]
        draft.joints_2d_mask[:, jm] = j2d_valid[:, js]


def _native_annotation(draft: _Draft, sel, has_native_vertices: bool, body, device) -> None:
    """Annotations in the model's own body model (synthetic Anny scenes) replace the SMPL-X-derived ones."""
    spec = body.spec
    J, S = spec.num_pose_joints, spec.num_shape
    P = draft.joints.shape[0]
    has_n = sel("has_native")
    nrot, has_nrot = sel("native_rotmats"), sel("has_native_rotmats") & has_n
    if nrot.shape[1] == J and has_nrot.any():
        draft.rotmat[has_nrot] = nrot[has_nrot].float()
        draft.rot_mask[has_nrot] = True
        draft.rot_used = True
    if S:
        if draft.shape is None:
            draft.shape = torch.zeros(P, S, device=device)
        ns = sel("native_shape")
        draft.shape[has_n, : min(S, ns.shape[1])] = ns[has_n, :S]
        draft.shape_mask = draft.shape_mask | has_n
    draft.joints[has_n] = sel("native_joints")[has_n]
    draft.joints_mask[has_n] = True
    draft.joints_2d[has_n] = sel("native_joints_2d")[has_n]
    draft.joints_2d_mask[has_n] = sel("native_joints_visible")[has_n]
    nverts = sel("native_vertices") if has_native_vertices else None
    if nverts is not None and nverts.shape[1] == spec.num_vertices:
        hv = sel("has_native_vertices") & has_n
    else:
        hv = torch.zeros(P, dtype=torch.bool, device=device)
    rebuild = has_nrot & ~hv
    if not (hv.any() or rebuild.any()):
        return
    vertices = draft.ensure_vertices(spec.num_vertices)
    if hv.any():
        vertices[hv] = nverts[hv].float()
    if rebuild.any():
        shape = (
            draft.shape[rebuild]
            if draft.shape is not None
            else torch.zeros(int(rebuild.sum()), S, device=device)
        )
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, enabled=False):
            out = body(draft.rotmat[rebuild], shape, None)
            pelvis = spec.pelvis_index
            vertices[rebuild] = (
                out.vertices
                - out.joints[:, pelvis : pelvis + 1]
                + sel("native_transl_pelvis")[rebuild][:, None]
            )
    draft.vertices_mask = draft.vertices_mask | hv | rebuild
