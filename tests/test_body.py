"""Body models: SMPL-X on a synthetic file in the real format, and the bundled Anny."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from lighthmr_ros.body import BodyModel, create_body_model
from lighthmr_ros.body.synthetic_smplx import make_synthetic_smplx, write_synthetic_smplx
from lighthmr_ros.errors import BodyModelError


def _random_rotmats(batch, joints, scale=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return roma.rotvec_to_rotmat(torch.randn(batch, joints, 3, generator=g) * scale)


# ---------------------------------------------------------------- SMPL-X


@pytest.fixture(scope="module")
def smplx_body(smplx_model_dir):
    return create_body_model("smplx", model_dir=smplx_model_dir)


def test_smplx_spec_and_state_dict_keys(smplx_body, smplx_model_dir):
    spec = smplx_body.spec
    data = np.load(smplx_model_dir / "SMPLX_NEUTRAL.npz")
    assert isinstance(smplx_body, BodyModel)
    assert (spec.num_pose_joints, spec.num_shape, spec.num_expression) == (53, 10, 10)
    assert spec.num_vertices == data["v_template"].shape[0]
    assert spec.num_joints == 127 and len(spec.joint_parents) == 127
    assert spec.joint_names[spec.pelvis_index] == "pelvis" and spec.joint_names[spec.head_index] == "head"
    assert all(p < i for i, p in enumerate(spec.joint_parents))
    assert smplx_body.faces.shape == (data["f"].shape[0], 3)
    keys = list(smplx_body.state_dict())
    assert keys and all(k.startswith("bm_x.") for k in keys)
    assert "bm_x.vertex_joint_selector.extra_joints_idxs" in keys and "bm_x.shapedirs" in keys
    assert "faces" not in keys
    eleven = create_body_model("smplx", model_dir=smplx_model_dir, num_betas=11)
    assert eleven.spec.num_shape == 11 and eleven.state_dict()["bm_x.shapedirs"].shape[-1] == 11


def test_smplx_zero_pose_is_the_template(smplx_body, smplx_model_dir):
    data = np.load(smplx_model_dir / "SMPLX_NEUTRAL.npz")
    rot = torch.eye(3).expand(2, 53, 3, 3)
    out = smplx_body(rot, torch.zeros(2, 10), torch.zeros(2, 10))
    assert out.vertices.shape == (2, data["v_template"].shape[0], 3) and out.joints.shape == (2, 127, 3)
    np.testing.assert_allclose(out.vertices[1].numpy(), data["v_template"], atol=1e-6)
    np.testing.assert_allclose(out.joints[0, :55].numpy(), data["J_regressor"] @ data["v_template"], atol=1e-5)
    # extra joints are vertices (ids modulo V on this small mesh)
    idx = smplx_body.bm_x.vertex_joint_selector.extra_joints_idxs
    np.testing.assert_allclose(out.joints[0, 55:76].numpy(), data["v_template"][idx.numpy()], atol=1e-6)


def test_smplx_matches_smplx_own_forward(smplx_body):
    """Our rotation-matrix path equals smplx.SMPLX.forward with axis-angle in smplx's joint order."""
    rot = _random_rotmats(3, 53)
    rot[:, 0] = torch.eye(3)  # smplx's forward rotates about the pelvis too; checked separately below
    shape, expr = torch.randn(3, 10) * 0.5, torch.randn(3, 10) * 0.5
    out = smplx_body(rot, shape, expr)
    aa = roma.rotmat_to_rotvec(rot)
    ref = smplx_body.bm_x(
        betas=shape,
        expression=expr,
        global_orient=aa[:, 0],
        body_pose=aa[:, 1:22].flatten(1),
        left_hand_pose=aa[:, 22:37].flatten(1),
        right_hand_pose=aa[:, 37:52].flatten(1),
        jaw_pose=aa[:, 52],
        leye_pose=torch.zeros(3, 3),
        reye_pose=torch.zeros(3, 3),
        transl=torch.zeros(3, 3),
    )
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.joints, ref.joints, atol=1e-5, rtol=1e-4)


