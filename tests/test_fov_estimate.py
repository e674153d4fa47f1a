"""One field of view per camera (``fov_estimate: stable``): the stabiliser alone, then through the FramePipeline
with a real Anny teacher (random weights) whose per-frame estimates jitter by several degrees.

The untrained teacher's camera head answers about 90.36 degrees for every noise image (its estimates differ by
thousandths of a degree), so the pipeline tests rescale the head's last layer around that mean: the same
network, with estimates spread like a real camera head's frame-to-frame jitter.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES, FovStabiliser

W, H = 320, 240


# -- the stabiliser ---------------------------------------------------------------------------------
def test_noisy_estimates_converge_to_their_median_and_then_stay_put():
    rng = np.random.default_rng(3)
    noisy = 62.0 + rng.normal(0.0, 3.0, 200)
    noisy[::7] = 150.0  # the odd absurd frame (a person filling the view, a cut-off body)
    stab = FovStabiliser()
    assert stab.settle_frames == DEFAULT_SETTLE_FRAMES == 30
    assert stab.current(W, H) is None  # nothing yet: the frame runs with the model's own K
    values = []
    for fov in noisy:
        value = stab.current(W, H)
        values.append(value)
        stab.update(W, H, float(fov), people=1)
    assert [v.frames for v in values[1:31]] == list(range(1, 31))
    assert not values[29].settled and values[30].settled and values[30].frames == 30
    assert values[30].fov_deg == pytest.approx(float(np.median(noisy[:30])), abs=1e-12)
    assert abs(values[30].fov_deg - 62.0) < 1.5  # the outliers (5 of 30) do not pull a median
    assert all(v == values[30] for v in values[30:])  # frozen: identical from then on, whatever comes
    assert stab.frames == 30  # no samples kept once settled
    assert values[30].describe() == "stable: median of 30 frames with people"
    assert values[5].describe() == "settling: median of 5/30 frames with people"
    spread = [abs(v.fov_deg - values[30].fov_deg) for v in values[3:30]]
    assert max(spread[-10:]) < max(spread[:10])  # it moves less and less while settling


def test_a_new_image_size_starts_again():
    stab = FovStabiliser(settle_frames=3)
    for fov in (60.0, 61.0, 59.0):
        stab.update(W, H, fov, people=2)
    assert stab.current(W, H).settled and stab.current(W, H).fov_deg == 60.0
    assert stab.current(H, W) is None  # portrait mode: other intrinsics
    stab.update(H, W, 45.0, people=1)
    assert stab.current(H, W).fov_deg == 45.0 and stab.current(H, W).frames == 1
    assert stab.current(W, H) is None  # back again: estimated afresh
    stab.update(W, H, 70.0, people=1)
    stab.reset()
    assert stab.current(W, H) is None


def test_frames_without_people_and_invalid_values_are_ignored():
    stab = FovStabiliser(settle_frames=2)
    stab.update(W, H, 150.0, people=0)  # nobody: the camera head had nothing to measure
    for bad in (None, math.nan, math.inf, 0.0, 180.0, -5.0):
        stab.update(W, H, bad, people=1)
    assert stab.current(W, H) is None
    stab.update(W, H, 58.0, people=1)
    stab.update(W, H, 10.0, people=0)
    stab.update(W, H, 62.0, people=3)
    value = stab.current(W, H)
    assert value.settled and value.fov_deg == 60.0 and value.frames == 2


def test_the_window_is_live():
    stab = FovStabiliser(settle_frames=5)
    for fov in (50.0, 60.0, 70.0):
        stab.update(W, H, fov, people=1)
    assert not stab.current(W, H).settled
    stab.settle_frames = 1  # lowered: settled at once on the first frame's value
    assert stab.current(W, H).settled and stab.current(W, H).fov_deg == 50.0
    assert stab.current(W, H).describe() == "stable: median of 1 frame with people"
    stab.settle_frames = 5  # raised again: it resumes
    stab.update(W, H, 80.0, people=1)
    stab.update(W, H, 90.0, people=1)
    assert stab.current(W, H).settled and stab.current(W, H).fov_deg == 70.0


def test_pipeline_options_refuse_unknown_modes():
    pytest.importorskip("rclpy")
    from lighthmr_ros.errors import ConfigError
    from lighthmr_ros.ros.pipeline import PipelineOptions

    assert PipelineOptions().fov_estimate == "stable" and PipelineOptions().fov_estimate_frames == 30
    with pytest.raises(ConfigError, match="stable, per_frame"):
        PipelineOptions(fov_estimate="smooth")
    with pytest.raises(ConfigError, match="at least 1"):
        PipelineOptions(fov_estimate_frames=0)


# -- through the FramePipeline with a real teacher --------------------------------------------------
FRAMES = [np.random.default_rng(seed).integers(0, 255, size=(H, W, 3), dtype=np.uint8) for seed in range(6)]
DETECT = dict(det_threshold=0.0, max_humans=1, with_vertices=False)


@pytest.fixture(scope="module")
def teacher():
    """A Predictor around an untrained small Anny teacher whose field of view jitters from image to image."""
    pytest.importorskip("rclpy")
    import torch

    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.model import create_model

    torch.manual_seed(0)
    model = create_model("multihmr_anny_vits14", image_size=224, hph_depth=1).eval()
    predictor = Predictor(model, device="cpu")
    fovs = np.array([predictor.predict_with_camera(f, **DETECT)[1].fov_estimate_deg for f in FRAMES])
    logits = np.log(fovs / (180.0 - fovs))  # fov = fov_max * sigmoid(logit), fov_max = pi
    scale = 0.1 / logits.std()  # spread the logits to a std of 0.1: about +-5 degrees
    last = model.encoder.mlp_fov_unique[-1]
    with torch.no_grad():
        last.weight.mul_(scale)
        last.bias.copy_(scale * (last.bias - float(logits.mean())))
    return predictor


def _msg(rgb: np.ndarray, sec: int):
    from lighthmr_ros.ros.image import rgb_to_image_msg

    msg = rgb_to_image_msg(rgb)
    msg.header.stamp.sec, msg.header.frame_id = sec, "cam_optical"
    return msg


def _run(pipeline, rgb: np.ndarray, sec: int, stream: str = "", **options):
    from lighthmr_ros.ros.pipeline import Frame, PipelineOptions

    opts = PipelineOptions(**{"det_threshold": 0.0, "max_humans": 1, "publish_vertices": False, "markers": False,
                              **options})
    (out,) = pipeline.process([Frame(_msg(rgb, sec), stream=stream)], opts)
    assert out.error is None and out.k_source == "estimated"
    return out


def _k(out) -> np.ndarray:
    return np.reshape(out.humans_msg.k, (3, 3))


def _own(teacher, rgb):
    """The frame's own estimate: (fov, K) from predict_with_camera."""
    _, camera = teacher.predict_with_camera(rgb, **DETECT)
    return camera.fov_estimate_deg, camera.K


