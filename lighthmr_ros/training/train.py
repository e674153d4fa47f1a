"""The training engine behind ``lighthmr train`` and ``lighthmr distill``.

One loop for every stage: data sets -> letterbox + augmentation -> ``forward_train`` at the GT
cells (plus teacher cells when distilling) -> GT losses (and teacher losses) -> AdamW with warm-up
and cosine decay, gradient clipping, optional AMP -> atomic, resumable checkpoints.

Multi-GPU: launch with ``torchrun --nproc_per_node N -m lighthmr_ros.cli train CONFIG``; each process
reads RANK / WORLD_SIZE / LOCAL_RANK, joins the process group (NCCL on CUDA, gloo on CPU), wraps the
model in DistributedDataParallel and reads its own shard of every epoch's permutation. Rank 0 alone
writes logs and checkpoints.

Resuming: ``<output_dir>/checkpoints/last.pt`` holds model and projector weights, optimizer,
scheduler, AMP scaler, step, epoch, position in the epoch and the torch RNG states. The data order is
a function of (seed, epoch) and augmentation of (seed, epoch, item), so a resumed run continues the
same schedule: the same batches and the same learning rate at the same step.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from lighthmr_ros.device import resolve_device
from lighthmr_ros.errors import CheckpointError, ConfigError
from lighthmr_ros.model.checkpoint import atomic_save
from lighthmr_ros.model.hmr import PERSON_KEYS
from lighthmr_ros.perf import torch_threads
from lighthmr_ros.training.config import TrainConfig
from lighthmr_ros.training.datasets import ConcatReaders, TrainingDataset, create_dataset, make_collate
from lighthmr_ros.training.losses import detection_losses, person_losses, weighted_total
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import AugmentConfig, ignored_cells, token_locations

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- distributed
@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def pick_device(name: str, info: DistInfo) -> torch.device:
    """The project's one device rule without the CPU fallback (a multi-GPU job must not silently run on
    the CPU); under DDP each process takes the CUDA device of its LOCAL_RANK."""
    device = resolve_device(name, fallback=False)
    if device.type == "cuda":
        device = torch.device(
            "cuda", info.local_rank if info.world > 1 or device.index is None else device.index
        )
        torch.cuda.set_device(device)
    return device


class EpochSampler(Sampler):
    """Shuffled permutation of (seed, epoch), padded to split evenly across ranks, from a start batch."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, seed: int, shuffle: bool = True):
        self.n, self.batch_size, self.rank, self.world, self.seed, self.shuffle = (
            n,
            batch_size,
            rank,
            world,
            seed,
            shuffle,
        )
        self.epoch = 0
        self.start_batch = 0

    def per_rank(self) -> int:
        return math.ceil(self.n / self.world)

    def batches_per_epoch(self) -> int:
        return math.ceil(self.per_rank() / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank() * self.world
        order = (order * math.ceil(total / max(1, len(order))))[:total]
        mine = order[self.rank : total : self.world]
        return iter(mine[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start_batch * self.batch_size)


# ---------------------------------------------------------------------------------- model pieces
class TrainModule(nn.Module):
    """What DDP wraps: the student's ``forward_train`` plus the feature projector of distillation."""

    def __init__(self, model: nn.Module, projector: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.projector = projector

    def forward(self, images, K, locations):
        out = self.model.forward_train(images, K, locations)
        if self.projector is not None:
            out["tokens"] = self.projector(out["tokens"].float())
        return out


def freeze_parts(model: nn.Module, parts: list[str]) -> None:
    groups = {
        "encoder": ["backbone"],
        "decoder": ["x_attention_head"],
        "heads": ["mlp_classif", "mlp_offset"],
    }
    for part in parts:
        for attr in groups[part]:
            module = getattr(model, attr, None)
            if module is None:
                raise ConfigError(f"cannot freeze {part}: the model has no {attr}")
            for p in module.parameters():
                p.requires_grad_(False)


def lr_lambda(optim_cfg, max_steps: int):
    warm = max(0, optim_cfg.warmup_steps)
    floor = optim_cfg.min_lr_ratio

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if optim_cfg.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, max_steps - warm))
        if optim_cfg.schedule == "linear":
            return floor + (1 - floor) * (1 - t)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def build_model(cfg: TrainConfig):
    from lighthmr_ros.model import create_model

    m = cfg.model
    overrides = dict(m.overrides)
    if m.image_size:
        overrides["image_size"] = m.image_size
    model = create_model(m.name, body_model=m.body_model, smplx_model_dir=m.smplx_model_dir, **overrides)
    if m.init_checkpoint:
        from lighthmr_ros.model.checkpoint import load_checkpoint

        src = load_checkpoint(m.init_checkpoint, device="cpu", smplx_model_dir=m.smplx_model_dir)
        missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
        bad = [k for k in missing + unexpected if not k.startswith(model.body_prefixes)]
        if bad:
            raise CheckpointError(
                f"{m.init_checkpoint} does not fit model {m.name} (e.g. {bad[0]}); "
                "use a checkpoint of the same architecture as model.init_checkpoint"
            )
    return model


def build_loader(
    cfg: TrainConfig,
    size: int,
    info: DistInfo,
    sources=None,
    augment=True,
    pin_memory: bool = False,
    teacher_size: int | None = None,
):
    readers = []
    for src in sources if sources is not None else cfg.data.train:
        readers.append(
            create_dataset(src.dataset, src.root, split=src.split, subsample=src.subsample, **src.options)
        )
    reader = readers[0] if len(readers) == 1 else ConcatReaders(readers)
    aug = cfg.data.augment if augment else AugmentConfig(enabled=False)
    ds = TrainingDataset(reader, size, aug, seed=cfg.run.seed, teacher_size=teacher_size)
    sampler = EpochSampler(len(ds), cfg.data.batch_size, info.rank, info.world, cfg.run.seed, shuffle=augment)
    loader = DataLoader(
        ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=make_collate(size),
        persistent_workers=False,
        drop_last=False,
        pin_memory=pin_memory,
        generator=torch.Generator(),
    )  # own generator: iterating never draws from the global RNG
    return ds, sampler, loader


# ---------------------------------------------------------------------------------- checkpoints
def _weights(module: TrainModule, body_prefixes: tuple[str, ...]) -> dict:
    prefixes = tuple(f"model.{p}" for p in body_prefixes)
    return {k: v.detach().cpu() for k, v in module.state_dict().items() if not k.startswith(prefixes)}


def save_training_state(path: Path, module: TrainModule, optimizer, scheduler, scaler, state: dict) -> None:
    payload = {
        "format": "lighthmr_ros.train_state",
        "weights": _weights(module, module.model.body_prefixes),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        **state,
    }
    atomic_save(payload, path)


def load_training_state(path: Path, module: TrainModule, optimizer, scheduler, scaler) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot resume from {path} ({type(exc).__name__}: {exc}); delete it or set run.resume: false"
        ) from exc
    if payload.get("format") != "lighthmr_ros.train_state":
        raise CheckpointError(f"{path} is not a lighthmr training state; delete it or set run.resume: false")
    missing, unexpected = module.load_state_dict(payload["weights"], strict=False)
    prefixes = tuple(f"model.{p}" for p in module.model.body_prefixes)
    bad = [k for k in missing if not k.startswith(prefixes)] + list(unexpected)
    if bad:
        raise CheckpointError(
            f"{path} does not fit this model/config (e.g. {bad[0]}); use a new run.output_dir"
        )
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["rng_cpu"])
    if torch.cuda.is_available() and payload.get("rng_cuda"):
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    return {k: payload[k] for k in ("step", "epoch", "batch_in_epoch")}


