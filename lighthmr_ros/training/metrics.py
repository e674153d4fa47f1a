"""Evaluation metrics: per-person 3D errors (mm) and multi-person detection scores.

3D errors follow the usual HMR protocol (SPIN, Multi-HMR, AGORA): both point sets are first centred on
their own root (pelvis, or the hip mid-point for AGORA), MPJPE/PVE are mean Euclidean distances, and the
PA- variants first align the prediction to the ground truth with a similarity transform (scaled
orthogonal Procrustes, Umeyama 1991). All inputs are metres, all outputs millimetres.

Detection scores use the greedy 2-D keypoint matching of ROMP's ``match_2d_greedy`` that Multi-HMR and
AGORA's evaluator both use (facts: shared/notes/datasets.md section 4, sources ROMP
simple_romp/trace2/evaluation/eval_3DPW.py and naver/multi-hmr utils/training.py; this is our own code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "procrustes_align",
    "mpjpe",
    "pa_mpjpe",
    "keypoint_box_iou",
    "match_2d_greedy",
    "DetectionCounts",
    "prf1",
    "MetricAccumulator",
    "summary_from_totals",
    "ERROR_KEYS",
]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Return ``pred`` (N,3) moved by the similarity s·R·x + t that best fits ``gt`` (N,3) in least squares.

    Reflections are excluded (det R = +1), and the scale is free: this is the "PA" of PA-MPJPE.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mu_p, mu_g = pred.mean(0), gt.mean(0)
    x, y = pred - mu_p, gt - mu_g
    var_x = (x**2).sum()
    if var_x <= 0:
        return np.broadcast_to(mu_g, pred.shape).copy()
    u, sig, vt = np.linalg.svd(x.T @ y)  # covariance x^T y = U S V^T; R = V D U^T maps x onto y
    d = np.sign(np.linalg.det(vt.T @ u.T))
    corr = np.diag([1.0, 1.0, d])
    rot = vt.T @ corr @ u.T
    scale = (sig * np.diag(corr)).sum() / var_x
    return scale * x @ rot.T + mu_g


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int | tuple[int, ...] | None = None) -> float:
    """Mean per-point error in mm after centring both sets on ``root`` (index or indices averaged).

    With ``root=None`` the points are compared as given (already centred, or absolute errors wanted).
    Used for joints (MPJPE) and vertices (PVE) alike; pass the joints' root for vertices via ``center_on``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if root is not None:
        idx = [root] if isinstance(root, int) else list(root)
        pred = pred - pred[idx].mean(0)
        gt = gt - gt[idx].mean(0)
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 1000.0)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-point error in mm after scaled Procrustes alignment of ``pred`` to ``gt``."""
    aligned = procrustes_align(pred, gt)
    return float(np.linalg.norm(aligned - np.asarray(gt, dtype=np.float64), axis=-1).mean() * 1000.0)


def keypoint_box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the tight boxes of two keypoint sets (K,2), ROMP's inclusive-pixel areas (x2-x1+1)(y2-y1+1)."""
    ax1, ay1 = a.min(0)
    ax2, ay2 = a.max(0)
    bx1, by1 = b.min(0)
    bx2, by2 = b.max(0)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1) + 1) * max(0.0, min(ay2, by2) - max(ay1, by1) + 1)
    area_a = (ax2 - ax1 + 1) * (ay2 - ay1 + 1)
    area_b = (bx2 - bx1 + 1) * (by2 - by1 + 1)
    return float(inter / (area_a + area_b - inter))


