"""The student: TinyViT-5M encoder + a reduced HPH decoder, with any BodyModel (Anny by default).

Same single-shot design as the teacher, with two deliberate differences: the camera rays use
the correct (x = column, y = row) token centres, and the decoder starts from the body model's
own rest pose and mean shape (6D stored as the first two columns of each rotation).
"""
from __future__ import annotations

import torch
from torch import nn

from lighthmr_ros.model.config import ModelConfig
from lighthmr_ros.model.encoders import TinyViTEncoder
from lighthmr_ros.model.hmr import HMRModel
from lighthmr_ros.model.hph import rotmat_to_rot6d


def build_lighthmr(config: ModelConfig, body: nn.Module) -> HMRModel:
    backbone = TinyViTEncoder(config.encoder, stride=config.token_stride, out_dim=config.token_dim)
    init = (
        rotmat_to_rot6d(body.rest_pose().detach().float().cpu()),
        body.mean_shape().detach().float().cpu(),
        torch.tensor([0.9, 0.0, 0.0]),
    )
    return HMRModel(config, backbone, body, init)