def _backups_exist(paths: list[Path], n: int) -> bool:
    return any(p.with_name(f"{p.name}.{n}.bak").exists() for p in paths)


class MetricLog:
    """CSV (always) and TensorBoard (when installed and enabled) scalars, rank 0 only.

    A resumed run appends to ``log.csv`` and ``tb/``. A fresh run (``fresh``: from step 0, e.g.
    ``--no-resume``) in a folder that already holds them moves them aside to ``log.csv.<N>.bak`` and
    ``tb.<N>.bak`` (first N free for both) and starts new ones, so no log mixes two runs.
    """

    def __init__(self, out_dir: Path, tensorboard: bool, fresh: bool = False):
        self.path = out_dir / "log.csv"
        self.fields: list[str] | None = None
        previous = [p for p in (self.path, out_dir / "tb") if p.exists()]
        if fresh and previous:  # one N for the CSV and the TensorBoard folder of the same old run
            n = next(n for n in itertools.count(1) if not _backups_exist(previous, n))
            moved = []
            for old in previous:
                old.rename(old.with_name(f"{old.name}.{n}.bak"))
                moved.append(f"{old.name} aside to {old.name}.{n}.bak")
            log.info("fresh run in %s: moved the previous %s", out_dir, ", ".join(moved))
        if self.path.exists():
            with open(self.path) as f:
                header = f.readline().strip()
            self.fields = header.split(",") if header else None
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **values}
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        for k in row:
            if k not in self.fields:  # a term appears later (e.g. validation): extend the header
                self.fields.append(k)
                rows = list(csv.DictReader(open(self.path)))
                with open(self.path, "w", newline="") as f:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------- one step
