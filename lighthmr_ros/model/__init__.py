"""Networks of lighthmr_ros: the TinyViT student, the Multi-HMR teacher, their configs and checkpoints.

Everything builds through one function, as with timm::

    model = create_model("lighthmr_tinyvit5m", body_model="anny")
    model = create_model("multihmr_vits14", smplx_model_dir="~/models/smplx")
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.model.config import ModelConfig, get_config, list_models
from lighthmr_ros.model.hmr import Detections, HMRModel

__all__ = [
    "Detections",
    "HMRModel",
    "ModelConfig",
    "count_parameters",
    "create_model",
    "get_config",
    "list_models",
    "print_param_counts",
]


def _make_body(name: str, smplx_model_dir: str | Path | None) -> nn.Module:
    try:
        from lighthmr_ros.body import create_body_model
    except ImportError:  # body package still without its factory
        if name != "smplx":
            raise
        from lighthmr_ros.body.smplx_model import SMPLXBody

        return SMPLXBody(smplx_model_dir)
    return create_body_model(name, model_dir=smplx_model_dir) if name == "smplx" else create_body_model(name)


def create_model(
    name_or_config: str | ModelConfig | dict,
    body_model: str | nn.Module | None = None,
    smplx_model_dir: str | Path | None = None,
    mean_params: str | Path | None = None,
    **overrides,
) -> HMRModel:
    """Build a named (or given) configuration with random weights.

    ``body_model``: a name ("anny", "smplx") or a BodyModel instance for the student (teachers
    always use SMPL-X from ``smplx_model_dir``). ``mean_params``: Multi-HMR's smpl_mean_params.npz
    for the teacher's decoder start values (optional).
    """
    if isinstance(name_or_config, ModelConfig):
        config = name_or_config
    elif isinstance(name_or_config, dict):
        config = ModelConfig.from_dict(name_or_config)
    else:
        config = get_config(name_or_config, **overrides)
    if config.family == "multihmr":
        from lighthmr_ros.model.multihmr import build_multihmr

        return build_multihmr(config, smplx_model_dir=smplx_model_dir, mean_params=mean_params)
    if config.family != "lighthmr":
        raise ConfigError(f"unknown model family {config.family!r}")
    from lighthmr_ros.model.lighthmr import build_lighthmr

    if isinstance(body_model, nn.Module):
        body = body_model
    else:
        body = _make_body(body_model or config.body_model, smplx_model_dir)
    if body.spec.name != config.body_model:
        import dataclasses

        config = dataclasses.replace(config, body_model=body.spec.name)
    return build_lighthmr(config, body)


def count_parameters(model: HMRModel) -> dict[str, int]:
    """Learned parameters per part (body-model tensors excluded: they are fixed data, not weights)."""
    parts = {"encoder": model.backbone, "detection_heads": nn.ModuleList([model.mlp_classif, model.mlp_offset]), "hph": model.x_attention_head}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


def print_param_counts(names: list[str] | None = None, body_model: str = "smplx", smplx_model_dir: str | Path | None = None, file=None) -> dict[str, dict[str, int]]:
    """Print a table of parameter counts per config (millions); returns the counts.

    Students are counted with ``body_model``'s head (SMPL-X by default, which needs
    ``smplx_model_dir``; without it the SMPL-X head sizes are used with a synthetic mesh).
    """
    import sys

    from lighthmr_ros.model.params import count_config

    out = file or sys.stdout
    results = {}
    print(f"{'model':<26}{'encoder':>10}{'heads':>10}{'hph':>10}{'total':>10}  (millions of learned parameters)", file=out)
    for name in names or list_models():
        c = count_config(name, body_model=body_model, smplx_model_dir=smplx_model_dir)
        results[name] = c
        print(f"{name:<26}" + "".join(f"{c[k] / 1e6:>10.3f}" for k in ("encoder", "detection_heads", "hph", "total")), file=out)
    return results
