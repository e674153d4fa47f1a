"""Backgrounds from the real photos and textures that ship inside installed packages.

Sources: scikit-image's bundled sample images and matplotlib's sample data, read from the
packages' folders (no download). Images with people in them (astronaut, camera man, Grace
Hopper, the face sets) are left out so that no unlabeled person ends up in a scene. Without
either package, procedural textures (noise, stripes, checkers) are used.

Two layouts: a photo filling the frame, or a "room": a textured floor (y = 0, where the people
stand) and a textured back wall, ray-cast through the scene's camera so that their perspective
matches the people's.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SKIMAGE_FILES = (
    "brick.png", "grass.png", "gravel.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "color.png", "chessboard_RGB.png", "coins.png",
    "moon.png", "page.png", "text.png", "clock_motion.png", "retina.jpg", "ihc.png", "cell.png",
)
FLOOR_FILES = ("brick.png", "grass.png", "gravel.png", "coins.png", "moon.png", "chessboard_RGB.png",
               "page.png")
MATPLOTLIB_FILES = ("Minduka_Present_Blue_Pack.png",)


def _package_dir(module: str, sub: str) -> Path | None:
    try:
        mod = __import__(module, fromlist=["__file__"])
    except ImportError:
        return None
    return Path(mod.__file__).parent / sub


@functools.lru_cache(maxsize=1)
def load_textures() -> dict[str, np.ndarray]:
    """name -> HxWx3 uint8 image, read once per process."""
    from PIL import Image

    found: dict[str, np.ndarray] = {}
    folders = [(_package_dir("skimage.data", ""), SKIMAGE_FILES),
               (_package_dir("matplotlib", "mpl-data/sample_data"), MATPLOTLIB_FILES)]
    for folder, names in folders:
        if folder is None:
            continue
        for name in names:
            path = folder / name
            if path.is_file():
                found[name] = np.asarray(Image.open(path).convert("RGB"))
    if not found:
        log.warning("no sample images found (install scikit-image and matplotlib): "
                    "procedural backgrounds only")
    return found


def procedural_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Smooth colour noise, stripes or checkers (HxWx3 uint8)."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.2, 0.9, 3)
    other = rng.uniform(0.1, 0.9, 3)
    if kind == 0:
        noise = rng.normal(size=(8, 8, 3))
        t = torch.nn.functional.interpolate(torch.tensor(noise).permute(2, 0, 1)[None], size=(size, size),
                                            mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
        img = base + 0.15 * t
    elif kind == 1:
        freq = rng.uniform(4, 20)
        s = (np.sin(2 * np.pi * freq * (xx * np.cos(rng.uniform(0, np.pi)) + yy)) > 0)[..., None]
        img = np.where(s, base, other)
    else:
        n = rng.integers(2, 10)
        c = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
        img = np.where(c > 0, base, other)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _pick(rng: np.random.Generator, names: tuple[str, ...] | None = None) -> np.ndarray:
    textures = load_textures()
    pool = [n for n in (names or tuple(textures)) if n in textures]
    if not pool or rng.random() < 0.15:
        return procedural_texture(rng)
    img = textures[pool[rng.integers(len(pool))]]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if img.std(axis=2).mean() < 1.0:  # grey image: tint it
        img = img * rng.uniform(0.6, 1.0, 3)
    return np.ascontiguousarray(img).astype(np.uint8)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255)[None]


def photo_background(rng: np.random.Generator, width: int, height: int) -> torch.Tensor:
    """A random crop of a photo covering the frame: (H, W, 3) float in [0, 1]."""
    img = _to_tensor(_pick(rng))
    h, w = img.shape[-2:]
    scale = max(width / w, height / h) * rng.uniform(1.0, 1.8)
    img = F.interpolate(img, size=(max(height, round(h * scale)), max(width, round(w * scale))),
                        mode="bilinear", align_corners=False)
    y0 = rng.integers(0, img.shape[-2] - height + 1)
    x0 = rng.integers(0, img.shape[-1] - width + 1)
    return img[0, :, y0 : y0 + height, x0 : x0 + width].permute(1, 2, 0)


def _sample_tiled(tex: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of a (1,3,h,w) texture at mirrored-repeat coordinates u, v (texture units)."""
    def mirror(t):
        t = torch.remainder(t, 2.0)
        return torch.where(t > 1, 2 - t, t)

    grid = torch.stack([mirror(u) * 2 - 1, mirror(v) * 2 - 1], dim=-1)[None]
    return F.grid_sample(tex, grid.float(), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


def room_background(rng: np.random.Generator, width: int, height: int, K: np.ndarray, R_wc: np.ndarray,
                    cam_center: np.ndarray, people_ground: list[tuple[float, float]] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Floor (y = 0) and back wall (z = wall distance) seen by the camera: rgb (H, W, 3) in [0, 1]
    and depth (H, W) in metres along the optical axis (0 where the sky shows: nothing to measure).

    R_wc maps world to camera axes; the camera sits at cam_center (world, y up). Soft contact
    shadows darken the floor under the people standing at people_ground (x, z) positions.
    """
    floor = _to_tensor(_pick(rng, FLOOR_FILES))
    wall = _to_tensor(_pick(rng))
    floor_tile = rng.uniform(0.8, 3.0)
    wall_w = rng.uniform(3.0, 8.0)
    wall_dist = cam_center[2] + rng.uniform(6.0, 16.0)
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    K_inv = torch.tensor(np.linalg.inv(K), dtype=torch.float32)
    rays_c = torch.stack([u, v, torch.ones_like(u)], -1) @ K_inv.T
    rays = rays_c @ torch.tensor(R_wc, dtype=torch.float32)  # camera -> world: R_wc^T d, as row vectors
    c = torch.tensor(cam_center, dtype=torch.float32)
    big = torch.full_like(u, 1e9)
    t_floor = torch.where(rays[..., 1] < -1e-6, -c[1] / rays[..., 1].clamp(max=-1e-6), big)
    t_wall = torch.where(rays[..., 2] > 1e-6, (wall_dist - c[2]) / rays[..., 2].clamp(min=1e-6), big)
    hit = c + rays * torch.minimum(t_floor, t_wall)[..., None]
    floor_rgb = _sample_tiled(floor, hit[..., 0] / floor_tile, hit[..., 2] / floor_tile)
    wall_h = wall_w * wall.shape[-2] / wall.shape[-1]
    wall_rgb = _sample_tiled(wall, hit[..., 0] / wall_w + 0.5, -hit[..., 1] / wall_h)
    sky = torch.tensor(rng.uniform(0.5, 0.95, 3)).float().expand(height, width, 3)
    out = torch.where((t_floor <= t_wall)[..., None], floor_rgb, wall_rgb)
    out = torch.where((torch.minimum(t_floor, t_wall) >= 1e9)[..., None], sky, out)
    shade = torch.ones(height, width)
    on_floor = t_floor <= t_wall
    for x, z in people_ground or []:
        d2 = (hit[..., 0] - x) ** 2 + (hit[..., 2] - z) ** 2
        shade = shade * torch.where(on_floor, 1 - 0.45 * torch.exp(-d2 / (2 * 0.28**2)), torch.ones_like(d2))
    fog = torch.exp(-torch.minimum(t_floor, t_wall).clamp(max=60) / rng.uniform(25, 80))[..., None]
    out = out * shade[..., None].float() * fog.float() + (1 - fog.float()) * 0.7
    # rays_c has unit z, so the ray parameter t of a hit is its depth along the optical axis
    nearest = torch.minimum(t_floor, t_wall)
    depth = torch.where(nearest < 1e9, nearest, torch.zeros_like(nearest))
    return out.clamp(0, 1).float(), depth.float()
