"""Image encoders built with timm: both turn (B, 3, S, S) images into tokens (B, N, D) on a grid.

- ``DinoV2Encoder``: the teacher's DINOv2 ViT-S/B/L patch 14. Its ``encoder`` is a timm
  VisionTransformer whose parameter names equal facebookresearch/dinov2's (plus the unused
  ``mask_token``), so upstream ``backbone.encoder.*`` keys load as they are. The position
  embedding is resized the DINOv2 way (bicubic with scale factor (g + 0.1) / 37), which differs
  from timm's own resizing and matters for matching official outputs.
- ``TinyViTEncoder``: the student's TinyViT-5M at any input size that is a multiple of 32;
  tokens come from the stride-32 map or, for ``stride=16``, the stride-16 map fused with the
  upsampled stride-32 map.
"""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lighthmr_ros.errors import ConfigError

DINOV2_TIMM = {
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vitl14": "vit_large_patch14_dinov2",
    "dinov2_vitg14": "vit_giant_patch14_dinov2",
}


class DinoV2Encoder(nn.Module):
    """DINOv2 ViT: tokens of the last block after the final norm, class token dropped."""

    def __init__(self, name: str = "dinov2_vits14", interpolate_offset: float = 0.1):
        super().__init__()
        timm_name = DINOV2_TIMM.get(name, name)
        try:
            self.encoder = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=518)
        except RuntimeError as exc:  # unknown model name
            raise ConfigError(f"unknown DINOv2 encoder {name!r}; use one of {sorted(DINOV2_TIMM)}") from exc
        self.encoder.mask_token = nn.Parameter(torch.zeros(1, self.encoder.embed_dim))  # upstream key, unused
        self.embed_dim = self.encoder.embed_dim
        self.stride = self.encoder.patch_embed.patch_size[0]
        self.interpolate_offset = interpolate_offset

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.encoder.pos_embed
        n = pos.shape[1] - 1
        m = int(math.sqrt(n))
        if gh == m and gw == m:
            return pos
        patch = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
        scale = ((gh + self.interpolate_offset) / m, (gw + self.interpolate_offset) / m)
        patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", antialias=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([pos[:, :1].float(), patch], dim=1).to(pos.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        enc = self.encoder
        gh, gw = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        t = enc.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([enc.cls_token.expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        t = t + self._pos_embed(gh, gw).to(t.dtype)
        for blk in enc.blocks:
            t = blk(t)
        return enc.norm(t)[:, 1:], (gh, gw)


class TinyViTEncoder(nn.Module):
    """TinyViT from timm (random init: no weights can be downloaded here)."""

    def __init__(self, name: str = "tiny_vit_5m_224", stride: int = 32, out_dim: int | None = None):
        super().__init__()
        if stride not in (16, 32):
            raise ConfigError(f"TinyViT token stride must be 16 or 32, not {stride}")
        self.trunk = timm.create_model(name, pretrained=False, num_classes=0)
        self.trunk.head = nn.Identity()
        chans = [info["num_chs"] for info in self.trunk.feature_info]
        self.stride = stride
        in_dim = chans[-1] + (chans[-2] if stride == 16 else 0)
        self.embed_dim = out_dim or in_dim
        self.neck = (
            nn.Sequential(nn.Linear(in_dim, self.embed_dim), nn.LayerNorm(self.embed_dim)) if out_dim else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ConfigError(f"TinyViT input size must be a multiple of 32, got {tuple(x.shape[-2:])}")
        if self.stride == 32:
            feat = self.trunk.forward_features(x)
        else:
            f16, f32 = self.trunk.forward_intermediates(x, indices=[2, 3], intermediates_only=True)
            feat = torch.cat([f16, F.interpolate(f32, size=f16.shape[-2:], mode="nearest")], dim=1)
        gh, gw = feat.shape[-2:]
        return self.neck(feat.flatten(2).transpose(1, 2)), (gh, gw)
