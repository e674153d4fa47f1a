"""Ground truth in the model's own terms: rotations in its pose order, joints in its joint order.

Data sets annotate in SMPL-X joint order (targets.py); the model may order its pose joints
differently (our SMPL-X head predicts 53 rotations with the jaw last and the eyes fixed) and outputs
its own joint list. Both are matched by joint name. When a person has complete SMPL-X parameters
(BEDLAM, synthetic) and the model's body is SMPL-X, the GT mesh is rebuilt with the model's own body
model, placed with the annotated ``transl`` (smplx convention: the posed pelvis stays at its rest
position J0, so camera-frame points = body output + transl), or pelvis-aligned to annotated 3-D joints.
"""
from __future__ import annotations

import roma
import torch

from lighthmr_ros.training.losses import PersonTargets, joint_index_map, pose_index_map


def build_person_targets(batch: dict, keep: torch.Tensor, body, device) -> PersonTargets:
    """Targets for the kept persons of a collated batch (see targets.collate)."""
    spec = body.spec
    P = int(keep.sum())
    sel = lambda key: batch[key][keep].to(device)  # noqa: E731
    J, K = spec.num_pose_joints, spec.num_joints
    is_smplx = spec.name == "smplx"

    pm, ps = pose_index_map(spec.pose_joint_names or ())
    rotvec, has_rot, rot_valid = sel("rotvec"), sel("has_rotvec"), sel("rot_valid")
    rotmat = torch.eye(3, device=device).expand(P, J, 3, 3).clone()
    rot_mask = torch.zeros(P, J, dtype=torch.bool, device=device)
    if pm:
        rotmat[:, pm] = roma.rotvec_to_rotmat(rotvec[:, ps].float())
        rot_mask[:, pm] = rot_valid[:, ps] & has_rot[:, None]

    shape, has_shape = sel("shape"), sel("has_shape")
    expr, has_expr = sel("expression"), sel("has_expression")
    S, E = spec.num_shape, spec.num_expression
    shape_full = torch.zeros(P, S, device=device)
    shape_full[:, : min(S, shape.shape[1])] = shape[:, :S]
    expr_full = torch.zeros(P, E, device=device)
    expr_full[:, : min(E, expr.shape[1])] = expr[:, :E]

    joints = torch.zeros(P, K, 3, device=device)
    joints_mask = torch.zeros(P, K, dtype=torch.bool, device=device)
    vertices = None
    vertices_mask = torch.zeros(P, dtype=torch.bool, device=device)

    # complete parameters -> mesh with the model's body model
    has_transl, has_j3d = sel("has_transl"), sel("has_joints_3d")
    j3d, j3d_valid = sel("joints_3d"), sel("joints_3d_valid")
    mesh_ok = has_rot & has_shape & rot_mask.all(dim=1) if (is_smplx and pm) else torch.zeros(P, dtype=torch.bool, device=device)
    mesh_ok &= has_transl | (has_j3d & j3d_valid[:, 0])
    if mesh_ok.any():
        with torch.no_grad(), torch.autocast(device_type=device.type if hasattr(device, "type") else "cpu", enabled=False):
            out = body(rotmat[mesh_ok], shape_full[mesh_ok], expr_full[mesh_ok])
            offset = torch.where(has_transl[mesh_ok][:, None], sel("transl")[mesh_ok],
                                 j3d[mesh_ok][:, 0] - out.joints[:, spec.pelvis_index])
            vertices = torch.zeros(P, spec.num_vertices, 3, device=device)
            vertices[mesh_ok] = out.vertices + offset[:, None]
            joints[mesh_ok] = out.joints + offset[:, None]
            joints_mask[mesh_ok] = True
            vertices_mask = mesh_ok.clone()

    # annotated 3-D joints win over the rebuilt ones (they are what the release measured)
    jm, js = joint_index_map(spec.joint_names, count=j3d.shape[1])
    if jm:
        ann = has_j3d[:, None] & j3d_valid[:, js]
        cur = joints[:, jm]
        joints[:, jm] = torch.where(ann[..., None], j3d[:, js], cur)
        joints_mask[:, jm] |= ann

    # annotated vertices (AGORA) when they are the model's mesh
    nv = sel("num_vertices")
    vert_ann = sel("has_vertices") & (nv == spec.num_vertices)
    if vert_ann.any():
        if vertices is None:
            vertices = torch.zeros(P, spec.num_vertices, 3, device=device)
        vertices[vert_ann] = sel("vertices")[vert_ann][:, : spec.num_vertices]
        vertices_mask |= vert_ann

    j2d, j2d_valid = sel("joints_2d"), sel("joints_2d_valid")
    joints_2d = torch.zeros(P, K, 2, device=device)
    joints_2d_mask = torch.zeros(P, K, dtype=torch.bool, device=device)
    jm2, js2 = joint_index_map(spec.joint_names, count=j2d.shape[1])
    if jm2:
        joints_2d[:, jm2] = j2d[:, js2]
        joints_2d_mask[:, jm2] = j2d_valid[:, js2]

    shape_t = shape_full if is_smplx else None
    shape_mask = has_shape.clone() if is_smplx else torch.zeros(P, dtype=torch.bool, device=device)
    rot_used = bool(pm)

    # annotations in the model's own body model (synthetic Anny scenes)
    if batch.get("native_body") == spec.name and "native_joints" in batch and batch["native_joints"].shape[1] == K:
        has_n = sel("has_native")
        nrot, has_nrot = sel("native_rotmats"), sel("has_native_rotmats") & has_n
        if nrot.shape[1] == J and has_nrot.any():
            rotmat[has_nrot] = nrot[has_nrot].float()
            rot_mask[has_nrot] = True
            rot_used = True
        if S:
            if shape_t is None:
                shape_t = torch.zeros(P, S, device=device)
            ns = sel("native_shape")
            shape_t[has_n, : min(S, ns.shape[1])] = ns[has_n, :S]
            shape_mask |= has_n
        joints[has_n] = sel("native_joints")[has_n]
        joints_mask[has_n] = True
        joints_2d[has_n] = sel("native_joints_2d")[has_n]
        joints_2d_mask[has_n] = sel("native_joints_visible")[has_n]
        nverts = sel("native_vertices") if "native_vertices" in batch else None
        if nverts is not None and nverts.shape[1] == spec.num_vertices:
            hv = sel("has_native_vertices") & has_n
        else:
            hv = torch.zeros(P, dtype=torch.bool, device=device)
        rebuild = has_nrot & ~hv
        if hv.any() or rebuild.any():
            if vertices is None:
                vertices = torch.zeros(P, spec.num_vertices, 3, device=device)
            if hv.any():
                vertices[hv] = nverts[hv].float()
            if rebuild.any():
                with torch.no_grad(), torch.autocast(device_type=getattr(device, "type", "cpu"), enabled=False):
                    out = body(rotmat[rebuild], shape_t[rebuild] if shape_t is not None else torch.zeros(int(rebuild.sum()), S, device=device), None)
                    vertices[rebuild] = out.vertices - out.joints[:, spec.pelvis_index : spec.pelvis_index + 1] \
                        + sel("native_transl_pelvis")[rebuild][:, None]
            vertices_mask |= hv | rebuild

    head = spec.head_index
    return PersonTargets(
        rotmat=rotmat if rot_used else None, rot_mask=rot_mask,
        shape=shape_t, shape_mask=shape_mask,
        expression=expr_full if (is_smplx and E) else None, expression_mask=has_expr,
        joints=joints, joints_mask=joints_mask, joints_2d=joints_2d, joints_2d_mask=joints_2d_mask,
        vertices=vertices, vertices_mask=vertices_mask,
        dist=joints[:, head, 2], dist_mask=joints_mask[:, head] & (joints[:, head, 2] > 0),
    )
