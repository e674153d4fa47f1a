"""Loss terms and GT construction (independent checks against the smplx library)."""

from __future__ import annotations

import math

import pytest
import torch

from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.losses import LossWeights, focal_loss, gaussian_heatmap, pose_index_map
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import collate, prepare_sample


def test_gaussian_heatmap_peaks_and_focal_loss_by_hand():
    cells = torch.tensor([5, 0])
    bidx = torch.tensor([0, 1])
    hm = gaussian_heatmap(cells, bidx, 2, (3, 4), sigma=1.0)
    assert hm[0, 5] == 1.0 and hm[1, 0] == 1.0 and (hm < 1).sum() == 22
    assert hm[0, 6] == pytest.approx(math.exp(-0.5))  # one cell to the right
    # one positive at logit 0 (p = 0.5) and confident negatives: (1 - p)^2 * -log p = 0.25 log 2
    logits = torch.full((1, 12), -30.0)
    logits[0, 5] = 0.0
    target = torch.zeros(1, 12)
    target[0, 5] = 1.0
    assert float(focal_loss(logits, target)) == pytest.approx(0.25 * math.log(2), rel=1e-5)
    # a negative at p = 0.5 with target 0.5 nearby: (1 - 0.5)^4 * 0.5^2 * log 2 added
    logits[0, 6] = 0.0
    target[0, 6] = 0.5
    assert float(focal_loss(logits, target)) == pytest.approx(
        0.25 * math.log(2) + 0.0625 * 0.25 * math.log(2), rel=1e-5
    )


def test_bedlam_targets_match_the_smplx_library(bedlam_root, smplx_model_dir):
    import smplx

    from lighthmr_ros.body.smplx_model import SMPLXBody

    body = SMPLXBody(smplx_model_dir)
    ds = create_dataset("bedlam", bedlam_root[0], split="train")
    s = prepare_sample(ds[0], 224)
    batch = collate([s], 224, select=False)
    keep = torch.ones(len(s.persons), dtype=torch.bool)
    t = build_person_targets(batch, keep, body, torch.device("cpu"))
    # rotations land in the model's pose order (jaw last, hands before it, eyes not predicted)
    pm, ps = pose_index_map(body.spec.pose_joint_names)
    pose_of = dict(zip(pm, ps, strict=True))
    assert pose_of[52] == 22 and pose_of[21] == 21 and pose_of[22] == 25
    assert t.rot_mask.all() and t.vertices_mask.all() and t.shape_mask.all()
    # the same person through smplx itself, as BEDLAM defines it: neutral SMPL-X with all 11 betas and the
    # annotated eye rotations, transl = trans_cam + cam_ext[:3,3]
    assert batch["shape"].shape[1] == 11 and batch["rotvec"][0, 23:25].abs().sum() > 0

    def reference(num_betas, eyes):
        ref = smplx.SMPLX(
            str(smplx_model_dir / "SMPLX_NEUTRAL.npz"),
            gender="neutral",
            use_pca=False,
            flat_hand_mean=True,
            num_betas=num_betas,
            num_expression_coeffs=10,
        )
        sel = (
            ref.vertex_joint_selector.extra_joints_idxs
        )  # synthetic mesh: real extra-joint ids taken modulo V
        sel.copy_(sel % ref.v_template.shape[0])
        rv = torch.as_tensor(batch["rotvec"][0], dtype=torch.float32)
        eye = (lambda i: rv[None, i]) if eyes else (lambda i: torch.zeros(1, 3))
        return ref(
            global_orient=rv[None, 0],
            body_pose=rv[None, 1:22].reshape(1, -1),
            jaw_pose=rv[None, 22],
            leye_pose=eye(23),
            reye_pose=eye(24),
            left_hand_pose=rv[None, 25:40].reshape(1, -1),
            right_hand_pose=rv[None, 40:55].reshape(1, -1),
            betas=batch["shape"][:1, :num_betas],
            expression=torch.zeros(1, 10),
            transl=batch["transl"][:1],
        )

    out = reference(11, eyes=True)
    torch.testing.assert_close(t.joints[0], out.joints[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(t.vertices[0], out.vertices[0], atol=1e-4, rtol=0)
    biased = reference(10, eyes=False)  # what the network's own 10-beta, eyes-at-rest body would give
    assert float((biased.vertices[0] - out.vertices[0]).norm(dim=-1).mean()) > 5e-4  # 0.9 mm here
    assert float(t.dist[0]) == pytest.approx(float(out.joints[0, 15, 2]), abs=1e-5)
    # 2-D targets are the annotated keypoints in network pixels (first 55 joints, model order)
    torch.testing.assert_close(t.joints_2d[:, :55], batch["joints_2d"][:, :55])


def test_threedpw_targets_are_joint_only(threedpw_root, smplx_model_dir):
    from lighthmr_ros.body.smplx_model import SMPLXBody

    body = SMPLXBody(smplx_model_dir)
    s = prepare_sample(create_dataset("3dpw", threedpw_root[0], split="test")[0], 224)
    batch = collate([s], 224, select=False)
    t = build_person_targets(batch, torch.ones(len(s.persons), dtype=torch.bool), body, torch.device("cpu"))
    assert t.rot_mask[:, :22].all() and not t.rot_mask[:, 22:].any()  # SMPL's 22 shared joints only
    assert not t.shape_mask.any() and not t.vertices_mask.any()
    assert t.joints_mask[:, :22].all() and not t.joints_mask[:, 22:].any()
    torch.testing.assert_close(t.joints[:, :22], batch["joints_3d"][:, :22])
    assert LossWeights().joints_3d > 0


def test_teacher_resizing_keeps_K_consistent_and_score_peaks():
    import torch.nn.functional as F

    from lighthmr_ros.training.distill import resample_scores, scale_K

    img = torch.zeros(1, 1, 224, 224)
    img[0, 0, 58:63, 98:103] = 1.0  # centred on pixel (100, 60)
    big = F.interpolate(img, size=(448, 448), mode="bilinear", align_corners=False)[0, 0]
    ys, xs = torch.nonzero(big > 0, as_tuple=True)
    w = big[ys, xs]
    centroid = torch.stack([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    K = torch.tensor([[200.0, 0, 100], [0, 200.0, 60], [0, 0, 1]])
    Kt = scale_K(K, 2.0)
    torch.testing.assert_close(
        Kt[:2, 2], centroid, atol=0.05, rtol=0
    )  # the principal point follows the pixels
    assert float(Kt[0, 0]) == 400.0
    scores = torch.zeros(1, 32 * 32)
    scores[0, 5 * 32 + 7] = 0.9
    down = resample_scores(scores, (32, 32), (16, 16))
    assert float(down.max()) == pytest.approx(0.9) and int(down.argmax()) == 2 * 16 + 3
