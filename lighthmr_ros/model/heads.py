"""Per-token detection heads and the peak picking on the score map.

The detector is dense: every token scores "a person's primary keypoint lies in my cell" and
regresses a sub-cell 2D offset. Peaks are the cells equal to the max of their neighbourhood
(CenterNet-style max-pool NMS) with a score over the threshold. On a coarse grid a 3x3 window
also removes real people whose keypoints fall in neighbouring cells; ``suppress_close_centres``
instead drops a detection only when its refined (cell + offset) keypoint lies close to a better
one, which is what a duplicate of the same person looks like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def regression_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear/ReLU stack; module indices 0, 2, ... match upstream ``mlp_classif``/``mlp_offset`` keys."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def score_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid clamped to [1e-4, 1 - 1e-4], as the upstream detector does."""
    return logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)


def nms(score_map: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """(B, h, w) -> same map with every non-maximum cell zeroed (kernel <= 1: unchanged)."""
    if kernel <= 1:
        return score_map
    pad = kernel // 2  # even kernels: the pooled map is one larger, cropped below
    hmax = F.max_pool2d(score_map[:, None], kernel, stride=1, padding=pad)[:, 0]
    hmax = hmax[:, : score_map.shape[1], : score_map.shape[2]]
    return score_map * (hmax == score_map)


def pick_peaks(score_nms: torch.Tensor, threshold: float, max_humans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks over ``threshold``, at most ``max_humans`` best per image, in raster order.

    Returns (batch_index (P,), token_index (P,)); raster order (image, row, col) is the
    upstream person order. No Python loop over images or persons.
    """
    flat = score_nms.flatten(1)  # (B, N)
    keep = flat >= threshold
    if max_humans > 0 and max_humans < flat.shape[1]:
        masked = torch.where(keep, flat, torch.full_like(flat, -1.0))
        top = masked.topk(max_humans, dim=1).indices
        limited = torch.zeros_like(keep)
        limited.scatter_(1, top, True)
        keep = keep & limited
    b, n = keep.nonzero(as_tuple=True)
    return b, n


def suppress_close_centres(
    batch_index: torch.Tensor, loc: torch.Tensor, score: torch.Tensor, radius: float
) -> torch.Tensor:
    """(P,) keep mask: False where a better detection of the same image lies within ``radius`` pixels.

    Like max-pool NMS, a suppressed detection may still suppress others (one vectorised pass, no
    greedy loop); ties go to the earlier detection in raster order.
    """
    P = batch_index.shape[0]
    if P < 2 or radius <= 0:
        return torch.ones(P, dtype=torch.bool, device=batch_index.device)
    order = torch.arange(P, device=batch_index.device)
    better = (score[:, None] > score[None]) | ((score[:, None] == score[None]) & (order[:, None] < order[None]))
    close = torch.cdist(loc.float(), loc.float()) < radius
    same = batch_index[:, None] == batch_index[None]
    return ~(better & close & same).any(dim=0)
