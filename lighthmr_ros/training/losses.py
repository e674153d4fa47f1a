"""Training losses of the single-shot model.

Detection is dense over the token grid: a CenterNet-style penalty-reduced focal loss on the score
logits against Gaussian bumps at the persons' cells, and an L1 on the sub-cell offset of those cells.
Everything else is per person, at the ground-truth cells (``forward_train`` decodes one query per
given location): rotations, shape, expression, log-distance of the primary keypoint, root-relative
3-D joints and vertices, and the 2-D reprojection of the joints (in units of the image size).
Each term is masked by what the data set supervises and averaged over supervised persons only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lighthmr_ros.training.targets import SMPLX_JOINT_NAMES


@dataclass
class LossWeights:
    """Relative weights (0 disables a term)."""

    detection: float = 1.0
    offset: float = 1.0
    rotation: float = 1.0
    shape: float = 0.5
    expression: float = 0.1
    distance: float = 1.0
    joints_3d: float = 5.0
    vertices: float = 2.0
    joints_2d: float = 5.0
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    heatmap_sigma: float = 0.75  # Gaussian radius in token cells around each person's cell


def gaussian_heatmap(
    cells: torch.Tensor, batch_index: torch.Tensor, batch_size: int, grid: tuple[int, int], sigma: float
) -> torch.Tensor:
    """(B, h*w) targets: max over persons of exp(-d^2 / 2 sigma^2), exactly 1 at each person's cell."""
    h, w = grid
    ys = torch.arange(h, device=cells.device, dtype=torch.float32).repeat_interleave(w)
    xs = torch.arange(w, device=cells.device, dtype=torch.float32).repeat(h)
    target = torch.zeros(batch_size, h * w, device=cells.device)
    if cells.numel() == 0:
        return target
    row, col = (cells // w).float(), (cells % w).float()
    d2 = (ys[None] - row[:, None]) ** 2 + (xs[None] - col[:, None]) ** 2  # (P, N)
    bumps = torch.exp(-d2 / (2 * sigma**2)) if sigma > 0 else (d2 == 0).float()
    target.scatter_reduce_(0, batch_index[:, None].expand_as(bumps), bumps, reduce="amax", include_self=True)
    return target


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 4.0,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """CenterNet focal loss (Law & Deng 2018; Zhou et al. 2019), normalised by the number of peaks.

    ``target`` is 1 at peaks and a soft Gaussian around them; negatives near a peak are down-weighted
    by (1 - target)^beta. Works with soft teacher targets as well (peaks = cells at 1). Cells where
    ``ignore`` holds count neither way (AGORA's people with isValid False).
    """
    logits = logits.float()
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    p = log_p.exp()
    pos = (target >= 1.0 - 1e-6).float()
    pos_loss = -((1 - p) ** alpha) * log_p * pos
    neg_loss = -((1 - target).clamp(min=0) ** beta) * (p**alpha) * log_1mp * (1 - pos)
    if ignore is not None:
        neg_loss = neg_loss * (~ignore.to(neg_loss.device)).float()
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def joint_index_map(
    model_joint_names: tuple[str, ...], count: int = len(SMPLX_JOINT_NAMES)
) -> tuple[list[int], list[int]]:
    """(model indices, SMPL-X indices) of joints present in both, matched by name (first ``count`` SMPL-X)."""
    pos = {n: i for i, n in enumerate(model_joint_names)}
    model_idx, smplx_idx = [], []
    for j, name in enumerate(SMPLX_JOINT_NAMES[:count]):
        if name in pos:
            model_idx.append(pos[name])
            smplx_idx.append(j)
    return model_idx, smplx_idx


def pose_index_map(pose_joint_names: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """(model pose indices, SMPL-X pose rows) for rotations; 'global_orient' is SMPL-X row 0 (pelvis)."""
    pos = {("pelvis" if n == "global_orient" else n): i for i, n in enumerate(pose_joint_names)}
    model_idx, smplx_idx = [], []
    for j, name in enumerate(SMPLX_JOINT_NAMES):
        if name in pos:
            model_idx.append(pos[name])
            smplx_idx.append(j)
    return model_idx, smplx_idx


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (P, ...) over rows where ``mask`` (P, ...) holds; 0 when nothing is supervised."""
    mask = mask.to(values.dtype)
    while mask.dim() < values.dim():
        mask = mask.unsqueeze(-1)
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def root_relative(points: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    return points - root[:, None]


@dataclass
class PersonTargets:
    """Per-person targets aligned with the model's outputs (rows = kept persons, model joint order)."""

    rotmat: torch.Tensor | None  # (P, J, 3, 3) model pose order
    rot_mask: torch.Tensor | None  # (P, J)
    shape: torch.Tensor | None  # (P, S)
    shape_mask: torch.Tensor | None  # (P,)
    expression: torch.Tensor | None  # (P, E)
    expression_mask: torch.Tensor | None
    joints: torch.Tensor  # (P, K, 3) camera frame, model joint order (only masked rows meaningful)
    joints_mask: torch.Tensor  # (P, K)
    joints_2d: torch.Tensor  # (P, K, 2) network pixels
    joints_2d_mask: torch.Tensor  # (P, K)
    vertices: torch.Tensor | None  # (P, V, 3) camera frame
    vertices_mask: torch.Tensor | None  # (P,)
    dist: torch.Tensor  # (P,) depth of the primary keypoint
    dist_mask: torch.Tensor  # (P,)


def person_losses(
    out: dict, tgt: PersonTargets, pelvis: int, head: int, image_size: int, w: LossWeights
) -> dict[str, torch.Tensor]:
    """Per-person loss terms (unweighted), each a scalar."""
    dev = out["joints"].device
    zero = torch.zeros((), device=dev)
    losses: dict[str, torch.Tensor] = {}
    if w.rotation and tgt.rotmat is not None:
        diff = (out["rotmat"].float() - tgt.rotmat).abs().sum((-1, -2))  # (P, J)
        losses["rotation"] = masked_mean(diff, tgt.rot_mask)
    if w.shape and tgt.shape is not None:
        s = min(out["shape"].shape[1], tgt.shape.shape[1])
        losses["shape"] = masked_mean((out["shape"][:, :s] - tgt.shape[:, :s]).abs(), tgt.shape_mask)
    if w.expression and tgt.expression is not None:
        e = min(out["expression"].shape[1], tgt.expression.shape[1])
        losses["expression"] = masked_mean(
            (out["expression"][:, :e] - tgt.expression[:, :e]).abs(), tgt.expression_mask
        )
    if w.distance:
        log_err = (out["dist"].float().clamp(min=1e-3).log() - tgt.dist.clamp(min=1e-3).log()).abs()
        losses["distance"] = masked_mean(log_err, tgt.dist_mask)
    if w.joints_3d:
        pj = root_relative(out["joints"].float(), out["joints"][:, pelvis].float())
        gj = root_relative(tgt.joints, tgt.joints[:, pelvis])
        root_ok = tgt.joints_mask[:, pelvis : pelvis + 1]
        losses["joints_3d"] = masked_mean((pj - gj).abs().sum(-1), tgt.joints_mask & root_ok)
    if w.vertices and tgt.vertices is not None:
        pv = root_relative(out["vertices"].float(), out["joints"][:, pelvis].float())
        gv = root_relative(tgt.vertices, tgt.joints[:, pelvis])
        ok = tgt.vertices_mask & tgt.joints_mask[:, pelvis]
        losses["vertices"] = masked_mean((pv - gv).abs().sum(-1), ok)
    if w.joints_2d:
        err = ((out["joints_2d"].float() - tgt.joints_2d) / image_size).abs().sum(-1)
        err = err.clamp(max=1.0)  # a joint far off (e.g. behind the camera early on) must not explode
        losses["joints_2d"] = masked_mean(err, tgt.joints_2d_mask)
    return {k: (v if torch.isfinite(v) else zero) for k, v in losses.items()}


def detection_losses(
    out: dict,
    cells: torch.Tensor,
    batch_index: torch.Tensor,
    offset_target: torch.Tensor,
    w: LossWeights,
    ignore: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Focal loss on the dense score logits and L1 on the offsets of the persons' cells."""
    logits = out["score_logits"]
    target = gaussian_heatmap(cells, batch_index, logits.shape[0], out["grid"], w.heatmap_sigma)
    losses = {"detection": focal_loss(logits, target, w.focal_alpha, w.focal_beta, ignore)}
    if cells.numel():
        pred = out["offsets"][batch_index, cells].float()
        losses["offset"] = (pred - offset_target).abs().sum(-1).mean()
    else:
        losses["offset"] = out["offsets"].sum() * 0.0
    return losses


def weighted_total(losses: dict[str, torch.Tensor], w: LossWeights, scale: float = 1.0) -> torch.Tensor:
    total = None
    for key, value in losses.items():
        term = getattr(w, key, 0.0) * value
        total = term if total is None else total + term
    return (total if total is not None else torch.zeros(())) * scale
