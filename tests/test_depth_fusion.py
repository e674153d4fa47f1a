"""RGB-D depth fusion on synthetic scenes rendered with their true depth."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lighthmr_ros.depth_fusion import (
    DepthFusionParams,
    depth_to_metres,
    fuse_depth,
    move_along_ray,
    render_owner_depth,
)
from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.synth import SceneGenerator, SynthConfig

W, H = 192, 160
FULL = DepthFusionParams(render_scale=1.0, min_pixels=20)  # the scenes are small: render at full size


@pytest.fixture(scope="module")
def scenes(anny_body):
    """Scenes with at least two people (one hidden in part by another in the first), true meshes and depth."""
    gen = SceneGenerator(SynthConfig(width=W, height=H, min_people=2, max_people=3, with_vertices=True),
                         body=anny_body)
    found = []
    for index in range(12):
        scene = gen.render(5, index)
        if len(scene.annotation["shape"]) >= 2:
            found.append(scene)
        if len(found) == 3:
            break
    return found, anny_body.faces.numpy()


def _people(ann) -> list[Human]:
    return [Human(id=p + 1, score=1.0, center_2d=ann["center_2d"][p],
                  translation=ann["transl_pelvis"][p].copy(),
                  pose=ann["pose"][p], shape=ann["shape"][p], expression=ann["expression"][p],
                  joints=ann["joints"][p].copy(), joints_2d=ann["joints_2d"][p].copy(),
                  vertices=ann["vertices"][p].astype(np.float32))
            for p in range(len(ann["shape"]))]


def _misplace(people: list[Human], K, factors) -> list[Human]:
    """The people moved along their rays to ``factor`` x their distance (a wrong monocular depth)."""
    return [move_along_ray(h, (f - 1.0) * float(h.translation[2]), K)[0] for h, f in zip(people, factors, strict=True)]


def test_fusion_puts_misplaced_people_back(scenes):
    for scene in scenes[0]:
        ann = scene.annotation
        truth = _people(ann)
        K = ann["K"].astype(np.float64)
        factors = [1.25, 0.8, 1.15][: len(truth)]
        wrong = _misplace(truth, K, factors)
        fused, report = fuse_depth(wrong, scene.depth, K, scenes[1], W, H, FULL)
        seen = [r.corrected for r in report]
        assert sum(seen) >= 1
        for h, t, r, f in zip(fused, truth, report, factors, strict=True):
            if not r.corrected:
                assert r.reason and r.scale == 1.0
                continue
            assert np.linalg.norm(h.translation - t.translation) < 0.03  # back within 3 cm
            assert r.scale == pytest.approx(1.0 / f, rel=0.02) and np.sign(r.delta_m) == np.sign(1.0 - f)
            np.testing.assert_allclose(h.joints_2d, t.joints_2d, atol=2.0)  # still where it is seen
            np.testing.assert_allclose(h.vertices - h.translation, t.vertices - t.translation, atol=1e-4)
            assert h.extras["depth_correction"] is r


def test_fusion_survives_missing_depth_and_refuses_without_evidence(scenes):
    scene = scenes[0][0]
    ann = scene.annotation
    K = ann["K"].astype(np.float64)
    truth = _people(ann)
    wrong = _misplace(truth, K, [1.2] * len(truth))
    holes = scene.depth.copy()
    holes[np.random.default_rng(0).random(holes.shape) < 0.5] = 0.0  # half the pixels without depth
    fused, report = fuse_depth(wrong, depth_to_metres(holes, "32FC1"), K, scenes[1], W, H, FULL)
    for h, t, r in zip(fused, truth, report, strict=True):
        if r.corrected:
            assert np.linalg.norm(h.translation - t.translation) < 0.04
    assert any(r.corrected for r in report)
    # the first person's pixels beyond the sensor's range (an empty hall behind a near crowd): left alone
    far = scene.depth.copy()
    far[scene.mask == 1] = 20.0
    _, report = fuse_depth(wrong, far, K, scenes[1], W, H, FULL)
    assert not report[0].corrected and report[0].reason == "too few pixels with valid depth"
    # no depth at all: nobody moves, and the report says why
    fused, report = fuse_depth(wrong, np.full((H, W), np.nan, np.float32), K, scenes[1], W, H, FULL)
    assert not any(r.corrected for r in report)
    assert all(r.reason in ("too few pixels with valid depth", "not visible") for r in report)
    for h, w in zip(fused, wrong, strict=True):
        np.testing.assert_array_equal(h.translation, w.translation)
    # depth that has nothing to do with the meshes (noise) is refused, not followed
    noise = np.random.default_rng(1).uniform(0.5, 9.0, (H, W)).astype(np.float32)
    _, report = fuse_depth(wrong, noise, K, scenes[1], W, H, FULL)
    assert not any(r.corrected for r in report)
    assert {r.reason for r in report} <= {"measured depth disagrees with the mesh",
                                          "too few pixels with valid depth", "not visible"}


def test_occluded_person_uses_only_its_own_pixels(scenes):
    """Where two people overlap in the image, the pixels belong to the nearer one only."""
    overlaps = 0
    for scene in scenes[0]:
        ann = scene.annotation
        K = ann["K"].astype(np.float64)
        people = _people(ann)
        owner, depth = render_owner_depth(people, scenes[1], K, W, H, scale=1.0)
        assert (owner == scene.mask.astype(np.int64) - 1).mean() > 0.99  # as the scene's own renderer
        seen = owner >= 0
        assert np.median(np.abs(depth[seen] - scene.depth[seen])) < 2e-3  # (stored vertices are float16)
        alone = [render_owner_depth([h], scenes[1], K, W, H, scale=1.0)[1] for h in people]
        for a in range(len(people)):
            for b in range(a + 1, len(people)):
                both = np.isfinite(alone[a]) & np.isfinite(alone[b])
                if not both.any():
                    continue
                overlaps += int(both.sum())
                nearer = np.where(alone[a][both] < alone[b][both], a, b)
                assert (owner[both] == nearer).mean() > 0.98
    assert overlaps > 0  # the scenes do hold occlusions


def test_depth_encodings_and_bad_input():
    mm = np.array([[0, 1500], [65535, 2]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(mm, "16UC1"), [[np.nan, 1.5], [65.535, 0.002]])
    metres = np.array([[np.inf, 2.0], [-1.0, 0.0]], np.float32)
    np.testing.assert_allclose(depth_to_metres(metres, "32FC1"), [[np.nan, 2.0], [np.nan, np.nan]])
    with pytest.raises(ImageError, match="16UC1"):
        depth_to_metres(mm, "rgb8")
    with pytest.raises(ImageError, match="one channel"):
        depth_to_metres(np.zeros((4, 4, 3)), "32FC1")
    with pytest.raises(ImageError, match="aligned_depth_to_color"):
        fuse_depth([], np.zeros((100, 100), np.float32), np.eye(3), np.zeros((0, 3), int), 640, 480)
    with pytest.raises(ConfigError, match="min_depth_m < max_depth_m"):
        DepthFusionParams(min_depth_m=5.0, max_depth_m=1.0)
    empty = fuse_depth([], np.zeros((48, 64), np.float32), np.eye(3), np.zeros((0, 3), int), 640, 480)
    assert empty == ([], [])


@pytest.mark.slow
def test_fusion_lowers_the_default_models_root_error(tmp_path):
    """The bundled model on synthetic scenes with their true depth: fusion brings people nearer the truth."""
    from lighthmr_ros.depth_fusion import measure_on_scenes
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.synth import generate_scenes, list_scenes

    generate_scenes(tmp_path, 8, seed=2026, config=SynthConfig(width=448, height=448), progress=False)
    figures = measure_on_scenes(list_scenes(tmp_path), Predictor())
    assert figures.people >= 10 and figures.corrected >= figures.people // 2
    assert figures.fused_median_root_error_m < 0.6 * figures.median_root_error_m
    assert figures.fused_depth_error_m < figures.depth_error_m


def test_rendering_at_runtime_does_not_load_the_synthetic_data_package():
    """Depth fusion and the shaded overlay use the neutral lighthmr_ros.raster, not lighthmr_ros.synth."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from lighthmr_ros.depth_fusion import render_owner_depth
        from lighthmr_ros.human import Human
        from lighthmr_ros.overlay import render_overlay

        verts = np.array([[0, 0, 2.0], [0.3, 0, 2.2], [0, 0.3, 2.2], [0, 0, 2.4]], np.float32) - [0.1, 0.1, 0]
        faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        z = np.zeros(3)
        h = Human(id=1, score=1.0, center_2d=z[:2], translation=z, pose=z, shape=z, expression=z,
                  joints=np.zeros((1, 3)), joints_2d=np.zeros((1, 2)), vertices=verts)
        K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
        owner, depth = render_owner_depth([h], faces, K, 64, 64)
        shaded = render_overlay(np.zeros((64, 64, 3), np.uint8), [h], K, faces, labels=False)
        assert (owner == 0).sum() > 20 and np.isfinite(depth).sum() > 20 and shaded.any()
        print(sorted(m for m in sys.modules if m.startswith("lighthmr_ros.synth")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