@pytest.mark.ros
@pytest.mark.slow
def test_stable_K_settles_and_stays_identical_while_per_frame_jitters(teacher):
    from lighthmr_ros.ros.pipeline import FramePipeline

    own = [_own(teacher, rgb) for rgb in FRAMES]
    own_fovs = [fov for fov, _ in own]
    assert max(own_fovs) - min(own_fovs) > 3.0  # the per-frame estimates really jitter

    per_frame = FramePipeline(teacher)
    outs = [_run(per_frame, rgb, i + 1, fov_estimate="per_frame", fov_estimate_frames=3)
            for i, rgb in enumerate(FRAMES)]
    for out, (_, k) in zip(outs, own, strict=True):
        np.testing.assert_allclose(_k(out), k, rtol=1e-9)  # each frame its own K
        assert out.intrinsics.endswith(", per frame)") and out.fov_estimate is None
    assert len({_k(out)[0, 0] for out in outs}) == len(FRAMES)  # and every K differs

    stable = FramePipeline(teacher)
    outs = [_run(stable, rgb, i + 1, fov_estimate_frames=3) for i, rgb in enumerate(FRAMES)]  # default: stable
    np.testing.assert_allclose(_k(outs[0]), own[0][1], rtol=1e-9)  # no estimate yet: the frame's own
    assert outs[0].fov_estimate is None and "no frame with people yet" in outs[0].intrinsics
    for i in (1, 2):  # settling: the median of the frames so far
        assert outs[i].fov_estimate.frames == i and not outs[i].fov_estimate.settled
        assert outs[i].fov_estimate.fov_deg == pytest.approx(float(np.median(own_fovs[:i])), abs=1e-9)
    settled = float(np.median(own_fovs[:3]))
    k_stable = teacher.estimated_K(W, H, settled)
    for out in outs[3:]:  # settled: the very same K for every later frame
        assert np.array_equal(_k(out), _k(outs[3]))
        assert out.fov_estimate.settled and out.fov_estimate.fov_deg == settled
        assert out.intrinsics == f"estimated K (fov {settled:.1f} deg, stable: median of 3 frames with people)"
    np.testing.assert_allclose(_k(outs[3]), k_stable, rtol=1e-12)
    # the network ran with that K (one forward): the people are those of a plain predict with it
    expected = teacher.predict(FRAMES[5], K=k_stable, **DETECT)
    got = outs[5].humans_msg.humans[0].translation
    np.testing.assert_allclose([got.x, got.y, got.z], expected[0].translation, rtol=1e-5, atol=1e-6)
    assert expected[0].translation[2] != pytest.approx(  # where the frame's own K puts that person
        teacher.predict(FRAMES[5], **DETECT)[0].translation[2], rel=1e-3)


