"""The one overlay module: shaded and point meshes, skeletons, labels; one track colour for all views."""
from __future__ import annotations

import numpy as np
import pytest
from fixtures_ros import make_human

from lighthmr_ros.overlay import render_overlay, track_color

K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
PARENTS = [-1, 0, 1, 2, 3]


def _person(human_id: int = 1):
    h = make_human(translation=(0.0, 0.0, 3.0), human_id=human_id, num_vertices=60)
    h.center_2d = np.array([160.0, 120.0])
    h.joints_2d = np.array([[100.0, 60], [120, 90], [160, 120], [200, 150], [220, 180]])
    return h


def test_points_blend_each_projected_vertex_in_its_track_colour():
    rgb = np.zeros((240, 320, 3), np.uint8)
    h = _person(3)
    out = render_overlay(rgb, [h], K, alpha=0.6, labels=False, mesh="points")
    uv = np.round((h.vertices @ K.T)[:, :2] / h.vertices[:, 2:3]).astype(int)
    expected = (0.6 * np.array(track_color(3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[uv[:, 1], uv[:, 0]], np.broadcast_to(expected, (len(uv), 3)))
    assert out.sum() > 0 and rgb.sum() == 0  # the input is not drawn on


def test_shaded_mesh_covers_pixels_and_skeleton_and_label_draw():
    rgb = np.full((240, 320, 3), 50, np.uint8)
    h = _person()
    faces = np.array([[i, i + 1, i + 2] for i in range(0, 57, 3)])
    bare = render_overlay(rgb, [h], K, faces, labels=False, mesh="none")
    assert (bare == rgb).all()
    shaded = render_overlay(rgb, [h], K, faces, labels=False)
    assert (shaded != rgb).any(axis=2).sum() > 20
    full = render_overlay(rgb, [h], K, faces, PARENTS, mesh="none")
    assert (full != rgb).any(axis=2).sum() > 100  # bones and the "1 0.90" label
    with pytest.raises(ValueError, match="mesh must be one of"):
        render_overlay(rgb, [h], K, mesh="wireframe")


def test_markers_use_the_overlay_colours():
    markers = pytest.importorskip("lighthmr_ros.ros.markers", exc_type=ImportError)
    assert markers.track_color is track_color
    assert len({track_color(i) for i in range(10)}) == 10
