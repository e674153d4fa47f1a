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
from lighthmr_ros.model.param_counts import count_config, count_parameters, print_param_counts

__all__ = [
    "Detections",
    "HMRModel",
    "ModelConfig",
    "count_config",
    "count_parameters",
    "create_model",
    "get_config",
    "list_models",
    "print_param_counts",
]


def create_model(
    name_or_config: str | ModelConfig | dict,
    body_model: str | nn.Module | None = None,
    smplx_model_dir: str | Path | None = None,
    mean_params: str | Path | None = None,
    **overrides,
) -> HMRModel:
    """Build a named (or given) configuration with random weights.

    ``body_model``: a name ("anny", "smplx") or a BodyModel instance for the student (the v1
    teachers always use SMPL-X from ``smplx_model_dir``; the Anny teachers, ``multihmr_anny_*``, Anny's
    full rig, which an AnnyFullBody instance may share). ``mean_params``: Multi-HMR's
    smpl_mean_params.npz for the v1 teacher's decoder start values (optional).
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
    if config.family == "multihmr_anny":
        from lighthmr_ros.model.multihmr_anny import build_multihmr_anny

        return build_multihmr_anny(config, body_model if isinstance(body_model, nn.Module) else None)
    if config.family != "lighthmr":
        raise ConfigError(f"unknown model family {config.family!r}")
    from lighthmr_ros.model.lighthmr import build_lighthmr

    if isinstance(body_model, nn.Module):
        body = body_model
    else:
        from lighthmr_ros.body import create_body_model

        body = create_body_model(body_model or config.body_model, model_dir=smplx_model_dir)
    if body.spec.name != config.body_model:
        import dataclasses

        config = dataclasses.replace(config, body_model=body.spec.name)
    return build_lighthmr(config, body)
