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

Teacher cost, designed for a real run:
  - the teacher sees the same (augmented) view at ITS OWN input size, warped by the data pipeline from
    the original pixels (``prepare_sample(teacher_size=...)``), never the student's image upsampled;
    K is that view's K;
  - ONE teacher pass per step: one encoder pass gives the score map, the teacher's own peaks (pseudo-label
    cells) and the tokens; its decoder then runs at the GT and peak cells from those same tokens;
  - under autocast in the precision rule of ``lighthmr_ros.device`` (fp16 on CUDA, bf16 on CPUs with
    native bf16, else fp32; ``teacher.precision``);
  - an optional disk cache (``cache_dir``) whose size is known before the run: one entry per training
    image, ``entry_bytes`` each (mostly the fp16 tokens on the student grid). It is refused with per-epoch
    augmentation (no entry would ever hit again and the cache would grow by a data set per epoch) and
    when the estimate exceeds ``cache_max_gb``.
"""

from __future__ import annotations

import contextlib
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
    # architecture: checked against the checkpoint's; without a checkpoint, built with random weights
    # (tests, ``lighthmr rehearse``). None: the checkpoint's own (or multihmr_vits14 without one).
    name: str | None = None
    image_size: int = 448  # input size of a random-weight teacher (a checkpoint brings its own)
    smplx_model_dir: str | None = None
    gt_weight: float = 0.7
    teacher_weight: float = 0.3
    score_weight: float = 1.0
    features: bool = False
    feature_weight: float = 1.0
    teacher_locations: bool = False
    det_threshold: float = 0.5
    max_people: int = 20  # teacher peaks per image at most
    precision: str = "auto"  # the teacher's autocast: auto (device rule) | fp32 | fp16 | bf16
    cache_dir: str | None = None
    cache_max_gb: float = 500.0  # refuse a cache whose estimated size is larger
    seed: int = 0


def load_teacher(cfg: TeacherConfig, device: torch.device) -> nn.Module:
    """Frozen teacher in eval mode (checkpoint, or the named architecture with seeded random weights)."""
    if cfg.checkpoint:
        from lighthmr_ros.model.checkpoint import load_checkpoint
        from lighthmr_ros.model.config import get_config

        teacher = load_checkpoint(cfg.checkpoint, device="cpu", smplx_model_dir=cfg.smplx_model_dir)
        if cfg.name and get_config(cfg.name).encoder != teacher.config.encoder:
            raise ConfigError(
                f"teacher.checkpoint {cfg.checkpoint} holds a {teacher.config.encoder} encoder but "
                f"teacher.name is {cfg.name} ({get_config(cfg.name).encoder}); fix one of them"
            )
    else:
        from lighthmr_ros.model import create_model

        name = cfg.name or "multihmr_vits14"
        log.warning("distillation teacher %s has random weights (no teacher.checkpoint given)", name)
        state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)
        teacher = create_model(name, smplx_model_dir=cfg.smplx_model_dir, image_size=cfg.image_size)
        torch.random.set_rng_state(state)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def scale_K(K: torch.Tensor, s: float) -> torch.Tensor:
    """K of an image resized by ``s`` (bilinear, align_corners=False: u' = s (u + 0.5) - 0.5)."""
    A = torch.tensor(
        [[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]], device=K.device, dtype=K.dtype
    )
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
    """One small .pt file per teacher input under ``root`` (atomic writes, safe loading)."""

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


def entry_bytes(
    student_grid: tuple[int, int],
    teacher_dim: int,
    features: bool,
    people: int = 4,
    num_pose: int = 53,
    num_joints: int = 127,
) -> int:
    """Bytes of one cache entry: fp16 tokens on the student grid (when features are on), the score map,
    and about ``people`` persons' outputs (rotations, joints, 2-D joints; fp32)."""
    cells = student_grid[0] * student_grid[1]
    person = 4 * (num_pose * 9 + num_joints * 5 + 32)
    return (2 * cells * teacher_dim if features else 0) + 4 * cells + people * person + 1024


class Distiller(nn.Module):
    """Holds the frozen teacher (not a submodule: never saved or trained) and the feature projector."""

    PERSON_KEYS = ("rotmat", "shape", "expression", "dist", "joints", "joints_2d")

    def __init__(self, cfg: TeacherConfig, student: nn.Module, device: torch.device):
        super().__init__()
        from lighthmr_ros.device import resolve_precision

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
        choice = resolve_precision(cfg.precision, device)
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(choice.name)
        log.info(
            "distillation teacher %s at %d px: %s", cfg.checkpoint or cfg.name, self.image_size, choice.reason
        )

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @property
    def image_size(self) -> int:
        """The teacher's input size (fixed by its architecture: its HPH token grid)."""
        return self.teacher.config.image_size

    def check_cache(self, num_images: int, student_grid: tuple[int, int], augment_per_epoch: bool) -> int:
        """The cache's size in bytes, stated before the run; refuses one that can never hit or is too big."""
        if self.cache is None:
            return 0
        if augment_per_epoch:
            raise ConfigError(
                "teacher.cache_dir with data.augment_per_epoch: true would never hit (every epoch "
                "augments anew) and grow by a whole data set per epoch; set data.augment_per_epoch: "
                "false or drop teacher.cache_dir"
            )
        size = num_images * entry_bytes(student_grid, self.teacher.backbone.embed_dim, self.cfg.features)
        if size > self.cfg.cache_max_gb * 1e9:
            raise ConfigError(
                f"the teacher cache would hold {num_images} entries of about "
                f"{size / num_images / 1e6:.2f} MB = {size / 1e9:.1f} GB, over teacher.cache_max_gb "
                f"({self.cfg.cache_max_gb:g}); raise it, turn teacher.features off or drop the cache"
            )
        log.info(
            "teacher cache %s: %d entries x %.2f MB = %.2f GB at most",
            self.cache.root,
            num_images,
            size / num_images / 1e6,
            size / 1e9,
        )
        return size

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ teacher side
    @torch.no_grad()
    def _run_teacher(self, images_t, K_t, centres_s, batch_index, student_grid, size_s, taken) -> list[dict]:
        """One teacher pass over a batch of teacher views: per image, the outputs at its GT persons
        followed by its own extra detections (student cells no GT person holds)."""
        teacher = self.teacher
        st = images_t.shape[-1]
        s = st / size_s
        B = images_t.shape[0]
        hs, ws = student_grid
        stride_s = size_s / ws
        with self._autocast(images_t.device):
            tokens, grid_t = teacher.encode(images_t)
            logits = teacher.mlp_classif(tokens)[..., 0].float()
        gh, gw = grid_t
        c_t = (centres_s + 0.5) * s - 0.5  # student pixels -> teacher pixels (same view, resized)
        col = (c_t[:, 0] / teacher.stride).floor().long().clamp(0, gw - 1)
        row = (c_t[:, 1] / teacher.stride).floor().long().clamp(0, gh - 1)
        gt_cells = row * gw + col
        locs = [gt_cells[batch_index == b] for b in range(B)]
        extras = [torch.zeros(0, dtype=torch.long) for _ in range(B)]
        if self.cfg.teacher_locations:
            score_map = logits.sigmoid().clamp(1e-4, 1 - 1e-4).reshape(B, gh, gw)
            with self._autocast(images_t.device):
                pb, pn, off = teacher.find_people(
                    tokens, score_map, self.cfg.det_threshold, None, self.cfg.max_people
                )
            off = off.float()
            loc = (
                torch.stack([pn % gw, pn // gw], -1).float() + 0.5 + off
            ) * teacher.stride  # teacher pixels
            u = (loc + 0.5) / s - 0.5  # student pixels
            cell_s = (u[:, 1] / stride_s).floor().long().clamp(0, hs - 1) * ws + (
                u[:, 0] / stride_s
            ).floor().long().clamp(0, ws - 1)
            for b in range(B):
                mine = (pb == b).nonzero().flatten()
                seen = set(taken[b].tolist())
                keep_t, keep_s = [], []
                for i in mine.tolist():
                    c = int(cell_s[i])
                    if c not in seen:
                        seen.add(c)
                        keep_s.append(c)
                        keep_t.append(int(pn[i]))
                extras[b] = torch.tensor(keep_s, dtype=torch.long)
                locs[b] = torch.cat([locs[b], torch.tensor(keep_t, dtype=torch.long, device=locs[b].device)])
        with self._autocast(images_t.device):
            out = teacher.forward_train(images_t, K_t, locs, encoded=(tokens, grid_t))
        scores = resample_scores(logits.sigmoid(), grid_t, student_grid)
        feats = resample_tokens(tokens.float(), grid_t, student_grid).half() if self.cfg.features else None
        counts = [len(loc) for loc in locs]
        starts = [sum(counts[:b]) for b in range(B)]
        entries = []
        for b in range(B):
            rows = slice(starts[b], starts[b] + counts[b])
            entry = {k: out[k][rows].float() for k in self.PERSON_KEYS}
            entry["joints_2d"] = (entry["joints_2d"] + 0.5) / s - 0.5  # back to student pixels
            entry["scores"] = scores[b]
            entry["extra_cells"] = extras[b]
            if feats is not None:
                entry["tokens"] = feats[b]
            entries.append(entry)
        return entries

    def teach(
        self,
        batch: dict,
        centres: torch.Tensor,
        batch_index: torch.Tensor,
        student_grid: tuple[int, int],
        size_s: int,
        taken: list[torch.Tensor],
    ) -> tuple[dict, list[torch.Tensor]]:
        """Teacher targets for a collated batch and the extra student cells to decode (its pseudo-labels).

        ``centres`` / ``batch_index``: the GT persons the student decodes (student pixels), ``taken``:
        their student cells per image. Through the cache when configured (per image)."""
        if "teacher_images" not in batch:
            raise ConfigError(
                "the batch has no teacher view: build the data set with the teacher's size "
                "(TrainingDataset(teacher_size=...)) so the teacher sees the original pixels"
            )
        dev = centres.device
        images_t, K_t = batch["teacher_images"].to(dev), batch["teacher_K"].to(dev)
        B = images_t.shape[0]
        arch = self.cfg.checkpoint or self.cfg.name or "multihmr_vits14"
        tag = (
            f"{arch}:{self.image_size}:{student_grid}:{self.cfg.features}:"
            f"{self.cfg.teacher_locations}:{self.cfg.det_threshold}"
        )
        keys = [
            TeacherCache.key(images_t[b], K_t[b], centres[batch_index == b], tag) if self.cache else None
            for b in range(B)
        ]
        per_image = [self.cache.get(k) if k else None for k in keys]
        missing = [b for b in range(B) if per_image[b] is None]
        if missing:
            sub = torch.tensor(missing, device=dev)
            mask = torch.isin(batch_index, sub)
            remap = torch.full((B,), -1, dtype=torch.long, device=dev)
            remap[sub] = torch.arange(len(missing), device=dev)
            fresh = self._run_teacher(
                images_t[sub],
                K_t[sub],
                centres[mask],
                remap[batch_index[mask]],
                student_grid,
                size_s,
                [taken[b] for b in missing],
            )
            for b, entry in zip(missing, fresh, strict=False):
                per_image[b] = entry
                if self.cache is not None:
                    self.cache.put(keys[b], {k: v.cpu() for k, v in entry.items()})
        result = {k: torch.cat([p[k].to(dev) for p in per_image]) for k in self.PERSON_KEYS}
        result["scores"] = torch.stack([p["scores"].to(dev) for p in per_image])
        if self.cfg.features:
            result["tokens"] = torch.stack([p["tokens"].to(dev) for p in per_image])
        return result, [p["extra_cells"].cpu() for p in per_image]

    # ------------------------------------------------------------------ losses
    def losses(self, out: dict, t: dict, pelvis: int, size: int, w: LossWeights) -> dict[str, torch.Tensor]:
        """Distillation terms (unweighted by gt/teacher split); names prefixed 'kd_'."""
        losses = {}
        if self.cfg.score_weight:
            losses["kd_score"] = self.cfg.score_weight * F.binary_cross_entropy_with_logits(
                out["score_logits"].float(), t["scores"].float()
            )
        if out["rotmat"].shape[0]:
            sm, tm = self.pose_map
            if sm and w.rotation:
                losses["kd_rotation"] = (
                    w.rotation
                    * (out["rotmat"][:, sm].float() - t["rotmat"][:, tm]).abs().sum((-1, -2)).mean()
                )
            if w.shape:
                s = min(out["shape"].shape[1], t["shape"].shape[1])
                losses["kd_shape"] = w.shape * (out["shape"][:, :s] - t["shape"][:, :s]).abs().mean()
            if w.expression:
                e = min(out["expression"].shape[1], t["expression"].shape[1])
                losses["kd_expression"] = (
                    w.expression * (out["expression"][:, :e] - t["expression"][:, :e]).abs().mean()
                )
            if w.distance:
                losses["kd_distance"] = (
                    w.distance
                    * (out["dist"].float().clamp(min=1e-3).log() - t["dist"].clamp(min=1e-3).log())
                    .abs()
                    .mean()
                )
            jm, jt = self.joint_map
            if jm and w.joints_3d:
                pj = root_relative(out["joints"][:, jm].float(), out["joints"][:, pelvis].float())
                tj = root_relative(t["joints"][:, jt], t["joints"][:, self.teacher_pelvis])
                losses["kd_joints_3d"] = w.joints_3d * (pj - tj).abs().sum(-1).mean()
            if jm and w.joints_2d:
                err = (
                    ((out["joints_2d"][:, jm].float() - t["joints_2d"][:, jt]) / size)
                    .abs()
                    .sum(-1)
                    .clamp(max=1.0)
                )
                losses["kd_joints_2d"] = w.joints_2d * err.mean()
        if self.projector is not None and "tokens" in t:
            losses["kd_features"] = self.cfg.feature_weight * feature_loss(out["tokens"], t["tokens"])
        return losses


def feature_loss(projected: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between student tokens ALREADY projected to the teacher's width and the
    teacher's tokens. The projection happens once, in ``TrainModule.forward`` (so DDP sees the projector
    used); a width mismatch here means someone projected twice or not at all."""
    if projected.shape[-1] != teacher_tokens.shape[-1]:
        raise ConfigError(
            f"student tokens are {projected.shape[-1]} wide but the teacher's are "
            f"{teacher_tokens.shape[-1]}: the feature projector must run exactly once (TrainModule)"
        )
    cos = F.cosine_similarity(projected.float(), teacher_tokens.float(), dim=-1)
    return (1 - cos).mean()


def _name_map(student_names, teacher_names) -> tuple[list[int], list[int]]:
    pos = {n: i for i, n in enumerate(teacher_names or ())}
    pairs = [(i, pos[n]) for i, n in enumerate(student_names or ()) if n in pos]
    return [a for a, _ in pairs], [b for _, b in pairs]


__all__ = [
    "TeacherConfig",
    "Distiller",
    "TeacherCache",
    "feature_loss",
    "load_teacher",
    "resample_scores",
    "resample_tokens",
    "scale_K",
]
