"""Geometry of the Predictor: letterboxing, K scaling, un-padding and translation.

Each test fails if one of these is wrong: the pixel map of resize + pad, the intrinsics given to
the network, the mapping of 2D outputs back to the original image, or the 3D placement.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lighthmr_ros.inference import Letterbox, Predictor, letterbox
from lighthmr_ros.model.camera import project
from lighthmr_ros.model.hmr import Detections


def _project(X, K):
    y = X / X[..., 2:3]
    return (y @ np.asarray(K).T)[..., :2]


@pytest.mark.parametrize(
    "hw,uv", [((300, 500), (400.0, 60.0)), ((500, 200), (30.0, 444.0)), ((120, 120), (60.0, 15.0))]
)
def test_letterbox_pixel_map(hw, uv):
    h, w = hw
    img = np.zeros((h, w, 3), np.uint8)
    u, v = int(uv[0]), int(uv[1])
    img[v - 3 : v + 4, u - 3 : u + 4] = 255  # a 7x7 square centred on (u, v)
    out, box = letterbox(img, 448)
    assert out.shape == (448, 448, 3)
    ys, xs = np.nonzero(out[..., 0] > 60)
    wts = out[ys, xs, 0].astype(float)
    found = np.array([np.average(xs, weights=wts), np.average(ys, weights=wts)])
    assert np.allclose(found, box.to_network([u, v]), atol=0.35)
    assert np.allclose(box.to_original(box.to_network([u, v])), [u, v])
    # The long side fills the square; the padding is split evenly.
    assert max(round(w * box.sx), round(h * box.sy)) == 448


def test_network_K_is_the_letterboxed_camera():
    box = letterbox(np.zeros((300, 500, 3), np.uint8), 448)[1]
    K = np.array([[610.0, 0, 230.0], [0, 590.0, 140.0], [0, 0, 1]])
    X = np.random.default_rng(0).uniform([-2, -1, 2], [2, 1, 8], (50, 3))
    assert np.allclose(_project(X, box.map_K(K)), box.to_network(_project(X, K)), atol=1e-9)


def test_injected_detection_maps_back(student_smplx):
    """Known 3D joints placed by hand in the network frame come back at their original-image pixels."""
    pred = Predictor(student_smplx, device="cpu")
    h, w = 300, 500
    K = np.array([[610.0, 0, 230.0], [0, 590.0, 140.0], [0, 0, 1]])
    _, K_net, boxes, K_orig = pred.prepare([np.zeros((h, w, 3), np.uint8)], [K])
    box = boxes[0]
    assert np.allclose(K_net[0].numpy(), box.map_K(K), atol=1e-4)
    spec = student_smplx.body.spec
    rng = np.random.default_rng(1)
    joints = rng.uniform([-0.5, -0.9, -0.2], [0.5, 0.9, 0.2], (2, spec.num_joints, 3)) + [
        [[0.3, 0.2, 4.0]],
        [[-1.0, 0.5, 6.0]],
    ]
    head = joints[:, spec.head_index]
    J = torch.tensor(joints, dtype=torch.float32)
    loc = torch.tensor(box.to_network(_project(head, K)), dtype=torch.float32)
    P = 2
    z = torch.zeros
    det = Detections(
        batch_index=torch.zeros(P, dtype=torch.long),
        score=torch.tensor([0.9, 0.8]),
        loc=loc,
        dist=torch.tensor(head[:, 2]),
        transl=torch.tensor(head, dtype=torch.float32),
        transl_pelvis=J[:, spec.pelvis_index],
        rotmat=torch.eye(3).expand(P, spec.num_pose_joints, 3, 3),
        rotvec=z(P, spec.num_pose_joints, 3),
        shape=z(P, spec.num_shape),
        expression=z(P, spec.num_expression),
        vertices=z(P, spec.num_vertices, 3),
        joints=J,
        joints_2d=project(J, K_net.expand(P, 3, 3)),
        cells=z(P, 2, dtype=torch.long),
        offset=z(P, 2),
        pred_cam=z(P, 3),
        score_map=z(1, 28, 28),
    )
    humans = pred.to_humans(det, boxes, K_orig)[0]
    assert [hm.id for hm in humans] == [0, 1]
    for p, hm in enumerate(humans):
        assert np.allclose(hm.center_2d, _project(head[p], K), atol=1e-3)
        assert np.allclose(hm.joints_2d, _project(joints[p], K), atol=1e-3)
        assert np.allclose(hm.translation, joints[p, spec.pelvis_index], atol=1e-6)
        # The network-image 2D joints, un-letterboxed, agree with the original-image ones.
        assert np.allclose(box.to_original(det.joints_2d[p].numpy()), hm.joints_2d, atol=2e-3)


def test_end_to_end_primary_keypoint_reprojects(student_smplx):
    """The network's 3D primary keypoint projects (original K) onto its 2D centre in a non-square image."""
    pred = Predictor(student_smplx, device="cpu")
    img = np.random.default_rng(2).integers(0, 255, (260, 520, 3), dtype=np.uint8)
    K = np.array([[480.0, 0, 300.0], [0, 470.0, 110.0], [0, 0, 1]])  # off-centre principal point
    humans = pred.predict(img, K=K, det_threshold=0.0, max_humans=5)
    assert len(humans) == 5
    spec = student_smplx.body.spec
    for hm in humans:
        assert np.allclose(_project(hm.extras["primary_keypoint"], K), hm.center_2d, atol=0.05)
        assert np.allclose(hm.joints_2d[spec.head_index], hm.center_2d, atol=0.05)
        assert np.allclose(hm.joints[spec.pelvis_index], hm.translation, atol=1e-6)
        assert np.allclose(_project(hm.joints, K), hm.joints_2d, atol=1e-2)