def compute_step_losses(
    module, model, distiller, batch, cfg: TrainConfig, size: int, device, amp_ctx
) -> tuple[torch.Tensor, dict]:
    """Forward pass and every loss term for one collated batch."""
    images, K = batch["images"].to(device, non_blocking=True), batch["K"].to(device)
    B = images.shape[0]
    grid = (model.config.grid, model.config.grid)
    center, bidx = batch["center"], batch["batch_index"]
    valid = batch["valid"]
    locations, keep, offset_t = token_locations(center, bidx, B, grid, size, valid)
    ignore = ignored_cells(center, bidx, valid, B, grid, size) if not bool(valid.all()) else None
    extra, teacher = None, None
    if distiller is not None:  # one teacher pass: its targets and its extra (pseudo-label) cells
        teacher, extra = distiller.teach(
            batch, center[keep].to(device), bidx[keep].to(device), grid, size, locations
        )
    locs = [torch.cat([locations[b], extra[b]]) if extra is not None else locations[b] for b in range(B)]
    with amp_ctx():
        out = module(images, K, [loc.to(device) for loc in locs])
    # rows of GT persons among the decoded ones (per image: GT first, then teacher-only cells)
    is_gt = torch.cat(
        [
            torch.cat(
                [
                    torch.ones(len(locations[b]), dtype=torch.bool),
                    torch.zeros(len(locs[b]) - len(locations[b]), dtype=torch.bool),
                ]
            )
            for b in range(B)
        ]
    )
    is_gt = is_gt.to(device)
    gt_out = {k: out[k][is_gt] for k in PERSON_KEYS if k in out}
    w = cfg.loss
    cells = torch.cat(locations).to(device)
    kept_b = bidx[keep].to(device)
    losses = detection_losses(out, cells, kept_b, offset_t[keep].to(device), w, ignore)
    if int(keep.sum()):
        targets = build_person_targets(batch, keep, model.body, device)
        losses.update(
            person_losses(gt_out, targets, model.body.spec.pelvis_index, model.body.spec.head_index, size, w)
        )
    total = weighted_total(losses, w)
    if distiller is not None:
        kd = distiller.losses(out, teacher, model.body.spec.pelvis_index, size, w)
        losses.update(kd)
        kd_total = sum(kd.values()) if kd else torch.zeros((), device=device)
        total = distiller.cfg.gt_weight * total + distiller.cfg.teacher_weight * kd_total
    return total, {k: float(v.detach()) for k, v in losses.items()}


# ---------------------------------------------------------------------------------- the loop
def train(cfg: TrainConfig, distill: bool = False) -> dict:
    """Run (or resume) a training stage; returns a summary (steps, last losses, paths)."""
    if distill and cfg.teacher is None:
        raise ConfigError(
            "lighthmr distill needs a 'teacher' section (checkpoint, image_size, gt_weight, teacher_weight)"
        )
    info = DistInfo(
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = pick_device(cfg.run.device, info)
    with torch_threads(cfg.run.threads if cfg.run.threads > 0 else torch.get_num_threads()):
        return _train(cfg, info, device)


@dataclasses.dataclass
class Position:
    """Where a run is: global step, epoch, and batches already taken in that epoch (what resuming needs)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


@dataclasses.dataclass
class Engine:
    """What one training process holds: model, teacher, the module DDP wraps, optimiser and AMP."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    model: nn.Module
    distiller: nn.Module | None
    module: TrainModule
    ddp: nn.Module  # ``module`` itself, or its DistributedDataParallel wrapper
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    use_amp: bool
    amp_dtype: torch.dtype

    @property
    def size(self) -> int:
        return self.model.config.image_size

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.output_dir)

    @property
    def last(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)


