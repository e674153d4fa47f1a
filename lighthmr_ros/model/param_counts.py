"""Learned-parameter counts of models and of named configs (the latter without body-model files).

Only the decoder's output sizes depend on the body model (J rotations, S shape, E expression),
so a config is counted by building its learned parts for those sizes; body tensors are data, not
weights, and are never counted.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import torch
from torch import nn

from lighthmr_ros.model.camera import CameraEmbedding
from lighthmr_ros.model.config import ModelConfig, get_config, list_models
from lighthmr_ros.model.encoders import DinoV2Encoder, TinyViTEncoder
from lighthmr_ros.model.heads import regression_mlp
from lighthmr_ros.model.hmr import HMRModel
from lighthmr_ros.model.hph import HPH

SMPLX_SIZES = (53, 10, 10)  # J, S, E of Multi-HMR's SMPL-X head
PARTS = ("encoder", "detection_heads", "hph")


def _count(parts: dict[str, nn.Module]) -> dict[str, int]:
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


def learned_parts(config: ModelConfig, num_joints: int, num_shape: int, num_expression: int) -> nn.ModuleDict:
    """The trainable modules of a config (encoder, detection heads, HPH) at the given head sizes."""
    enc: nn.Module
    if config.family == "multihmr":
        enc = DinoV2Encoder(config.encoder)
    else:
        enc = TinyViTEncoder(config.encoder, stride=config.token_stride, out_dim=config.token_dim)
    dim = int(enc.embed_dim)
    cam = CameraEmbedding(config.camera_num_bands, config.camera_max_resolution)
    hph = HPH(torch.zeros(num_joints, 6), torch.zeros(num_shape), torch.zeros(3), num_expression,
              dim + cam.channels, config.grid, config.hph_dim, config.hph_depth, config.hph_heads,
              config.hph_dim_head, config.hph_mlp_dim)
    heads = nn.ModuleList([regression_mlp([dim, dim, 1]), regression_mlp([dim, dim, 2])])
    return nn.ModuleDict({"encoder": enc, "detection_heads": heads, "hph": hph})


def count_parameters(model: HMRModel) -> dict[str, int]:
    """Learned parameters per part (body-model tensors excluded: they are fixed data, not weights)."""
    if model.config.family == "multihmr_anny":  # its own module layout (upstream's key names)
        from lighthmr_ros.model.multihmr_anny import count_anny_teacher

        return count_anny_teacher(model)
    return _count({
        "encoder": model.backbone,
        "detection_heads": nn.ModuleList([model.mlp_classif, model.mlp_offset]),
        "hph": model.x_attention_head,
    })


def count_config(name: str | ModelConfig, body_model: str = "smplx",
                 smplx_model_dir: str | Path | None = None) -> dict[str, int]:
    """Learned parameters per part of a named config with ``body_model``'s head, without building it."""
    config = name if isinstance(name, ModelConfig) else get_config(name)
    if config.family == "multihmr_anny":
        from lighthmr_ros.model.multihmr_anny import count_anny_teacher

        return count_anny_teacher(config)
    if config.family == "multihmr" or body_model == "smplx":
        sizes = (SMPLX_SIZES[0], config.num_betas, config.num_expression)
    else:
        from lighthmr_ros.body import create_body_model

        spec = create_body_model(body_model, model_dir=smplx_model_dir).spec
        sizes = (spec.num_pose_joints, spec.num_shape, spec.num_expression)
    return _count(dict(learned_parts(config, *sizes).items()))


def print_param_counts(names: list[str] | None = None, body_model: str = "smplx",
                       smplx_model_dir: str | Path | None = None,
                       file: TextIO | None = None) -> dict[str, dict[str, int]]:
    """Print a table of parameter counts per config (millions); returns the counts.

    Students are counted with ``body_model``'s head (SMPL-X by default, whose head sizes are known
    without the user's SMPL-X files).
    """
    out = file or sys.stdout
    results = {}
    header = f"{'model':<26}{'encoder':>10}{'heads':>10}{'hph':>10}{'total':>10}"
    print(header + "  (millions of learned parameters)", file=out)
    for name in names or list_models():
        c = count_config(name, body_model=body_model, smplx_model_dir=smplx_model_dir)
        results[name] = c
        print(f"{name:<26}" + "".join(f"{c[k] / 1e6:>10.3f}" for k in (*PARTS, "total")), file=out)
    return results
