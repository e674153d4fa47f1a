"""Training configuration: YAML files mapped onto dataclasses (unknown keys are errors).

Paths in a config go through ``os.path.expandvars`` and ``~`` expansion; ``${CONFIG_DIR}`` is the
folder of the YAML file, so a config can point at data beside it. Relative paths are relative to
the working directory. ``--set section.key=value`` overrides (value parsed as YAML) come last.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.training.distill import TeacherConfig
from lighthmr_ros.training.losses import LossWeights
from lighthmr_ros.training.targets import AugmentConfig


@dataclass
class DataSource:
    dataset: str  # bedlam | 3dpw | agora | synthetic
    root: str
    split: str = "train"
    subsample: int = 1
    options: dict = field(default_factory=dict)  # reader-specific keyword arguments


@dataclass
class DataConfig:
    train: list[DataSource] = field(default_factory=list)
    val: list[DataSource] = field(default_factory=list)
    batch_size: int = 8
    num_workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augment_per_epoch: bool = True  # False: the same augmentation every epoch (teacher cache hits)


@dataclass
class ModelSection:
    name: str = "lighthmr_tinyvit5m"
    body_model: str = "smplx"
    smplx_model_dir: str | None = None
    image_size: int | None = None
    init_checkpoint: str | None = None  # start from these weights (a previous stage)
    overrides: dict = field(default_factory=dict)  # other ModelConfig fields


@dataclass
class OptimConfig:
    lr: float = 1e-4
    encoder_lr_scale: float = 1.0
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global grad norm (0: off)
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant | linear
    min_lr_ratio: float = 0.01


@dataclass
class RunConfig:
    output_dir: str = "runs/train"
    max_steps: int = 1000  # the schedule's length
    stop_after: int | None = None  # stop early at this step (schedule unchanged): pause, resume later
    log_every: int = 10
    ckpt_every: int = 500
    val_every: int = 0  # 0: no validation during training
    amp: str = "auto"  # auto (on with CUDA) | on | off
    freeze: list[str] = field(default_factory=list)  # encoder | decoder | heads
    seed: int = 0
    resume: bool = True  # continue from output_dir/checkpoints/last.pt when present
    device: str = "auto"
    threads: int = 0  # torch CPU threads (0: torch's default)
    progress: bool = True
    tensorboard: bool = True


@dataclass
class TrainConfig:
    name: str = "train"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    teacher: TeacherConfig | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PATH_KEYS = {"root", "smplx_model_dir", "init_checkpoint", "checkpoint", "cache_dir", "output_dir"}


def _expand(value: Any, config_dir: str, where: str = "") -> Any:
    if isinstance(value, str):
        out = os.path.expanduser(os.path.expandvars(value.replace("${CONFIG_DIR}", config_dir)))
        unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", out)
        if unset:
            raise ConfigError(
                f"{where} uses the environment variable {unset[0]}, which is not set: export "
                f"{unset[0]}=PATH or override it with --set {where}=PATH"
            )
        return out
    return value


def _build(cls, data: Any, where: str, config_dir: str):
    """Recursively build dataclass ``cls`` from plain YAML data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {where or 'the config'}; valid keys are {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        kwargs[key] = _convert(hints[key], value, path, config_dir, key)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _convert(tp, value, path: str, config_dir: str, key: str):
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, config_dir)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list")
        return [_build(args[0], v, f"{path}[{i}]", config_dir) for i, v in enumerate(value)]
    if args and dataclasses.is_dataclass(args[0]):  # Optional[dataclass]
        return _build(args[0], value, path, config_dir)
    if tp is tuple or origin is tuple:
        return tuple(value)
    if key in PATH_KEYS:
        return _expand(value, config_dir, path)
    if tp in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return tp(value)
    if tp is int and isinstance(value, str):
        raise ConfigError(f"{path} must be an integer, got {value!r}")
    return value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b.c=value`` strings (value parsed as YAML) applied onto nested dicts."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            if isinstance(node, list):  # data.train.0.root: index into a list
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {item!r}: {part} is not an index of that list")
                node = node[int(part)]
                continue
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"override {item!r}: {last} is not an index of that list")
            node[int(last)] = yaml.safe_load(raw)
        else:
            node[last] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"training config {path} not found; pass a YAML file such as "
            "lighthmr_ros/training/configs/bedlam_distill.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    data = apply_overrides(data, overrides or [])
    cfg = _build(TrainConfig, data, "", str(path.resolve().parent))
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    if not cfg.data.train:
        raise ConfigError("data.train lists no data set; add at least one {dataset, root, split} entry")
    if cfg.run.max_steps <= 0:
        raise ConfigError("run.max_steps must be positive")
    if cfg.optim.schedule not in ("cosine", "constant", "linear"):
        raise ConfigError(f"optim.schedule {cfg.optim.schedule!r} unknown: use cosine, constant or linear")
    if isinstance(cfg.run.amp, bool):  # YAML reads a bare on/off as a boolean
        cfg.run.amp = "on" if cfg.run.amp else "off"
    if cfg.run.amp not in ("auto", "on", "off"):
        raise ConfigError(f"run.amp {cfg.run.amp!r} unknown: use auto, on or off")
    bad = sorted(set(cfg.run.freeze) - {"encoder", "decoder", "heads"})
    if bad:
        raise ConfigError(f"run.freeze has unknown part(s) {bad}: use encoder, decoder or heads")
    leaks = [f"{s.dataset} {s.split}" for s in cfg.data.val if s.split == "test"]
    if leaks:
        raise ConfigError(
            f"data.val validates on {', '.join(leaks)}: model selection on a test split leaks it into "
            "the model; validate on the validation split and evaluate on test once at the end"
        )
    if cfg.teacher is not None and not 0 <= cfg.teacher.gt_weight <= 1:
        raise ConfigError("teacher.gt_weight must be in [0, 1]")
