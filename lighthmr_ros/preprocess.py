"""Image preprocessing shared by inference and training: one RGB rule, one letterbox, one normalisation.

Training and inference must see identical pixels for the same image; both import from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lighthmr_ros.errors import ImageError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Letterbox:
    """Pixel map original -> network: u' = sx u + tx, v' = sy v + ty (pixel centres at integers)."""

    sx: float
    sy: float
    tx: float
    ty: float
    width: int
    height: int

    def to_network(self, uv: np.ndarray) -> np.ndarray:
        return np.asarray(uv, dtype=np.float64) * [self.sx, self.sy] + [self.tx, self.ty]

    def to_original(self, uv: np.ndarray) -> np.ndarray:
        return (np.asarray(uv, dtype=np.float64) - [self.tx, self.ty]) / [self.sx, self.sy]

    def affine(self) -> np.ndarray:
        """(3, 3) homogeneous map original -> network pixels."""
        return np.array([[self.sx, 0.0, self.tx], [0.0, self.sy, self.ty], [0.0, 0.0, 1.0]])

    def map_K(self, K: np.ndarray) -> np.ndarray:
        """The original image's K -> the network square's."""
        return self.affine() @ np.asarray(K, dtype=np.float64)

    def unmap_K(self, K_net: np.ndarray) -> np.ndarray:
        """The network square's K -> the original image's (``map_K`` undone)."""
        return np.linalg.solve(self.affine(), np.asarray(K_net, dtype=np.float64))


def as_rgb(image) -> np.ndarray:
    """HxWx3 uint8 RGB from HxW grayscale, HxWx3 RGB or HxWx4 RGBA (uint8, or float in [0, 1])."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image, got an array of shape {img.shape}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ImageError(f"the image is too small ({img.shape[1]}x{img.shape[0]} pixels)")
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.integer) and img.max(initial=0) <= 255 and img.min(initial=0) >= 0:
            img = img.astype(np.uint8)
        else:
            raise ImageError(
                f"expected uint8 pixels (or floats in [0, 1]), got {img.dtype} with values up to {img.max()}"
            )
    return np.ascontiguousarray(img)


def _letterbox_layout(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left pad, top pad) of a ``width`` x ``height`` image in the square."""
    scale = size / max(height, width)
    nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
    return nw, nh, (size - nw) // 2, (size - nh) // 2


def letterbox_geometry(width: int, height: int, size: int) -> Letterbox:
    """The Letterbox that ``letterbox`` applies to a ``width`` x ``height`` image, without the image."""
    nw, nh, px, py = _letterbox_layout(width, height, size)
    sx, sy = nw / width, nh / height
    # Pixel centres at integers: u' + 0.5 = (u + 0.5) s + pad.
    return Letterbox(sx, sy, 0.5 * (sx - 1.0) + px, 0.5 * (sy - 1.0) + py, width, height)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio so the long side is ``size``, pad (black) to a centred square."""
    h, w = image.shape[:2]
    nw, nh, px, py = _letterbox_layout(w, h, size)
    interp = cv2.INTER_AREA if size / max(h, w) < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[py : py + nh, px : px + nw] = resized
    return out, letterbox_geometry(w, h, size)
