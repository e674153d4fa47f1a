"""The body-model interface shared by SMPL-X and Anny.

A body model turns per-joint rotations, shape and expression into vertices and joints in the
body's canonical frame: metres, y up, the body facing +z, no translation, the global
orientation (``rotmats[:, 0]``) applied about the pelvis. Networks predict exactly these
inputs; the camera translation is added by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BodySpec:
    """Sizes and skeleton of a body model.

    num_pose_joints J counts the predicted rotations, global orientation first;
    joint_names / joint_parents describe the K output joints (parent -1 for roots);
    pelvis_index and head_index index the output joints (head = the primary keypoint
    used as the detection centre).
    """

    name: str
    num_pose_joints: int
    num_shape: int
    num_expression: int
    num_vertices: int
    joint_names: tuple[str, ...]
    joint_parents: tuple[int, ...]
    pelvis_index: int
    head_index: int
    pose_joint_names: tuple[str, ...] = ()

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


@dataclass
class BodyOutput:
    """vertices (B, V, 3) and joints (B, K, 3) in the canonical frame."""

    vertices: torch.Tensor
    joints: torch.Tensor


class BodyModel(nn.Module):
    """Base class: ``spec``, a ``faces`` buffer (F, 3), ``forward``, ``mean_shape``, ``rest_pose``.

    Subclasses register their constants as non-persistent buffers so that a network's
    state_dict holds learned weights only (SMPL-X keeps smplx's own keys, ``bm_x.*``,
    because official Multi-HMR checkpoints carry them).
    """

    spec: BodySpec
    faces: torch.Tensor

    def forward(self, rotmats: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor | None = None) -> BodyOutput:
        raise NotImplementedError

    def mean_shape(self) -> torch.Tensor:
        """(S,) the shape the decoder starts from."""
        raise NotImplementedError

    def rest_pose(self) -> torch.Tensor:
        """(J, 3, 3) the rotations the decoder starts from (identity: the model's rest pose)."""
        return torch.eye(3, device=self.faces.device).expand(self.spec.num_pose_joints, 3, 3).clone()

    def _check_inputs(self, rotmats: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor | None):
        spec = self.spec
        if rotmats.dim() != 4 or rotmats.shape[1:] != (spec.num_pose_joints, 3, 3):
            raise ValueError(
                f"{spec.name}: rotmats must be (B, {spec.num_pose_joints}, 3, 3), got {tuple(rotmats.shape)}"
            )
        if shape.dim() != 2 or shape.shape[1] != spec.num_shape:
            raise ValueError(f"{spec.name}: shape must be (B, {spec.num_shape}), got {tuple(shape.shape)}")
        batch = rotmats.shape[0]
        if expression is None:
            expression = rotmats.new_zeros(batch, spec.num_expression)
        if expression.dim() != 2 or expression.shape[1] != spec.num_expression:
            raise ValueError(
                f"{spec.name}: expression must be (B, {spec.num_expression}), got {tuple(expression.shape)}"
            )
        return rotmats, shape, expression

    @staticmethod
    def _full_precision(device: torch.device):
        """Body models run in float32 even inside a caller's autocast (fp16/bf16 blend shapes lose mm)."""
        return torch.autocast(device_type=device.type, enabled=False)

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"name={s.name}, J={s.num_pose_joints}, S={s.num_shape}, E={s.num_expression}, "
            f"V={s.num_vertices}, K={s.num_joints}"
        )