def build_engine(cfg: TrainConfig, info: DistInfo, device: torch.device) -> Engine:
    """Model (frozen parts), teacher, DDP wrapper, AdamW (encoder learning-rate scale), LR schedule, AMP."""
    model = build_model(cfg).to(device)
    freeze_parts(model, cfg.run.freeze)
    distiller = None
    if cfg.teacher is not None:
        from lighthmr_ros.training.distill import Distiller

        distiller = Distiller(cfg.teacher, model, device).to(device)
    module = TrainModule(model, distiller.projector if distiller is not None else None).to(device)
    module.train()
    ddp: nn.Module = module
    if info.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    enc = [p for n, p in named if n.startswith("model.backbone.")]
    rest = [p for n, p in named if not n.startswith("model.backbone.")]
    groups = [
        g
        for g in (
            {"params": enc, "lr": cfg.optim.lr * cfg.optim.encoder_lr_scale},
            {"params": rest, "lr": cfg.optim.lr},
        )
        if g["params"]
    ]
    if not groups:
        raise ConfigError("every parameter is frozen (run.freeze); nothing to train")
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim, cfg.run.max_steps))
    use_amp = cfg.run.amp == "on" or (cfg.run.amp == "auto" and device.type == "cuda")
    return Engine(
        cfg=cfg,
        info=info,
        device=device,
        model=model,
        distiller=distiller,
        module=module,
        ddp=ddp,
        params=enc + rest,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if use_amp and device.type == "cuda" else None,
        use_amp=use_amp,
        amp_dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
    )


def resume(engine: Engine) -> Position:
    """The position saved in ``last.pt`` (weights, optimiser, schedule, RNG restored), or the start."""
    if not (engine.cfg.run.resume and engine.last.exists()):
        return Position()
    st = load_training_state(engine.last, engine.module, engine.optimizer, engine.scheduler, engine.scaler)
    pos = Position(st["step"], st["epoch"], st["batch_in_epoch"])
    if engine.info.main:
        log.info(
            "resumed %s at step %d (epoch %d, batch %d)", engine.last, pos.step, pos.epoch, pos.batch_in_epoch
        )
    return pos


def optimizer_step(engine: Engine, total: torch.Tensor) -> float | None:
    """Backward, optional gradient clipping, optimiser and schedule step; returns the gradient norm."""
    engine.optimizer.zero_grad(set_to_none=True)
    if engine.scaler is not None:
        engine.scaler.scale(total).backward()
        engine.scaler.unscale_(engine.optimizer)
    else:
        total.backward()
    grad_norm = None
    if engine.cfg.optim.grad_clip > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(engine.params, engine.cfg.optim.grad_clip))
    if engine.scaler is not None:
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        engine.optimizer.step()
    engine.scheduler.step()
    return grad_norm


def save_checkpoints(engine: Engine, pos: Position) -> None:
    """Rank 0: ``last.pt`` (to resume) and ``model.pt`` (self-describing, for inference), both atomic."""
    if not engine.info.main:
        return
    cfg = engine.cfg
    save_training_state(
        engine.last,
        engine.module,
        engine.optimizer,
        engine.scheduler,
        engine.scaler,
        {**dataclasses.asdict(pos), "config": cfg.to_dict()},
    )
    from lighthmr_ros.model.checkpoint import save_checkpoint

    prov = {
        "stage": cfg.name,
        "step": pos.step,
        "max_steps": cfg.run.max_steps,
        "datasets": [dataclasses.asdict(s) for s in cfg.data.train],
        "teacher": dataclasses.asdict(cfg.teacher) if cfg.teacher else None,
    }
    save_checkpoint(engine.out_dir / "model.pt", engine.model, prov)


