"""SMPL-X ground-truth meshes as the releases define them (all betas, all 55 rotations).

The network's SMPL-X predicts 10 betas and keeps the eyes at rest (Multi-HMR's output), but BEDLAM's
labels are 11 betas of the neutral model with eye rotations (shared datasets notes, section 3:
neutral SMPL-X, ``num_betas=11``, ``flat_hand_mean=True``, ``use_pca=False``). Rebuilding the GT mesh
with the network's body would drop the 11th beta and the eyes and bias the vertex targets and BEDLAM-val
PVE, so the ground truth is built here with smplx's own SMPL-X from the same model file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from lighthmr_ros.body.base import BodyOutput
from lighthmr_ros.errors import BodyModelError

GT_NUM_BETAS = 11  # BEDLAM (and AGORA kids): the most betas a release annotates
GT_NUM_EXPRESSION = 10


class SMPLXGroundTruth(nn.Module):
    """smplx.SMPLX (neutral, 11 betas, flat hand mean, no PCA) fed the full 55-rotation annotation."""

    def __init__(self, model_file: str | Path):
        super().__init__()
        import smplx

        try:
            self.bm = smplx.SMPLX(
                str(model_file),
                gender="neutral",
                use_pca=False,
                flat_hand_mean=True,
                num_betas=GT_NUM_BETAS,
                num_expression_coeffs=GT_NUM_EXPRESSION,
            )
        except Exception as exc:
            raise BodyModelError(
                f"{model_file} cannot build the SMPL-X ground truth ({type(exc).__name__}: {exc})"
            ) from exc
        selector = self.bm.vertex_joint_selector.extra_joints_idxs
        selector.copy_(
            selector % self.bm.v_template.shape[0]
        )  # a no-op on the real mesh; reduced test meshes

    @torch.no_grad()
    def forward(
        self, rotvec: torch.Tensor, betas: torch.Tensor, expression: torch.Tensor | None = None
    ) -> BodyOutput:
        """rotvec (P,55,3) axis-angle in SMPL-X joint order, betas (P,<=11), expression (P,<=10) -> the
        canonical-frame mesh and the 127 joints in the network body's joint order (no translation)."""
        P = rotvec.shape[0]
        dev = self.bm.v_template.device
        b = torch.zeros(P, GT_NUM_BETAS, device=dev)
        b[:, : min(GT_NUM_BETAS, betas.shape[1])] = betas[:, :GT_NUM_BETAS].float()
        e = torch.zeros(P, GT_NUM_EXPRESSION, device=dev)
        if expression is not None:
            e[:, : min(GT_NUM_EXPRESSION, expression.shape[1])] = expression[:, :GT_NUM_EXPRESSION].float()
        r = rotvec.float().to(dev)
        out = self.bm(
            betas=b,
            expression=e,
            global_orient=r[:, 0],
            body_pose=r[:, 1:22].reshape(P, 63),
            jaw_pose=r[:, 22],
            leye_pose=r[:, 23],
            reye_pose=r[:, 24],
            left_hand_pose=r[:, 25:40].reshape(P, 45),
            right_hand_pose=r[:, 40:55].reshape(P, 45),
        )
        return BodyOutput(vertices=out.vertices, joints=out.joints)


@functools.lru_cache(maxsize=4)
def _cached(model_file: str, device: str) -> SMPLXGroundTruth:
    return SMPLXGroundTruth(model_file).to(device).eval()


def ground_truth_body(body, device: torch.device | str) -> SMPLXGroundTruth | None:
    """The GT SMPL-X for a network body that is SMPL-X (built once per model file and device), else None."""
    model_file = getattr(body, "model_file", None)
    if body.spec.name != "smplx" or model_file is None:
        return None
    return _cached(str(model_file), str(device))


__all__ = ["SMPLXGroundTruth", "ground_truth_body", "GT_NUM_BETAS"]