@pytest.mark.ros
@pytest.mark.slow
def test_empty_frames_size_changes_and_cameras_are_kept_apart(teacher):
    from lighthmr_ros.ros.pipeline import Frame, FramePipeline, PipelineOptions

    pipeline = FramePipeline(teacher)
    empty = _run(pipeline, FRAMES[0], 1, det_threshold=1.0, fov_estimate_frames=2)  # nobody found
    assert len(empty.humans) == 0 and "no frame with people yet" in empty.intrinsics
    out = _run(pipeline, FRAMES[1], 2, fov_estimate_frames=2)
    np.testing.assert_allclose(_k(out), _own(teacher, FRAMES[1])[1], rtol=1e-9)  # the empty frame did not count
    out = _run(pipeline, FRAMES[2], 3, fov_estimate_frames=2)
    assert out.fov_estimate.frames == 1 and out.fov_estimate.fov_deg == pytest.approx(_own(teacher, FRAMES[1])[0])
    out = _run(pipeline, FRAMES[3], 4, fov_estimate_frames=2)
    assert out.fov_estimate.settled

    small = np.ascontiguousarray(FRAMES[3][::2, ::2])  # another image size: estimated afresh
    out = _run(pipeline, small, 5, fov_estimate_frames=2)
    assert out.fov_estimate is None
    np.testing.assert_allclose(_k(out), _own(teacher, small)[1], rtol=1e-9)

    # Two cameras in one batch: each keeps its own estimate (camera "b" has none yet).
    opts = PipelineOptions(det_threshold=0.0, max_humans=1, publish_vertices=False, markers=False,
                           fov_estimate_frames=1)
    pipeline.process([Frame(_msg(FRAMES[4], 6), stream="a")], opts)
    a, b = pipeline.process([Frame(_msg(FRAMES[5], 7), stream="a"), Frame(_msg(FRAMES[5], 7), stream="b")], opts)
    assert a.fov_estimate.settled and a.fov_estimate.fov_deg == pytest.approx(_own(teacher, FRAMES[4])[0])
    assert b.fov_estimate is None  # b: its own estimate (batched: the rescaled head magnifies float noise)
    np.testing.assert_allclose(_k(b), _own(teacher, FRAMES[5])[1], rtol=1e-3)
    np.testing.assert_allclose(_k(a), teacher.estimated_K(W, H, a.fov_estimate.fov_deg), rtol=1e-12)
    assert abs(_k(a)[0, 0] / _k(b)[0, 0] - 1) > 0.01
    pipeline.reset()  # a new recording, a reactivated node: estimated afresh
    assert pipeline.process([Frame(_msg(FRAMES[5], 8), stream="a")], opts)[0].fov_estimate is None
