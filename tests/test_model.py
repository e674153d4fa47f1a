"""Model building blocks, registry, parameter budget, inference and training forwards."""

from __future__ import annotations

import io
import math

import pytest
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.model import count_parameters, get_config, list_models, print_param_counts
from lighthmr_ros.model.camera import CameraEmbedding, default_K, project, token_centres, unproject
from lighthmr_ros.model.heads import nms, pick_peaks
from lighthmr_ros.model.hph import rot6d_to_rotmat, rotmat_to_rot6d
from lighthmr_ros.model.param_counts import count_config


def test_registry():
    assert set(list_models()) >= {
        "lighthmr_tinyvit5m",
        "lighthmr_tinyvit5m_256",
        "multihmr_vits14",
        "multihmr_vitb14",
        "multihmr_vitl14",
    }
    cfg = get_config("lighthmr_tinyvit5m", image_size=640)
    assert cfg.image_size == 640 and cfg.grid == 40 and 16 <= cfg.hph_heads <= 24 and cfg.hph_dim == 384
    assert get_config("lighthmr_tinyvit5m_256").hph_dim == 256
    with pytest.raises(ConfigError, match="unknown model"):
        get_config("resnet50")
    with pytest.raises(ConfigError, match="unknown model option"):
        get_config("lighthmr_tinyvit5m", hph_widht=3)
    with pytest.raises(ConfigError, match="multiple of 32"):
        get_config("lighthmr_tinyvit5m", image_size=464)


def test_parameter_budget():
    student = count_config("lighthmr_tinyvit5m", body_model="smplx")
    assert 10e6 < student["total"] <= 14.5e6  # the budget of the design, SMPL-X head
    assert count_config("lighthmr_tinyvit5m_256")["total"] < student["total"]
    # The teacher's learned parameters equal upstream's (reference manifest, smplx zeros excluded).
    assert count_config("multihmr_vits14")["total"] == 31_455_448
    buf = io.StringIO()
    counts = print_param_counts(["lighthmr_tinyvit5m", "multihmr_vits14"], file=buf)
    assert "lighthmr_tinyvit5m" in buf.getvalue() and f"{student['total'] / 1e6:.3f}" in buf.getvalue()
    assert counts["multihmr_vits14"]["encoder"] == 22_056_576


def test_model_count_matches_config(student_smplx):
    assert count_parameters(student_smplx) == count_config("lighthmr_tinyvit5m", body_model="smplx")


def test_nms_and_peaks():
    m = torch.zeros(2, 6, 7)
    m[0, 1, 1], m[0, 1, 2], m[0, 4, 5] = 0.9, 0.8, 0.7  # (1,2) is suppressed by its neighbour
    m[1, 0, 6], m[1, 5, 0], m[1, 3, 3] = 0.6, 0.95, 0.55
    b, n = pick_peaks(nms(m, 3), 0.5, 20)
    assert b.tolist() == [0, 0, 1, 1, 1]
    assert n.tolist() == [1 * 7 + 1, 4 * 7 + 5, 0 * 7 + 6, 3 * 7 + 3, 5 * 7 + 0]  # raster order, not by score
    b, n = pick_peaks(nms(m, 3), 0.5, 2)  # the 2 best of each image, still in raster order
    assert b.tolist() == [0, 0, 1, 1] and n.tolist() == [8, 33, 6, 35]
    assert pick_peaks(nms(m, 1), 0.75, 20)[1].tolist() == [8, 9, 35]
    even = nms(m, 2)
    assert even.shape == m.shape


def test_camera_geometry():
    K = torch.tensor([[[500.0, 0, 320], [0, 450.0, 200], [0, 0, 1]]])
    pts = torch.tensor([[[10.0, 20.0], [600.0, 380.0]]])
    X = unproject(pts, K, torch.full((1, 2, 1), 3.0))
    assert torch.allclose(X[..., 2], torch.tensor(3.0))
    assert torch.allclose(project(X, K), pts, atol=1e-4)
    c = token_centres(2, 3, 14)
    assert c.tolist() == [[7, 7], [21, 7], [35, 7], [7, 21], [21, 21], [35, 21]]
    assert token_centres(2, 3, 14, row_first=True)[:, [1, 0]].tolist() == c.tolist()
    emb = CameraEmbedding(16, 64)
    assert emb.channels == 99 and emb(X).shape == (1, 2, 99)
    Kd = default_K(640, 480, 60.0)
    assert math.isclose(float(Kd[0, 0]), 320 / math.tan(math.radians(30)), rel_tol=1e-6)
    assert Kd[0, 2] == 320 and Kd[1, 2] == 240


def test_rot6d_roundtrip():
    import roma

    R = roma.random_rotmat(10)
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(R)), R, atol=1e-6)


@pytest.mark.slow
def test_student_forward(student_smplx):
    model = student_smplx
    x = torch.randn(3, 3, 448, 448)
    K = default_K(448, 448)[None].repeat(3, 1, 1)
    with torch.inference_mode():
        det = model(x, K, det_threshold=0.0, max_humans=4)
        none = model(x, K, det_threshold=1.01)
    spec = model.body.spec
    assert len(det) == 12 and det.batch_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert det.rotmat.shape == (12, spec.num_pose_joints, 3, 3) and det.rotvec.shape == (12, spec.num_pose_joints, 3)
    assert det.vertices.shape == (12, spec.num_vertices, 3) and det.joints_2d.shape == (12, spec.num_joints, 2)
    assert det.score_map.shape == (3, 28, 28)
    # Primary keypoint at K^-1 [loc, 1] * dist and projected back onto loc.
    assert torch.allclose(det.joints[:, spec.head_index], det.transl, atol=1e-5)
    assert torch.allclose(det.joints_2d[:, spec.head_index], det.loc, atol=1e-2)
    assert torch.allclose(det.transl[:, 2], det.dist)
    assert torch.allclose(det.rotmat @ det.rotmat.transpose(-1, -2), torch.eye(3).expand_as(det.rotmat), atol=1e-5)
    assert len(none) == 0 and none.vertices.shape == (0, spec.num_vertices, 3)
    # Persons do not depend on the other images of the batch.
    with torch.inference_mode():
        single = model(x[1:2], K[1:2], det_threshold=0.0, max_humans=4)
    assert torch.allclose(single.vertices, det.vertices[4:8], atol=1e-4)


