"""The 3D root tracker keeps ids of people walking at normal speed at 10 fps."""
from __future__ import annotations

import numpy as np
from fixtures_ros import make_human

from lighthmr_ros.ros.tracking import Tracker


def walking_sequence(frames=60, fps=10.0, seed=0):
    """Three people at 1.4 m/s: two crossing laterally at different depths, one approaching.

    Yields (stamp, [(person, translation)]) with noisy positions, shuffled order and missed detections.
    """
    rng = np.random.default_rng(seed)
    starts = np.array([[-2.0, 0.0, 3.0], [2.0, 0.0, 4.5], [0.3, 0.0, 7.0]])
    velocity = np.array([[1.4, 0.0, 0.0], [-1.4, 0.0, 0.0], [0.0, 0.0, -1.4]])
    for f in range(frames):
        t = f / fps
        seen = []
        for p in range(3):
            if rng.random() < 0.1:  # the detector misses someone now and then
                continue
            pos = starts[p] + velocity[p] * t
            noise = rng.normal(scale=[0.03, 0.03, 0.12])  # monocular depth is the noisy axis
            seen.append((p, pos + noise))
        rng.shuffle(seen)
        yield t, seen


def test_ids_survive_walking():
    tracker = Tracker(gate_m=0.6, max_age_s=1.0)
    identity: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for t, seen in walking_sequence():
        out = tracker.update([make_human(pos) for _, pos in seen], t)
        for (p, _), human in zip(seen, out, strict=True):
            assert human.id > 0
            identity[p].add(human.id)
        ids = [h.id for h in out]
        assert len(set(ids)) == len(ids)
    assert all(len(ids) == 1 for ids in identity.values()), identity
    assert len(set.union(*identity.values())) == 3


def test_input_is_not_modified_and_order_kept():
    tracker = Tracker()
    humans = [make_human((0, 0, 3)), make_human((1, 0, 3))]
    out = tracker.update(humans, 0.0)
    assert [h.id for h in humans] == [0, 0]
    assert [h.id for h in out] == [1, 2]
    np.testing.assert_array_equal(out[1].translation, humans[1].translation)


def test_expiry_jump_and_time_reset():
    tracker = Tracker(gate_m=0.5, max_age_s=0.5)
    first = tracker.update([make_human((0, 0, 3))], 0.0)[0].id
    assert tracker.update([make_human((0.05, 0, 3))], 0.1)[0].id == first
    # Unseen for longer than max_age: the track is gone, the person gets a new id.
    later = tracker.update([make_human((0.05, 0, 3))], 1.0)[0].id
    assert later != first
    # A jump beyond the gate is somebody else.
    assert tracker.update([make_human((2.0, 0, 3))], 1.1)[0].id not in (first, later)
    # Time going backwards (a bag restarting) clears the tracks.
    tracker.update([make_human((0, 0, 3))], 0.0)
    assert len(tracker.tracks) == 1


def test_nan_translation_gets_no_track():
    tracker = Tracker()
    out = tracker.update([make_human((np.nan, 0, 3)), make_human((0, 0, 3))], 0.0)
    assert out[0].id == 0 and out[1].id > 0