def match_2d_greedy(
    pred_kps: np.ndarray,
    gt_kps: np.ndarray,
    iou_thresh: float = 0.05,
    valid_gt: np.ndarray | None = None,
    joint_mask: np.ndarray | None = None,
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy keypoint matching of predictions to ground truth in one image.

    The rule (ROMP ``match_2d_greedy``, used by Multi-HMR with IoU 0.05 and by AGORA with IoU 0.1 on
    the first 24 joints):

    1. Every (pred, gt) pair gets the error ``np.linalg.norm(P - G, 2)`` over the masked joints. On a
       (K,2) matrix ord=2 is the *spectral* norm (largest singular value); we keep that on purpose so
       the matching is the published one.
    2. While some gt is unassigned and (assigned preds + false-positive counter) < number of preds:
       take the untried pair of lowest error. If neither side is assigned and the IoU of the two
       tight keypoint boxes is >= ``iou_thresh``, it is a match. Otherwise the pair is marked tried,
       and if its IoU is below the threshold the false-positive counter goes up by one (that ends
       this round without a match).
    3. A gt with ``valid_gt`` False (AGORA: occlusion outside 0-90 %) that wins a round is removed
       from play, neither matched nor missed.

    Returns (matches as (pred, gt) pairs, unmatched preds = false positives, unmatched valid gts = misses).
    """
    pred_kps = np.asarray(pred_kps, dtype=np.float64)
    gt_kps = np.asarray(gt_kps, dtype=np.float64)
    n_pred, n_gt = len(pred_kps), len(gt_kps)
    valid = np.ones(n_gt, bool) if valid_gt is None else np.asarray(valid_gt, bool)
    if n_pred == 0 or n_gt == 0:
        return [], list(range(n_pred)), [g for g in range(n_gt) if valid[g]]
    if joint_mask is not None:
        mask = np.asarray(joint_mask, bool)
        pred_kps, gt_kps = pred_kps[:, mask], gt_kps[:, mask]
    pairs = [(p, g) for p in range(n_pred) for g in range(n_gt)]
    errors = np.array([np.linalg.norm(pred_kps[p, :, :2] - gt_kps[g, :, :2], 2) for p, g in pairs])
    pred_done = np.zeros(n_pred, bool)
    gt_done = np.zeros(n_gt, bool)
    matches: list[tuple[int, int]] = []
    fp_counter = 0
    while not gt_done.all() and pred_done.sum() + fp_counter < n_pred:
        if np.isinf(errors).all():
            break  # every pair tried: nothing left to match
        idx = int(np.argmin(errors))
        errors[idx] = np.inf
        p, g = pairs[idx]
        iou = keypoint_box_iou(pred_kps[p, :, :2], gt_kps[g, :, :2])
        if iou < iou_thresh:
            fp_counter += 1
            if not valid[g]:
                gt_done[g] = True  # ROMP drops an invalid gt from play on any round it ends
            continue
        if pred_done[p] or gt_done[g]:
            continue
        gt_done[g] = True
        if valid[g]:
            pred_done[p] = True
            matches.append((p, g))
    matched_p = {p for p, _ in matches}
    matched_g = {g for _, g in matches}
    false_pos = [p for p in range(n_pred) if p not in matched_p]
    misses = [g for g in range(n_gt) if g not in matched_g and valid[g]]
    return matches, false_pos, misses


@dataclass
class DetectionCounts:
    """Counts accumulated over a data set: gt persons, misses (FN) and false positives."""

    count: int = 0
    miss: int = 0
    fp: int = 0

    def add(self, n_valid_gt: int, misses: int, false_pos: int) -> None:
        self.count += n_valid_gt
        self.miss += misses
        self.fp += false_pos


def prf1(counts: DetectionCounts) -> tuple[float, float, float]:
    """Precision, recall, F1 in percent: TP = count - miss, F1 = TP / (TP + (FP + FN)/2).

    Multi-HMR/ROMP round the fractions to 2 decimals before x100; we report the unrounded values
    (rounding is left to the table printer) and return zeros when there is no true positive.
    """
    tp = counts.count - counts.miss
    if counts.count == 0 or tp <= 0:
        return 0.0, 0.0, 0.0
    precision = tp / (tp + counts.fp)
    recall = tp / (tp + counts.miss)
    f1 = tp / (tp + 0.5 * (counts.fp + counts.miss))
    return 100.0 * precision, 100.0 * recall, 100.0 * f1


ERROR_KEYS = ("mpjpe", "pa_mpjpe", "pve", "pa_pve")


@dataclass
class MetricAccumulator:
    """Collects per-person errors (mm) and detection counts; ``summary()`` averages per matched person.

    ``totals()`` is the accumulator as a flat list of sums and counts, so shards evaluated by several
    processes add up (``torch.distributed.all_reduce``) into the same summary (``summary_from_totals``).
    """

    errors: dict[str, list[float]] = field(default_factory=dict)
    detection: DetectionCounts = field(default_factory=DetectionCounts)

    def add_person(self, **values: float) -> None:
        for key, value in values.items():
            self.errors.setdefault(key, []).append(float(value))

    def totals(self) -> list[float]:
        out: list[float] = []
        for key in ERROR_KEYS:
            vals = self.errors.get(key, [])
            out += [float(np.sum(vals)) if vals else 0.0, float(len(vals))]
        return out + [float(self.detection.count), float(self.detection.miss), float(self.detection.fp)]

    def summary(self) -> dict[str, float | int | None]:
        return summary_from_totals(self.totals())


def summary_from_totals(totals: list[float]) -> dict[str, float | int | None]:
    """Per-person means (None where nothing was measured) and detection scores from ``totals()``."""
    out: dict[str, float | int | None] = {}
    for i, key in enumerate(ERROR_KEYS):
        total, n = totals[2 * i], totals[2 * i + 1]
        out[key] = total / n if n else None
    count, miss, fp = (int(round(v)) for v in totals[2 * len(ERROR_KEYS) :])
    precision, recall, f1 = prf1(DetectionCounts(count, miss, fp))
    out.update(
        precision=precision, recall=recall, f1=f1, num_gt=count, num_matched=count - miss, false_positives=fp
    )
    return out