def test_scaled_image_gives_same_3d(student_smplx):
    """An image and its 2x enlargement (K scaled the same way) give the same 3D people, 2D scaled by 2."""
    pred = Predictor(student_smplx, device="cpu")
    rng = np.random.default_rng(3)
    big = cv2.resize(rng.integers(0, 255, (84, 112, 3), dtype=np.uint8), (896, 672), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(big, (448, 336), interpolation=cv2.INTER_AREA)  # what the letterbox does to `big`
    K_small = np.array([[400.0, 0, 200.0], [0, 410.0, 180.0], [0, 0, 1]])
    K_big = np.array([[800.0, 0, 400.5], [0, 820.0, 360.5], [0, 0, 1]])  # 2x about pixel centres
    a, b = pred.predict([small, big], K=[K_small, K_big], det_threshold=0.0, max_humans=4)
    assert len(a) == len(b) == 4
    for ha, hb in zip(a, b, strict=False):
        assert np.allclose(ha.joints, hb.joints, atol=1e-4)
        assert np.allclose(ha.translation, hb.translation, atol=1e-4)
        assert np.allclose(2 * ha.joints_2d + 0.5, hb.joints_2d, atol=1e-2)
        assert np.allclose(2 * ha.center_2d + 0.5, hb.center_2d, atol=1e-2)


def test_padding_is_undone(student_smplx):
    """A wide image and the same image pre-padded to a square by hand (K shifted) agree."""
    pred = Predictor(student_smplx, device="cpu")
    img = np.random.default_rng(4).integers(0, 255, (336, 448, 3), dtype=np.uint8)
    padded = np.zeros((448, 448, 3), np.uint8)
    padded[56:392] = img
    K = np.array([[380.0, 0, 250.0], [0, 380.0, 150.0], [0, 0, 1]])
    K_pad = K.copy()
    K_pad[1, 2] += 56
    a, b = pred.predict([img, padded], K=[K, K_pad], det_threshold=0.0, max_humans=4)
    for ha, hb in zip(a, b, strict=False):
        assert np.allclose(ha.joints, hb.joints, atol=1e-4)
        assert np.allclose(ha.center_2d + [0, 56], hb.center_2d, atol=1e-3)
        assert np.allclose(ha.joints_2d + [0, 56], hb.joints_2d, atol=1e-2)


def test_letterbox_dataclass_inverse():
    box = Letterbox(0.5, 0.5, 10.0, -3.0, 100, 80)
    pts = np.array([[1.0, 2.0], [99.0, 79.0]])
    assert np.allclose(box.to_original(box.to_network(pts)), pts)
