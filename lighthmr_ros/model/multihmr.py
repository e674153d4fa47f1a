"""The teacher: NAVER's Multi-HMR architecture, state_dict-compatible with the official checkpoints.

Key layout: ``backbone.encoder.*`` (DINOv2), ``mlp_classif.*``, ``mlp_offset.*``,
``x_attention_head.*`` (HPH 1024 wide), ``smpl_layer.<name>.bm_x.*`` (smplx SMPL-X layers; the
first one is used). Upstream quirks kept on purpose so official weights give official outputs:
rays built from (row, col) token centres, distance clamped to [0, 50] m, 6D rotations read as
two columns, the mean-pose buffer layout of ``smpl_mean_params.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.model.config import ModelConfig
from lighthmr_ros.model.encoders import DinoV2Encoder
from lighthmr_ros.model.hmr import HMRModel
from lighthmr_ros.model.hph import rotmat_to_rot6d

NUM_ROT = 53  # global orientation, 21 body, 2 x 15 hands, jaw


def teacher_hph_init(
    mean_params: str | Path | None, num_betas: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder start values (pose (53, 6), shape (num_betas,), cam (3,)).

    With upstream's ``smpl_mean_params.npz`` the buffers equal upstream's exactly: its ``pose``
    (24 x 6) fills the first 24 joints and the other 29 get [1, 0, 0, 1, 0, 0]. Without the file
    every joint starts at the identity and the shape at zero (checkpoints overwrite these anyway).
    """
    if mean_params is None:
        pose = rotmat_to_rot6d(torch.eye(3).expand(NUM_ROT, 3, 3))
        return pose, torch.zeros(num_betas), torch.tensor([0.9, 0.0, 0.0])
    path = Path(mean_params).expanduser()
    if path.is_dir():
        path = path / "smpl_mean_params.npz"
    try:
        with np.load(path) as data:
            mean_pose, mean_shape, mean_cam = (np.asarray(data[k], dtype=np.float32) for k in ("pose", "shape", "cam"))
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the mean parameters {path} ({exc}); pass the smpl_mean_params.npz of Multi-HMR"
        ) from exc
    pose = torch.eye(3)[:, :2].reshape(1, 6).repeat(NUM_ROT, 1)
    pose.view(-1)[: mean_pose.size] = torch.from_numpy(mean_pose.reshape(-1))
    return pose, torch.from_numpy(mean_shape.reshape(-1)[:num_betas]), torch.from_numpy(mean_cam.reshape(3))


def _num_betas(layer_name: str, default: int) -> int:
    tail = layer_name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else default


def build_multihmr(
    config: ModelConfig, smplx_model_dir: str | Path | None = None, mean_params: str | Path | None = None
) -> HMRModel:
    """The teacher. SMPL-X needs the user's SMPLX_NEUTRAL.npz (BodyModelError saying where to get it)."""
    from lighthmr_ros.body.smplx_model import SMPLXBody

    if config.body_model != "smplx":
        raise ConfigError(f"Multi-HMR teachers use SMPL-X, not {config.body_model!r}")
    backbone = DinoV2Encoder(config.encoder)
    if backbone.stride != config.token_stride:
        raise ConfigError(f"{config.encoder} has patch {backbone.stride}, config says {config.token_stride}")
    names = config.smpl_layers or ("neutral_10",)
    layers = {
        n: SMPLXBody(smplx_model_dir, num_betas=_num_betas(n, config.num_betas), num_expression=config.num_expression)
        for n in names
    }
    body = layers[names[0]]
    if body.spec.num_pose_joints != NUM_ROT:
        raise ConfigError(f"the SMPL-X body predicts {body.spec.num_pose_joints} rotations, Multi-HMR {NUM_ROT}")
    init = teacher_hph_init(mean_params, body.spec.num_shape)
    return HMRModel(config, backbone, body, init, smpl_layers=layers)