@pytest.mark.slow
def test_forward_train_gradients(student_smplx):
    model = student_smplx
    model.train()
    try:
        x = torch.randn(2, 3, 448, 448)
        K = default_K(448, 448)[None].repeat(2, 1, 1)
        out = model.forward_train(x, K, [torch.tensor([5, 300]), torch.tensor([], dtype=torch.long)])
        assert out["score_logits"].shape == (2, 784) and out["offsets"].shape == (2, 784, 2) and out["grid"] == (28, 28)
        assert out["batch_index"].tolist() == [0, 0] and out["tokens"].shape == (2, 784, 384)
        assert out["vertices"].shape[0] == out["joints_2d"].shape[0] == out["pred_cam"].shape[0] == 2
        loss = out["score_logits"].mean() + out["vertices"].square().mean() + out["offsets"].mean()
        loss.backward()
        for name in (
            "backbone.trunk.patch_embed.conv1.conv.weight",
            "x_attention_head.decpose.weight",
            "mlp_classif.0.weight",
            "mlp_offset.2.weight",
        ):
            g = dict(model.named_parameters())[name].grad
            assert g is not None and g.abs().sum() > 0, name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@pytest.mark.parametrize("size,stride,grid", [(320, 32, 10), (480, 16, 30)])
def test_tinyvit_encoder_sizes(size, stride, grid):
    from lighthmr_ros.model.encoders import TinyViTEncoder

    enc = TinyViTEncoder(stride=stride, out_dim=64).eval()
    with torch.inference_mode():
        tokens, hw = enc(torch.randn(1, 3, size, size))
    assert hw == (grid, grid) and tokens.shape == (1, grid * grid, 64)
    with pytest.raises(ConfigError, match="multiple of 32"):
        enc(torch.randn(1, 3, 100, 100))


def test_dinov2_encoder_keys_and_grid():
    from lighthmr_ros.model.encoders import DinoV2Encoder

    enc = DinoV2Encoder("dinov2_vits14").eval()
    keys = set(enc.state_dict())
    assert {
        "encoder.cls_token",
        "encoder.pos_embed",
        "encoder.mask_token",
        "encoder.patch_embed.proj.weight",
        "encoder.blocks.11.ls2.gamma",
        "encoder.norm.bias",
    } <= keys
    with torch.inference_mode():
        tokens, hw = enc(torch.randn(1, 3, 224, 224))
    assert hw == (16, 16) and tokens.shape == (1, 256, 384)


def test_peak_search_drops_duplicates_but_keeps_neighbours():
    """Two peaks in adjacent cells: max-pool NMS (kernel 3) keeps one; centre suppression keeps both
    unless their refined keypoints (cell + offset) coincide, as a duplicate's do."""
    from types import SimpleNamespace

    from lighthmr_ros.model.config import get_config
    from lighthmr_ros.model.heads import suppress_close_centres
    from lighthmr_ros.model.hmr import HMRModel

    keep = suppress_close_centres(
        torch.tensor([0, 0, 0, 1]),
        torch.tensor([[10.0, 10.0], [12.0, 10.0], [30.0, 10.0], [11.0, 10.0]]),
        torch.tensor([0.9, 0.8, 0.7, 0.6]),
        radius=8.0,
    )
    assert keep.tolist() == [True, False, True, True]

    score_map = torch.full((1, 4, 4), 1e-4)
    score_map[0, 1, 1], score_map[0, 1, 2] = 0.9, 0.8
    tokens = torch.zeros(1, 16, 2)  # the stand-in offset head returns the tokens: (dx, dy) in cells

    def people(offsets_x: tuple[float, float], **config):
        t = tokens.clone()
        t[0, 5, 0], t[0, 6, 0] = offsets_x
        ns = SimpleNamespace(config=get_config("lighthmr_tinyvit5m", **config), stride=16, mlp_offset=lambda x: x)
        b, n, offset = HMRModel.find_people(ns, t, score_map, det_threshold=0.5)
        assert torch.equal(offset, t[b, n])
        return n.tolist()

    assert people((0.0, 0.0)) == [5]  # the config default: upstream 3x3 max-pool NMS
    assert people((0.0, 0.0), nms_kernel=1, nms_radius=0.5) == [5, 6]  # 16 px apart: two people
    assert people((0.45, -0.45), nms_kernel=1, nms_radius=0.5) == [5]  # 1.6 px apart: one person twice
    assert people((0.0, 0.0), nms_kernel=1) == [5, 6]


@pytest.mark.parametrize("queries", [1, 5, 30])
def test_cross_attention_folded_projections_match_plain_attention(queries):
    """The folded path (fewer queries than dim_head) and the plain one compute the same attention."""
    from lighthmr_ros.model.hph import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(dim=48, context_dim=40, heads=4, dim_head=16).eval()
    x, context = torch.randn(2, queries, 48), torch.randn(2, 300, 40)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    split = lambda t: t.reshape(2, t.shape[1], 4, 16).transpose(1, 2)  # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(split(attn.to_q(x)), split(k), split(v))
    ref = attn.to_out(ref.transpose(1, 2).reshape(2, queries, 64))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, context), ref, atol=1e-5, rtol=1e-5)