def test_smplx_global_orientation_about_the_pelvis(smplx_body):
    rot = _random_rotmats(1, 53, seed=3)
    shape = torch.randn(1, 10) * 0.5
    base = smplx_body(rot.clone().index_fill_(1, torch.tensor([0]), 0) + _identity_at(0, 53), shape, torch.zeros(1, 10))
    turned = smplx_body(rot, shape, torch.zeros(1, 10))
    pelvis = base.joints[:, 0:1]
    expected = (base.vertices - pelvis) @ rot[:, 0].transpose(1, 2) + pelvis
    torch.testing.assert_close(turned.vertices, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(turned.joints[:, 0], base.joints[:, 0], atol=1e-6, rtol=0)


def _identity_at(index, joints):
    eye = torch.zeros(1, joints, 3, 3)
    eye[:, index] = torch.eye(3)
    return eye


def test_smplx_gradients_flow(smplx_body):
    rot = _random_rotmats(2, 53).requires_grad_(True)
    shape = torch.zeros(2, 10, requires_grad=True)
    expr = torch.zeros(2, 10, requires_grad=True)
    out = smplx_body(rot, shape, expr)
    (out.vertices.square().sum() + out.joints.sum()).backward()
    for t in (rot, shape, expr):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_smplx_accepts_file_and_nested_folder(tmp_path):
    nested = write_synthetic_smplx(tmp_path / "models" / "smplx", seed=1)
    assert nested.name == "SMPLX_NEUTRAL.npz"
    a = create_body_model("smplx", model_dir=tmp_path / "models")
    b = create_body_model("smplx", model_dir=nested)
    assert a.spec == b.spec


@pytest.mark.parametrize("where", [None, "missing"])
def test_smplx_missing_file_says_where_to_get_it(tmp_path, where):
    folder = None if where is None else tmp_path / where
    with pytest.raises(BodyModelError) as err:
        create_body_model("smplx", model_dir=folder)
    message = str(err.value)
    assert "https://smpl-x.is.tue.mpg.de" in message and "SMPLX_NEUTRAL.npz" in message


def test_smplx_broken_file_is_a_body_model_error(tmp_path):
    (tmp_path / "SMPLX_NEUTRAL.npz").write_bytes(b"not a zip")
    with pytest.raises(BodyModelError, match="not a usable SMPL-X"):
        create_body_model("smplx", model_dir=tmp_path)


def test_synthetic_smplx_is_closed_and_deterministic():
    a, b = make_synthetic_smplx(0), make_synthetic_smplx(0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["shapedirs"].shape[1:] == (3, 400) and a["posedirs"].shape[1:] == (3, 486)
    assert 600 <= a["v_template"].shape[0] <= 1000
    np.testing.assert_allclose(a["J_regressor"].sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(a["weights"].sum(1), 1, atol=1e-5)
    # every edge is shared by exactly two faces: a closed surface
    f = a["f"]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    height = np.ptp(a["v_template"][:, 1])
    assert 1.5 < height < 2.0


def test_reference_extra_joint_ids(reference_dir):
    body = create_body_model("smplx", model_dir=reference_dir)
    ids = body.bm_x.vertex_joint_selector.extra_joints_idxs.tolist()
    assert ids == [120, 329, 448, 16, 6, 370, 380, 446, 63, 74, 235, 561, 133, 258, 369, 486, 279, 469, 594, 105, 222]


def test_unknown_body_model():
    with pytest.raises(BodyModelError, match="anny, smplx"):
        create_body_model("smpl")


# ---------------------------------------------------------------- Anny


def test_anny_spec_faces_and_empty_state_dict(anny_body):
    spec = anny_body.spec
    assert (spec.num_pose_joints, spec.num_shape, spec.num_expression) == (36, 6, 0)
    assert spec.num_vertices == 13718 and spec.num_joints == 104
    assert spec.joint_names[spec.pelvis_index] == "root" and spec.joint_names[spec.head_index] == "head"
    assert spec.joint_parents[0] == -1 and all(0 <= p < i for i, p in enumerate(spec.joint_parents) if i)
    faces = anny_body.faces
    assert faces.dtype == torch.long and faces.shape[1] == 3 and faces.shape[0] > 20000
    assert faces.min() >= 0 and faces.max() < spec.num_vertices
    assert (faces[:, 0] != faces[:, 1]).all() and (faces[:, 1] != faces[:, 2]).all()
    assert list(anny_body.state_dict()) == []
    torch.testing.assert_close(anny_body.mean_shape(), torch.full((6,), 0.5))
    assert anny_body.rest_pose().shape == (36, 3, 3)


def test_anny_forward_shapes_and_canonical_frame(anny_body):
    spec = anny_body.spec
    names = list(spec.joint_names)
    out = anny_body(anny_body.rest_pose().expand(2, -1, -1, -1), anny_body.mean_shape().expand(2, -1))
    assert out.vertices.shape == (2, 13718, 3) and out.joints.shape == (2, 104, 3)
    j = out.joints[0]
    pelvis, head = j[spec.pelvis_index], j[spec.head_index]
    torch.testing.assert_close(pelvis, torch.zeros(3), atol=1e-5, rtol=0)
    assert 0.45 < head[1] - pelvis[1] < 0.8  # head above the pelvis along +y, metres
    assert j[names.index("foot.L"), 1] < -0.6
    assert j[names.index("toe1-1.L"), 2] > j[names.index("foot.L"), 2] + 0.05  # toes point to +z
    assert j[names.index("eye.L"), 2] > head[2] + 0.03  # the face looks to +z
    assert j[names.index("wrist.L"), 0] > 0.3 and j[names.index("wrist.R"), 0] < -0.3  # +x is the body's left
    height = out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min()
    assert 1.4 < height < 2.0


def test_anny_global_orientation_about_the_pelvis(anny_body):
    rot = _random_rotmats(1, 36, scale=0.3, seed=5)
    shape = torch.rand(1, 6)
    base_rot = rot.clone()
    base_rot[:, 0] = torch.eye(3)
    base = anny_body(base_rot, shape)
    turn = roma.rotvec_to_rotmat(torch.tensor([[0.0, math.pi, 0.0]]))  # half turn about +y: now facing -z
    rot[:, 0] = turn
    turned = anny_body(rot, shape)
    pelvis = base.joints[:, 0:1]
    torch.testing.assert_close(
        turned.vertices, (base.vertices - pelvis) @ turn.transpose(1, 2) + pelvis, atol=1e-5, rtol=1e-4
    )
    names = list(anny_body.spec.joint_names)
    assert turned.joints[0, names.index("eye.L"), 2] < turned.joints[0, names.index("head"), 2]


def test_anny_pose_is_in_canonical_axes(anny_body):
    """A +x rotation of the left knee bends it backwards (foot to -z), as in SMPL-X."""
    names = list(anny_body.spec.pose_joint_names)
    rot = anny_body.rest_pose().unsqueeze(0).clone()
    rot[0, names.index("lowerleg01.L")] = roma.rotvec_to_rotmat(torch.tensor([1.2, 0.0, 0.0]))
    bent = anny_body(rot, anny_body.mean_shape()[None])
    rest = anny_body(anny_body.rest_pose()[None], anny_body.mean_shape()[None])
    foot = list(anny_body.spec.joint_names).index("foot.L")
    assert bent.joints[0, foot, 2] < rest.joints[0, foot, 2] - 0.2
    assert bent.joints[0, foot, 1] > rest.joints[0, foot, 1] + 0.1


def test_anny_phenotypes_change_the_body(anny_body):
    rot = anny_body.rest_pose().expand(4, -1, -1, -1)
    shape = torch.full((4, 6), 0.5)
    shape[0, 4], shape[1, 4] = 0.0, 1.0  # height
    shape[2, 1] = 1 / 3  # age: child
    out = anny_body(rot, shape)
    heights = out.vertices[..., 1].amax(1) - out.vertices[..., 1].amin(1)
    assert heights[0] < heights[3] - 0.1 < heights[1] - 0.2
    assert heights[2] < heights[3] - 0.1


def test_anny_gradients_flow(anny_body):
    rot = _random_rotmats(2, 36, scale=0.2).requires_grad_(True)
    shape = torch.full((2, 6), 0.4, requires_grad=True)
    out = anny_body(rot, shape)
    (out.vertices.square().sum() + out.joints.sum()).backward()
    for t in (rot, shape):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_anny_trains_after_inference_mode_use(anny_body):
    """A Predictor (inference_mode) and training in one process: roma's memoised constants and
    the shared Anny instance must not leak inference tensors into a later autograd forward."""
    with torch.inference_mode():
        anny_body(_random_rotmats(1, 36, scale=0.2), torch.full((1, 6), 0.5))
        created_in_inference = create_body_model("anny")
    assert not created_in_inference.anny.template_vertices.is_inference()
    rot = _random_rotmats(1, 36, scale=0.2).requires_grad_(True)
    shape = torch.full((1, 6), 0.4, requires_grad=True)
    anny_body(rot, shape).vertices.sum().backward()
    assert shape.grad is not None and torch.isfinite(shape.grad).all()


def test_anny_all_bones_and_cheap_reconstruction(anny_body):
    import time

    start = time.perf_counter()
    full = create_body_model("anny", bones="all")
    assert time.perf_counter() - start < 2.0  # a copy of the per-process instance
    assert full.spec.num_pose_joints == 104
    out = full(full.rest_pose()[None], full.mean_shape()[None])
    ref = anny_body(anny_body.rest_pose()[None], anny_body.mean_shape()[None])
    torch.testing.assert_close(out.vertices, ref.vertices)
    with pytest.raises(BodyModelError):
        create_body_model("anny", bones=("root", "nope"))


@pytest.mark.parametrize("case", ["A", "B"])
def test_smplx_reproduces_upstream_meshes(reference_dir, case):
    """Upstream Multi-HMR meshes = our body at its predicted rotations, moved to its pelvis translation."""
    body = create_body_model("smplx", model_dir=reference_dir)
    data = np.load(reference_dir / f"case_{case}.npz")
    out = body(
        torch.tensor(data["inter_rotmat"]), torch.tensor(data["out_shape"]), torch.tensor(data["out_expression"])
    )
    shift = torch.tensor(data["out_transl_pelvis"]) - out.joints[:, body.spec.pelvis_index : body.spec.pelvis_index + 1]
    ref_v, ref_j = torch.tensor(data["out_v3d"]), torch.tensor(data["out_j3d"])
    torch.testing.assert_close(out.vertices + shift, ref_v, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.joints + shift, ref_j, atol=2e-5, rtol=1e-4)


def test_bodies_stay_float32_under_autocast(anny_body, smplx_body):
    for body in (anny_body, smplx_body):
        spec = body.spec
        rot = _random_rotmats(2, spec.num_pose_joints, scale=0.2, seed=9)
        shape = body.mean_shape().expand(2, -1) + 0.05
        expr = torch.zeros(2, spec.num_expression)
        ref = body(rot, shape, expr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = body(rot, shape, expr)
        assert out.vertices.dtype == torch.float32
        torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