class Reporter:
    """Rank 0's CSV/TensorBoard log and progress bar; other ranks get one that does nothing."""

    def __init__(self, engine: Engine, start: int, stop: int):
        self.cfg, self.stop, self.t0 = engine.cfg, stop, time.time()
        self.metric_log = self.progress = None
        if not engine.info.main:
            return
        engine.out_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (engine.out_dir / "config.yaml").write_text(yaml.safe_dump(engine.cfg.to_dict(), sort_keys=False))
        self.metric_log = MetricLog(engine.out_dir, engine.cfg.run.tensorboard, fresh=start == 0)
        if engine.cfg.run.progress:
            from tqdm import tqdm

            self.progress = tqdm(
                total=stop, initial=start, desc=engine.cfg.name, unit="step", dynamic_ncols=True
            )

    def step(self, step: int, lr: float, losses: dict, grad_norm: float | None) -> None:
        if self.metric_log is not None and (step % max(1, self.cfg.run.log_every) == 0 or step == self.stop):
            vals = {"lr": lr, **losses, "time_s": time.time() - self.t0}
            if grad_norm is not None:
                vals["grad_norm"] = grad_norm
            self.metric_log.write(step, vals)
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}")

    def validation(self, step: int, metrics: dict) -> None:
        if self.metric_log is not None:
            self.metric_log.write(
                step, {f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.metric_log is not None:
            self.metric_log.close()


def _train(cfg: TrainConfig, info: DistInfo, device: torch.device) -> dict:
    info = init_distributed(device)
    torch.manual_seed(cfg.run.seed + info.rank)
    engine = build_engine(cfg, info, device)
    model, distiller, size = engine.model, engine.distiller, engine.size
    teacher_size = distiller.image_size if distiller is not None else None
    ds, sampler, loader = build_loader(
        cfg, size, info, pin_memory=device.type == "cuda", teacher_size=teacher_size
    )
    if distiller is not None:
        distiller.check_cache(len(ds), (model.config.grid, model.config.grid), cfg.data.augment_per_epoch)
    pos = resume(engine)
    stop = min(cfg.run.max_steps, cfg.run.stop_after or cfg.run.max_steps)
    reporter = Reporter(engine, pos.step, stop)
    last_losses: dict = {}
    while pos.step < stop:
        ds.set_epoch(pos.epoch if cfg.data.augment_per_epoch else 0)
        sampler.set_epoch(pos.epoch, pos.batch_in_epoch)
        for batch in loader:
            total, losses = compute_step_losses(
                engine.ddp, model, distiller, batch, cfg, size, device, engine.autocast
            )
            lr = engine.optimizer.param_groups[-1]["lr"]
            grad_norm = optimizer_step(engine, total)
            pos.step += 1
            pos.batch_in_epoch += 1
            last_losses = {"loss": float(total.detach()), **losses}
            reporter.step(pos.step, lr, last_losses, grad_norm)
            if cfg.run.val_every and pos.step % cfg.run.val_every == 0 and cfg.data.val:
                reporter.validation(
                    pos.step, validate(cfg, model, size, device, info)
                )  # every rank: its shard
                engine.module.train()
            if pos.step % max(1, cfg.run.ckpt_every) == 0 or pos.step == stop:
                save_checkpoints(engine, pos)
            if pos.step >= stop:
                break
        else:
            pos.epoch += 1
            pos.batch_in_epoch = 0
    reporter.close()
    if info.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    summary = {
        "step": pos.step,
        "max_steps": cfg.run.max_steps,
        "losses": last_losses,
        "checkpoint": str(engine.out_dir / "model.pt"),
        "state": str(engine.last),
    }
    if distiller is not None and distiller.cache is not None:
        summary["teacher_cache"] = {"hits": distiller.cache.hits, "misses": distiller.cache.misses}
    return summary


def validate(cfg: TrainConfig, model, size: int, device, info: DistInfo | None = None) -> dict:
    """Validation metrics, computed by every rank on its own shard (items rank, rank + world, ...) and summed.

    Why: on rank 0 alone, the other ranks wait in the next collective for the whole pass, and a BEDLAM-val
    pass longer than the process-group timeout kills the job. Sharded, each rank does 1/world of it and the
    only collective is one all-reduce of a few sums per data set."""
    from lighthmr_ros.training.evaluate import evaluate_model

    info = info or DistInfo()

    def all_reduce(totals: list[float]) -> list[float]:
        if info.world <= 1:
            return totals
        t = torch.tensor(totals, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    results = {}
    for src in cfg.data.val:
        reader = create_dataset(
            src.dataset, src.root, split=src.split, subsample=src.subsample, **src.options
        )
        res = evaluate_model(
            model.eval(),
            reader,
            size=size,
            device=device,
            progress=False,
            indices=range(info.rank, len(reader), info.world),
            reduce=all_reduce,
        )
        results.update({f"{src.dataset}_{k}": v for k, v in res.items()})
    return results
