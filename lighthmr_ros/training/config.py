"""Training configuration: YAML files mapped onto dataclasses (unknown keys are errors).

Paths in a config go through ``os.path.expandvars`` and ``~`` expansion; ``${CONFIG_DIR}`` is the
folder of the YAML file, so a config can point at data beside it. Relative paths are relative to
the working directory. ``--set section.key=value`` overrides come last; each value is read as the
type of the field it sets (``apply_overrides``). Files are YAML with YAML 1.2 floats (``lr: 3e-4`` is
a number), and a number in a file is coerced to its field's type the same way.
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


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``3e-4`` and ``1E5`` are numbers (YAML 1.1 reads them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None


class _Text(str):
    """The text of a ``--set`` value, read by the type of the field it lands in (see ``_convert``)."""


def _plain(value: Any, where: str) -> Any:
    """``value`` with every override text in it parsed as YAML (untyped places: dicts, sections)."""
    if isinstance(value, _Text):
        return _parse(value, where)
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
NULL = {"", "~", "null"}  # YAML's
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _scalar(tp, value: Any, path: str) -> Any:
    """``value`` (YAML data or override text) as a ``tp`` in (int, float, bool, str)."""
    text = value.strip() if isinstance(value, str) else None
    shown = repr(str(value)) if isinstance(value, str) else repr(value)
    if tp is str:
        if isinstance(value, bool):  # a bare on/off in a file (run.amp): validate() maps it
            return value
        return str(value) if isinstance(value, (str, int, float)) else _bad(path, tp, shown)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if text is not None and text.lower() in TRUE | FALSE:
            return text.lower() in TRUE
        return _bad(path, tp, shown)
    if isinstance(value, bool):
        return _bad(path, tp, shown)
    if tp is float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(text.replace("_", "")) if text is not None else _bad(path, tp, shown)
        except ValueError:
            return _bad(path, tp, shown)
    # int: an integral number (1e3 too, as YAML reads it in a file), never a fraction
    if text is not None:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                value = float(text.replace("_", ""))
            except ValueError:
                return _bad(path, tp, shown)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _bad(path, tp, shown)


def _bad(path: str, tp, shown: str):
    raise ConfigError(f"{path} must be {_NAMES[tp]}, got {shown}")


def _convert(tp, value, path: str, config_dir: str, key: str):
    """``value`` as the field type ``tp``: YAML data from a file, or override text (``_Text``)."""
    if tp is Any:
        return _plain(value, path)
    args = [a for a in get_args(tp) if a is not type(None)]
    if type(None) in get_args(tp) and len(args) == 1:  # X | None
        if value is None or (isinstance(value, _Text) and value.strip().lower() in NULL):
            return None
        tp, args = args[0], list(get_args(args[0]))
    origin = get_origin(tp) or tp
    if isinstance(value, _Text) and tp not in (int, float, bool, str):
        value = _parse(value, f"the value of {path}")  # a list, a mapping, a section: YAML (or JSON)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, config_dir)
    if value is None:
        if origin in (list, dict):  # an empty key in a file
            return origin()
        raise ConfigError(f"{path} must be {_NAMES.get(tp, 'set')}, got null")
    if tp in (int, float, bool, str):
        out = _scalar(tp, value, path)
        return _expand(out, config_dir, path) if key in PATH_KEYS and isinstance(out, str) else out
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list such as [a, b], got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path} must be a list of {len(args)} values, got {len(value)}")
            types = args
        else:
            types = [args[0] if args else Any] * len(value)
        items = [
            _convert(t, v, f"{path}[{i}]", config_dir, key) for i, (t, v) in enumerate(zip(types, value, strict=True))
        ]
        return tuple(items) if origin is tuple else items
    return _plain(value, path)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b.c=value`` strings applied onto nested dicts.

    The value is kept as text and read by the type of the field it sets (``_convert``): a float field
    takes ``3e-4``, an int field refuses ``3.5``, a bool takes true/false/yes/no/on/off/1/0, a list or
    tuple a YAML or JSON list, a string field the text as written; untyped places parse it as YAML.
    """
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
                if isinstance(node[int(part)], _Text):  # an earlier override set it as text
                    node[int(part)] = _parse(node[int(part)], f"override {item!r}")
                node = node[int(part)]
                continue
            if isinstance(node.get(part), _Text):
                node[part] = _parse(node[part], f"override {item!r}")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"override {item!r}: {last} is not an index of that list")
            node[int(last)] = _Text(raw)
        else:
            node[last] = _Text(raw)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"training config {path} not found; pass a YAML file such as "
            "lighthmr_ros/training/configs/bedlam_distill.yaml"
        )
    data = _parse(path.read_text(), str(path)) or {}
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
