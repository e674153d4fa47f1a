"""Parameter counting per config without needing body-model files.

Only the decoder's output sizes depend on the body model (J rotations, S shape, E expression),
so the learned parts are built for those sizes; body tensors are data, not weights, and are
never counted.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lighthmr_ros.model.camera import CameraEmbedding
from lighthmr_ros.model.config import ModelConfig, get_config
from lighthmr_ros.model.encoders import DinoV2Encoder, TinyViTEncoder
from lighthmr_ros.model.heads import regression_mlp
from lighthmr_ros.model.hph import HPH

SMPLX_SIZES = (53, 10, 10)  # J, S, E of Multi-HMR's SMPL-X head


def learned_parts(config: ModelConfig, num_joints: int, num_shape: int, num_expression: int) -> nn.ModuleDict:
    """The trainable modules of a config (encoder, detection heads, HPH) at the given head sizes."""
    if config.family == "multihmr":
        enc = DinoV2Encoder(config.encoder)
    else:
        enc = TinyViTEncoder(config.encoder, stride=config.token_stride, out_dim=config.token_dim)
    dim = enc.embed_dim
    cam = CameraEmbedding(config.camera_num_bands, config.camera_max_resolution)
    hph = HPH(torch.zeros(num_joints, 6), torch.zeros(num_shape), torch.zeros(3), num_expression, dim + cam.channels, config.grid,
              config.hph_dim, config.hph_depth, config.hph_heads, config.hph_dim_head, config.hph_mlp_dim)
    return nn.ModuleDict({"encoder": enc, "detection_heads": nn.ModuleList([regression_mlp([dim, dim, 1]), regression_mlp([dim, dim, 2])]), "hph": hph})


def count_config(name: str | ModelConfig, body_model: str = "smplx", smplx_model_dir: str | Path | None = None) -> dict[str, int]:
    config = name if isinstance(name, ModelConfig) else get_config(name)
    if config.family == "multihmr" or body_model == "smplx":
        sizes = (SMPLX_SIZES[0], config.num_betas, config.num_expression)
    else:
        from lighthmr_ros.model import _make_body

        spec = _make_body(body_model, smplx_model_dir).spec
        sizes = (spec.num_pose_joints, spec.num_shape, spec.num_expression)
    parts = learned_parts(config, *sizes)
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts
