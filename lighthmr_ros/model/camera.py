"""Camera geometry for the single-shot model: token rays, Fourier ray embedding, (inverse) projection.

Every token gets the viewing direction of its centre, K^-1 [u, v, 1], so the network knows the
camera's field of view and principal point; the Fourier encoding makes that direction easy to use.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def fourier_features(pos: torch.Tensor, num_bands: int, max_resolution: int) -> torch.Tensor:
    """(..., n) -> (..., n + 2 n num_bands): [pos, sin(pi f pos), cos(pi f pos)], f linear in [1, res/2]."""
    freqs = torch.linspace(1.0, max_resolution / 2, num_bands, device=pos.device, dtype=pos.dtype)
    scaled = (pos[..., :, None] * freqs).flatten(-2)  # (..., n * bands), grouped per coordinate
    return torch.cat([pos, torch.sin(math.pi * scaled), torch.cos(math.pi * scaled)], dim=-1)


class CameraEmbedding(nn.Module):
    """Fourier encoding of per-token rays; holds no weights (nothing to load or train)."""

    def __init__(self, num_bands: int = 16, max_resolution: int = 64):
        super().__init__()
        self.num_bands = num_bands
        self.max_resolution = max_resolution

    @property
    def channels(self) -> int:
        return 3 + 2 * 3 * self.num_bands

    def forward(self, rays: torch.Tensor) -> torch.Tensor:
        return fourier_features(rays, self.num_bands, self.max_resolution)


def token_centres(grid_h: int, grid_w: int, stride: int, device=None, row_first: bool = False) -> torch.Tensor:
    """(h*w, 2) pixel centres of the token cells in raster order, as (x, y) = (col, row).

    ``row_first=True`` reproduces Multi-HMR's quirk: the points are (row, col) yet used as (x, y),
    so its rays swap the two image axes (see shared/reference README). Official weights need it.
    """
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, device=device).repeat(grid_h)
    pts = torch.stack([rows, cols] if row_first else [cols, rows], dim=-1).float()
    return pts * stride + stride // 2


def unproject(points: torch.Tensor, K: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, 2) pixels -> (B, N, 3) K^-1 [u, v, 1] (times depth (B, N, 1) when given: z == depth)."""
    homog = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    rays = homog @ torch.linalg.inv(K.float()).to(points.dtype).transpose(-1, -2)
    return rays if depth is None else rays * depth


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) camera-frame points -> (B, N, 2) pixels."""
    y = points / points[..., 2:3]
    return (y @ K.transpose(-1, -2))[..., :2]


def focal_from_fov(fov_deg: float, size: float) -> float:
    """Focal length in pixels giving a field of view of ``fov_deg`` across ``size`` pixels."""
    return size / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def fov_from_K(K, width: int, height: int) -> float:
    """Field of view (degrees) of K across the larger side of a ``width`` x ``height`` image."""
    return float(math.degrees(2.0 * math.atan(max(width, height) / (2.0 * float(K[0][0])))))


def default_K(width: int, height: int, fov_deg: float = 60.0) -> torch.Tensor:
    """Pinhole K with ``fov_deg`` across the larger image side and the principal point at the centre."""
    f = focal_from_fov(fov_deg, max(width, height))
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
