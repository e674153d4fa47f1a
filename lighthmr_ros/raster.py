"""A small z-buffer triangle rasteriser in plain torch (CPU or GPU, no OpenGL).

Why not OpenGL: offscreen GL on a fresh headless machine needs system libraries (OSMesa or EGL)
and a PyOpenGL newer than pyrender allows; this needs nothing beyond torch and renders a few
14k-vertex bodies at 448 px in tens of milliseconds on a CPU.

How: every triangle is tested against the pixel centres of its bounding box, triangles being
grouped by box size so that each group is one batched tensor operation; the nearest triangle of
each pixel wins through a scatter-min on a key that packs the quantised depth above the
triangle index. Barycentric coordinates are then recomputed, perspective-correct, for the
winning triangle only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_FACE_BITS = 24
_DEPTH_SCALE = 1e4  # 0.1 mm depth resolution in the z-buffer key
_CHUNK = 1 << 22  # candidate (triangle, pixel) pairs per batched step


@dataclass
class Fragments:
    """Per-pixel result: face (H, W) long, -1 where empty; bary (H, W, 3); depth (H, W) (inf where empty)."""

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (..., 3) -> pixel coordinates (..., 2) with intrinsics K (3, 3)."""
    z = points[..., 2:3].clamp_min(1e-6)
    uv = points[..., :2] / z
    return uv * torch.stack([K[0, 0], K[1, 1]]) + torch.stack([K[0, 2], K[1, 2]])


