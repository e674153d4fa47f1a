"""Teacher-student distillation: a frozen Multi-HMR teacher supervises the student alongside the GT.

What the student learns from the teacher (all optional by weight):
  - the detection score map, resampled to the student's token grid (max-pooled when the teacher grid
    is finer, so peaks survive; bilinear otherwise), as a soft binary cross-entropy target;
  - per-person outputs decoded by the teacher at the same persons: rotations, shape, expression,
    log-distance, root-relative 3-D joints and 2-D joints. Persons are the ground-truth ones and,
    with ``teacher_locations``, also the teacher's own detections in cells no GT person holds
    (pseudo-labels for people the annotation misses);
  - optionally token features: student tokens through a learned linear projector (applied once, in
    ``train.TrainModule`` so that DDP sees it) against the teacher's tokens resampled to the student
    grid (cosine distance).
The total is ``gt_weight * L_gt + teacher_weight * L_teacher`` (Multi-HMR's students used 0.7 / 0.3).

The teacher sees the same (augmented) image, resized to its own input size; K scales with it
(u' = s (u + 0.5) - 0.5, the pixel-centre convention of bilinear resizing). Its outputs can be cached
on disk per image (key: hash of the network input, K and GT centres), so a frozen teacher runs once
when the augmentation is deterministic per item (``data.augment_per_epoch: false``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.training.losses import LossWeights, root_relative

log = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    checkpoint: str | None = None  # official Multi-HMR file or a lighthmr checkpoint
    name: str = "multihmr_vits14"  # architecture when no checkpoint is given (random weights: tests)
    image_size: int = 448  # input size of a random-weight teacher (a checkpoint brings its own)
    smplx_model_dir: str | None = None
    gt_weight: float = 0.7
    teacher_weight: float = 0.3
    score_weight: float = 1.0
    features: bool = False
    feature_weight: float = 1.0
    teacher_locations: bool = False
    det_threshold: float = 0.5
    cache_dir: str | None = None
    seed: int = 0


def load_teacher(cfg: TeacherConfig, device: torch.device) -> nn.Module:
    """Frozen teacher in eval mode (checkpoint, or the named architecture with seeded random weights)."""
    if cfg.checkpoint:
        from lighthmr_ros.model.checkpoint import load_checkpoint

        teacher = load_checkpoint(cfg.checkpoint, device="cpu", smplx_model_dir=cfg.smplx_model_dir)
    else:
        from lighthmr_ros.model import create_model

        log.warning("distillation teacher %s has random weights (no teacher.checkpoint given)", cfg.name)
        state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)
        teacher = create_model(cfg.name, smplx_model_dir=cfg.smplx_model_dir, image_size=cfg.image_size)
        torch.random.set_rng_state(state)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def scale_K(K: torch.Tensor, s: float) -> torch.Tensor:
    """K of an image resized by ``s`` (bilinear, align_corners=False: u' = s (u + 0.5) - 0.5)."""
    A = torch.tensor([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]], device=K.device, dtype=K.dtype)
    return A @ K


