"""Track ids across frames by 3D root position (constant-velocity prediction, gated assignment).

Monocular depth is noisier than the lateral position, so the depth (z) difference counts half
in the association distance. Ids start at 1 (0 means "not tracked" in HumanMesh).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from lighthmr_ros.human import Human

DEPTH_WEIGHT = 0.5
VELOCITY_SMOOTHING = 0.5  # weight of the newest velocity measurement
MAX_SPEED_M_S = 4.0  # clamp so one bad depth estimate does not fling a track away


@dataclass
class Track:
    id: int
    position: np.ndarray
    velocity: np.ndarray
    stamp_s: float
    hits: int = 1

    def predict(self, stamp_s: float) -> np.ndarray:
        return self.position + self.velocity * max(0.0, stamp_s - self.stamp_s)


class Tracker:
    """Assigns stable ids to Human records.

    gate_m: the largest distance (metres, depth weighted by DEPTH_WEIGHT) between a predicted
    track position and a detection that can still be the same person.
    max_age_s: how long a track survives unseen (occlusion, missed detections).
    """

    def __init__(self, gate_m: float = 0.6, max_age_s: float = 1.0):
        self.gate_m = float(gate_m)
        self.max_age_s = float(max_age_s)
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_stamp: float | None = None

    def reset(self) -> None:
        self.tracks.clear()
        self._last_stamp = None

    def update(self, humans: Sequence[Human], stamp_s: float) -> list[Human]:
        """Return copies of ``humans`` with their track ids; advances the tracker to ``stamp_s``."""
        stamp_s = float(stamp_s)
        if self._last_stamp is not None and stamp_s < self._last_stamp - 1e-6:
            self.reset()  # time went backwards: a bag restarted or sim time was reset
        self._last_stamp = stamp_s
        self.tracks = [t for t in self.tracks if stamp_s - t.stamp_s <= self.max_age_s]
        positions = np.array([np.asarray(h.translation, dtype=np.float64).reshape(3) for h in humans]).reshape(-1, 3)
        ids = [0] * len(humans)
        matched_tracks: set[int] = set()
        if len(self.tracks) and len(humans):
            predicted = np.stack([t.predict(stamp_s) for t in self.tracks])
            diff = predicted[:, None, :] - positions[None, :, :]
            diff[..., 2] *= DEPTH_WEIGHT
            cost = np.linalg.norm(diff, axis=-1)
            cost = np.where(np.isfinite(cost), cost, 1e9)
            rows, cols = linear_sum_assignment(np.where(cost <= self.gate_m, cost, 1e9))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[r, c] > self.gate_m:
                    continue
                self._correct(self.tracks[r], positions[c], stamp_s)
                ids[c] = self.tracks[r].id
                matched_tracks.add(r)
        for c in range(len(humans)):
            if ids[c] == 0 and np.all(np.isfinite(positions[c])):
                track = Track(self._next_id, positions[c].copy(), np.zeros(3), stamp_s)
                self._next_id += 1
                self.tracks.append(track)
                ids[c] = track.id
        return [dataclasses.replace(h, id=i) for h, i in zip(humans, ids, strict=True)]

    @staticmethod
    def _correct(track: Track, position: np.ndarray, stamp_s: float) -> None:
        dt = stamp_s - track.stamp_s
        if dt > 1e-6:
            velocity = (position - track.position) / dt
            speed = float(np.linalg.norm(velocity))
            if speed > MAX_SPEED_M_S:
                velocity *= MAX_SPEED_M_S / speed
            a = VELOCITY_SMOOTHING if track.hits > 1 else 1.0
            track.velocity = a * velocity + (1.0 - a) * track.velocity
        track.position = position.copy()
        track.stamp_s = stamp_s
        track.hits += 1