def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _barycentric(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Screen-space barycentrics of points (px, py) in triangles tri (..., 3, 3) [u, v, z]."""
    ax, ay = tri[..., 0, 0:1], tri[..., 0, 1:2]
    bx, by = tri[..., 1, 0:1], tri[..., 1, 1:2]
    cx, cy = tri[..., 2, 0:1], tri[..., 2, 1:2]
    area = _edge(ax, ay, bx, by, cx, cy)
    safe = torch.where(area.abs() < 1e-12, torch.ones_like(area), area)
    l0 = _edge(bx, by, cx, cy, px, py) / safe
    l1 = _edge(cx, cy, ax, ay, px, py) / safe
    l2 = 1.0 - l0 - l1
    return l0, l1, l2, area.abs() >= 1e-12


def rasterize(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int, near: float = 0.05,
              cull_back: bool = True) -> Fragments:
    """Rasterise triangles.

    verts (N, 3): pixel u, pixel v, camera depth z (metres); faces (F, 3) long. Pixel (i, j) is
    covered when its centre (j + 0.5, i + 0.5) lies inside a triangle. With ``cull_back``,
    triangles seen from behind are skipped (outward faces wound counter-clockwise, as in Anny
    and SMPL-X; only valid for closed meshes).
    """
    device = verts.device
    verts = verts.float()
    tri = verts[faces]  # F, 3, 3
    keep = (tri[..., 2] > near).all(1)
    if cull_back:
        e1, e2 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
        keep &= (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) <= 0
    lo = tri[..., :2].amin(1)
    hi = tri[..., :2].amax(1)
    x0 = torch.ceil(lo[:, 0] - 0.5).clamp(0, width - 1).long()
    y0 = torch.ceil(lo[:, 1] - 0.5).clamp(0, height - 1).long()
    x1 = torch.floor(hi[:, 0] - 0.5).clamp(-1, width - 1).long()
    y1 = torch.floor(hi[:, 1] - 0.5).clamp(-1, height - 1).long()
    keep &= (x1 >= x0) & (y1 >= y0) & (hi[:, 0] >= 0) & (hi[:, 1] >= 0)
    keep &= (lo[:, 0] < width) & (lo[:, 1] < height)
    face_ids = torch.nonzero(keep).squeeze(1)
    size = torch.maximum(x1 - x0, y1 - y0)[face_ids] + 1
    # group triangles by the power of two that holds their box, one batched step per group
    level = torch.ceil(torch.log2(size.float())).long()
    order = torch.argsort(level)
    face_ids, level = face_ids[order], level[order]
    counts = torch.bincount(level).tolist() if level.numel() else []

    empty = torch.iinfo(torch.int64).max
    zbuf = torch.full((height * width,), empty, dtype=torch.int64, device=device)
    start = 0
    for lvl, n in enumerate(counts):
        if n == 0:
            continue
        bucket = 1 << lvl
        offs = torch.arange(bucket, device=device)
        dy, dx = torch.meshgrid(offs, offs, indexing="ij")
        dx, dy = dx.reshape(1, -1), dy.reshape(1, -1)
        step = max(1, _CHUNK // (bucket * bucket))
        for s in range(start, start + n, step):
            ids = face_ids[s : min(s + step, start + n)]
            px = x0[ids, None] + dx
            py = y0[ids, None] + dy
            t = tri[ids]
            l0, l1, l2, ok = _barycentric(t, px + 0.5, py + 0.5)
            valid = (px <= x1[ids, None]) & (py <= y1[ids, None]) & ok & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            iz = l0 / t[:, 0, 2:3] + l1 / t[:, 1, 2:3] + l2 / t[:, 2, 2:3]
            key = (_DEPTH_SCALE / iz.clamp_min(1e-12)).long().clamp_max((1 << (62 - _FACE_BITS)) - 1)
            key = (key << _FACE_BITS) + ids[:, None]
            pix = (py * width + px)[valid]
            zbuf.scatter_reduce_(0, pix, key[valid], reduce="amin", include_self=True)
        start += n

    hit = zbuf != empty
    face = torch.full((height * width,), -1, dtype=torch.long, device=device)
    face[hit] = zbuf[hit] & ((1 << _FACE_BITS) - 1)
    bary = torch.zeros(height * width, 3, device=device)
    depth = torch.full((height * width,), float("inf"), device=device)
    pix = torch.nonzero(hit).squeeze(1)
    if pix.numel():
        t = verts[faces[face[pix]]]
        px = (pix % width).float()[:, None] + 0.5
        py = (pix // width).float()[:, None] + 0.5
        l0, l1, l2, _ = _barycentric(t, px, py)
        w = torch.cat([l0 / t[:, 0, 2:3], l1 / t[:, 1, 2:3], l2 / t[:, 2, 2:3]], dim=1)
        iz = w.sum(1, keepdim=True)
        bary[pix] = w / iz
        depth[pix] = 1.0 / iz.squeeze(1)
    return Fragments(face.view(height, width), bary.view(height, width, 3), depth.view(height, width))


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (N, 3)."""
    tri = verts[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = torch.zeros_like(verts)
    out.index_add_(0, faces.reshape(-1), n.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(out, dim=1)


def shade(frags: Fragments, verts: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
          light_dir: torch.Tensor, ambient: float = 0.35, diffuse: float = 0.75, specular: float = 0.08):
    """Lambert + a little Blinn-Phong, lights and normals in the camera frame.

    verts (N, 3) camera frame; colors (N, 3) in [0, 1]. Returns rgb (H, W, 3) and the covered mask (H, W).
    """
    mask = frags.face >= 0
    rgb = torch.zeros(*mask.shape, 3, device=verts.device)
    if not mask.any():
        return rgb, mask
    normals = vertex_normals(verts, faces)
    f = faces[frags.face[mask]]
    b = frags.bary[mask][..., None]
    n = torch.nn.functional.normalize((normals[f] * b).sum(1), dim=1)
    p = (verts[f] * b).sum(1)
    view = torch.nn.functional.normalize(-p, dim=1)
    n = torch.where((n * view).sum(1, keepdim=True) < 0, -n, n)  # two-sided
    light = torch.nn.functional.normalize(light_dir.to(verts), dim=0)
    lambert = (n @ light).clamp_min(0)[:, None]
    half = torch.nn.functional.normalize(view + light, dim=1)
    spec = (n * half).sum(1).clamp_min(0).pow(24)[:, None]
    albedo = (colors[f] * b).sum(1)
    rgb[mask] = (albedo * (ambient + diffuse * lambert) + specular * spec).clamp(0, 1)
    return rgb, mask