def resample_scores(scores: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """(B, hs*ws) probabilities on grid ``src`` -> (B, hd*wd) on ``dst``, keeping peaks when downsampling."""
    B = scores.shape[0]
    m = scores.reshape(B, 1, *src)
    if src == dst:
        out = m
    elif src[0] >= dst[0] and src[1] >= dst[1]:
        out = F.adaptive_max_pool2d(m, dst)
    else:
        out = F.interpolate(m, size=dst, mode="bilinear", align_corners=False)
    return out.reshape(B, -1)


def resample_tokens(tokens: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    B, _, D = tokens.shape
    m = tokens.transpose(1, 2).reshape(B, D, *src)
    if src != dst:
        m = F.interpolate(m.float(), size=dst, mode="bilinear", align_corners=False)
    return m.reshape(B, D, -1).transpose(1, 2)


class TeacherCache:
    """One small .pt file per network input under ``root`` (atomic writes, safe loading)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image: torch.Tensor, K: torch.Tensor, centres: torch.Tensor, extra: str) -> str:
        h = hashlib.sha1()
        for t in (image, K, centres):
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        h.update(extra.encode())
        return h.hexdigest()

    def get(self, key: str) -> dict | None:
        path = self.root / key[:2] / f"{key}.pt"
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return torch.load(path, map_location="cpu", weights_only=True)

    def put(self, key: str, value: dict) -> None:
        path = self.root / key[:2] / f"{key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(value, f)
        os.replace(tmp, path)


class Distiller(nn.Module):
    """Holds the frozen teacher (not a submodule: never saved or trained) and the feature projector."""

    PERSON_KEYS = ("rotmat", "shape", "expression", "dist", "joints", "joints_2d")

    def __init__(self, cfg: TeacherConfig, student: nn.Module, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self._teacher = [load_teacher(cfg, device)]  # list: keep it out of state_dict / parameters()
        t_dim = self.teacher.backbone.embed_dim
        s_dim = getattr(student.backbone, "embed_dim", t_dim)
        self.projector = nn.Linear(s_dim, t_dim) if cfg.features else None
        self.cache = TeacherCache(cfg.cache_dir) if cfg.cache_dir else None
        tspec, sspec = self.teacher.body.spec, student.body.spec
        self.pose_map = _name_map(sspec.pose_joint_names, tspec.pose_joint_names)
        self.joint_map = _name_map(sspec.joint_names, tspec.joint_names)
        self.teacher_pelvis = tspec.pelvis_index

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    # ------------------------------------------------------------------ teacher side
    @torch.no_grad()
    def _run_teacher(self, images, K, centres_s, batch_index, student_grid, size_s, extra_cells):
        """Teacher outputs for a batch (no cache)."""
        teacher = self.teacher
        st = teacher.config.image_size  # fixed by the teacher's architecture (its HPH token grid)
        s = st / size_s
        img_t = F.interpolate(images.float(), size=(st, st), mode="bilinear", align_corners=False) if st != size_s else images
        K_t = scale_K(K.float(), s)
        B = images.shape[0]
        # grid first (a dry encode would cost a second pass: compute it from the stride)
        gt_h = gt_w = st // teacher.stride
        c_t = (centres_s + 0.5) * s - 0.5
        col = (c_t[:, 0] / teacher.stride).floor().long().clamp(0, gt_w - 1)
        row = (c_t[:, 1] / teacher.stride).floor().long().clamp(0, gt_h - 1)
        cells = row * gt_w + col
        locs = [cells[batch_index == b] for b in range(B)]
        if extra_cells is not None:  # student-grid cells -> their centres -> teacher cells
            ws = student_grid[1]
            stride_s = size_s / ws
            for b in range(B):
                e = extra_cells[b].to(images.device)
                cx = ((e % ws).float() + 0.5) * stride_s
                cy = ((e // ws).float() + 0.5) * stride_s
                tc = ((cy + 0.5) * s - 0.5) // teacher.stride * gt_w + ((cx + 0.5) * s - 0.5) // teacher.stride
                locs[b] = torch.cat([locs[b], tc.long().clamp(0, gt_h * gt_w - 1)])
        out = teacher.forward_train(img_t, K_t, locs)
        grid_t = tuple(out["grid"])
        probs = out["score_logits"].float().sigmoid()
        result = {"scores": resample_scores(probs, grid_t, student_grid)}
        for key in self.PERSON_KEYS:
            result[key] = out[key].float()
        result["joints_2d"] = (result["joints_2d"] + 0.5) / s - 0.5  # back to student pixels
        result["counts"] = torch.tensor([len(l) for l in locs])
        if self.cfg.features:
            result["tokens"] = resample_tokens(out["tokens"].float(), grid_t, student_grid).half()
        return result

    @torch.no_grad()
    def teacher_peaks(self, images, K, size_s, student_grid, taken: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher detections as student-grid cells not already taken by GT persons."""
        teacher = self.teacher
        B = images.shape[0]
        tag = f"peaks:{self.cfg.checkpoint or self.cfg.name}:{self.cfg.det_threshold}:{student_grid}"
        keys = [TeacherCache.key(images[b], K[b], torch.zeros(0), tag) for b in range(B)] if self.cache else [None] * B
        found = [self.cache.get(k) if k else None for k in keys]
        todo = [b for b in range(B) if found[b] is None]
        if todo:
            st = teacher.config.image_size  # fixed by the teacher's architecture (its HPH token grid)
            s = st / size_s
            sub = images[todo]
            img_t = F.interpolate(sub.float(), size=(st, st), mode="bilinear", align_corners=False) if st != size_s else sub
            det = teacher(img_t, scale_K(K[todo].float(), s), det_threshold=self.cfg.det_threshold, with_vertices=False)
            hs, ws = student_grid
            stride = size_s / ws
            for i, b in enumerate(todo):
                loc = (det.loc[det.batch_index == i] + 0.5) / s - 0.5
                col = (loc[:, 0] / stride).floor().long().clamp(0, ws - 1)
                row = (loc[:, 1] / stride).floor().long().clamp(0, hs - 1)
                found[b] = {"cells": torch.unique(row * ws + col).cpu()}
                if self.cache:
                    self.cache.put(keys[b], found[b])
        out = []
        for b in range(B):
            cells = found[b]["cells"]
            out.append(cells[~torch.isin(cells, taken[b].cpu())])
        return out

    def teacher_outputs(self, images, K, centres, batch_index, student_grid, size_s, extra_cells=None) -> dict:
        """Teacher outputs for the batch, through the cache when configured (per image)."""
        if self.cache is None:
            return self._run_teacher(images, K, centres, batch_index, student_grid, size_s, extra_cells)
        B = images.shape[0]
        tag = f"{self.cfg.checkpoint or self.cfg.name}:{self.teacher.config.image_size}:{student_grid}:{self.cfg.features}"
        keys = [TeacherCache.key(images[b], K[b], centres[batch_index == b], tag + (
            f":{extra_cells[b].tolist()}" if extra_cells is not None else "")) for b in range(B)]
        per_image = [self.cache.get(k) for k in keys]
        missing = [b for b in range(B) if per_image[b] is None]
        if missing:
            sub = torch.tensor(missing, device=images.device)
            mask = torch.isin(batch_index, sub)
            remap = torch.full((B,), -1, dtype=torch.long, device=batch_index.device)
            remap[sub] = torch.arange(len(missing), device=batch_index.device)
            fresh = self._run_teacher(images[sub], K[sub], centres[mask], remap[batch_index[mask]], student_grid, size_s,
                                      [extra_cells[b] for b in missing] if extra_cells is not None else None)
            starts = torch.cumsum(fresh["counts"], 0) - fresh["counts"]
            for i, b in enumerate(missing):
                lo, hi = int(starts[i]), int(starts[i] + fresh["counts"][i])
                item = {k: fresh[k][lo:hi].cpu() for k in self.PERSON_KEYS}
                item["scores"] = fresh["scores"][i].cpu()
                if "tokens" in fresh:
                    item["tokens"] = fresh["tokens"][i].cpu()
                self.cache.put(keys[b], item)
                per_image[b] = item
        dev = images.device
        result = {k: torch.cat([p[k] for p in per_image]).to(dev) for k in self.PERSON_KEYS}
        result["scores"] = torch.stack([p["scores"] for p in per_image]).to(dev)
        if self.cfg.features:
            result["tokens"] = torch.stack([p["tokens"] for p in per_image]).to(dev)
        return result

    # ------------------------------------------------------------------ losses
    def losses(self, out: dict, t: dict, pelvis: int, size: int, w: LossWeights) -> dict[str, torch.Tensor]:
        """Distillation terms (unweighted by gt/teacher split); names prefixed 'kd_'."""
        losses = {}
        if self.cfg.score_weight:
            losses["kd_score"] = self.cfg.score_weight * F.binary_cross_entropy_with_logits(
                out["score_logits"].float(), t["scores"].float())
        if out["rotmat"].shape[0]:
            sm, tm = self.pose_map
            if sm and w.rotation:
                losses["kd_rotation"] = w.rotation * (out["rotmat"][:, sm].float() - t["rotmat"][:, tm]).abs().sum((-1, -2)).mean()
            if w.shape:
                s = min(out["shape"].shape[1], t["shape"].shape[1])
                losses["kd_shape"] = w.shape * (out["shape"][:, :s] - t["shape"][:, :s]).abs().mean()
            if w.expression:
                e = min(out["expression"].shape[1], t["expression"].shape[1])
                losses["kd_expression"] = w.expression * (out["expression"][:, :e] - t["expression"][:, :e]).abs().mean()
            if w.distance:
                losses["kd_distance"] = w.distance * (out["dist"].float().clamp(min=1e-3).log()
                                                      - t["dist"].clamp(min=1e-3).log()).abs().mean()
            jm, jt = self.joint_map
            if jm and w.joints_3d:
                pj = root_relative(out["joints"][:, jm].float(), out["joints"][:, pelvis].float())
                tj = root_relative(t["joints"][:, jt], t["joints"][:, self.teacher_pelvis])
                losses["kd_joints_3d"] = w.joints_3d * (pj - tj).abs().sum(-1).mean()
            if jm and w.joints_2d:
                err = ((out["joints_2d"][:, jm].float() - t["joints_2d"][:, jt]) / size).abs().sum(-1).clamp(max=1.0)
                losses["kd_joints_2d"] = w.joints_2d * err.mean()
        if self.projector is not None and "tokens" in t:
            losses["kd_features"] = self.cfg.feature_weight * feature_loss(out["tokens"], t["tokens"])
        return losses


def feature_loss(projected: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between student tokens ALREADY projected to the teacher's width and the
    teacher's tokens. The projection happens once, in ``TrainModule.forward`` (so DDP sees the projector
    used); a width mismatch here means someone projected twice or not at all."""
    if projected.shape[-1] != teacher_tokens.shape[-1]:
        raise ConfigError(f"student tokens are {projected.shape[-1]} wide but the teacher's are "
                          f"{teacher_tokens.shape[-1]}: the feature projector must run exactly once (TrainModule)")
    cos = F.cosine_similarity(projected.float(), teacher_tokens.float(), dim=-1)
    return (1 - cos).mean()


def _name_map(student_names, teacher_names) -> tuple[list[int], list[int]]:
    pos = {n: i for i, n in enumerate(teacher_names or ())}
    pairs = [(i, pos[n]) for i, n in enumerate(student_names or ()) if n in pos]
    return [a for a, _ in pairs], [b for _, b in pairs]


__all__ = ["TeacherConfig", "Distiller", "TeacherCache", "feature_loss", "load_teacher", "resample_scores", "resample_tokens", "scale_K"]
