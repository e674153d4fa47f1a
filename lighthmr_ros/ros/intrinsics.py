"""Camera intrinsics from sensor_msgs/CameraInfo, for the image actually received.

Which matrix: a rectified image (``image_rect*`` topics, image_proc's output) is an ideal pinhole
image whose intrinsics are P[:3, :3], which may differ from K (rectification rescales and recentres);
a raw image is described by K plus the distortion D. The network assumes a pinhole camera, so a raw
image with non-zero D is undistorted onto K first (one cv2.remap per frame, the maps cached) and the
2D outputs are distorted back into the raw image's pixels.

Size: drivers often publish CameraInfo for the full sensor while the image is resized (image_proc
resize, binning, a compressed preview), so the matrix is rescaled from the CameraInfo size (or its
ROI) to the image size; D is in normalised coordinates and does not change. Unusable calibrations
(non-positive or NaN focal length) give None so the caller falls back to a field-of-view guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: distortion_model values OpenCV undistorts (plumb_bob: 5 coefficients, rational_polynomial: 8).
PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)


@dataclass(frozen=True)
class CameraModel:
    """The pinhole intrinsics the network gets and how the received image departs from them.

    k: 3x3 intrinsics in the received image's pixels. d: distortion of the received image (empty
    when it is rectified or undistorted). source: "P" (rectified) or "K" (raw).
    """

    k: np.ndarray
    d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = ""
    source: str = "K"

    @property
    def distorted(self) -> bool:
        return self.d.size > 0 and bool(np.any(self.d != 0.0))


def _matrix(values, size: int) -> np.ndarray | None:
    m = np.asarray(values, dtype=np.float64).reshape(-1)
    if m.size != size or not np.all(np.isfinite(m)):
        return None
    return m


def _scaled(k: np.ndarray, info, width: int, height: int) -> np.ndarray | None:
    """``k`` normalised (k[2,2] = 1) and moved into the ROI and the received image size; None if unusable."""
    if k[0, 0] <= 0.0 or k[1, 1] <= 0.0 or k[2, 2] <= 0.0:
        return None
    k = k / k[2, 2]
    ref_w, ref_h = int(info.width), int(info.height)
    roi = getattr(info, "roi", None)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0 and (
            int(roi.width), int(roi.height)) != (ref_w, ref_h):
        # The image is a crop of the calibrated sensor: move the principal point into the crop.
        k[0, 2] -= int(roi.x_offset)
        k[1, 2] -= int(roi.y_offset)
        ref_w, ref_h = int(roi.width), int(roi.height)
    if ref_w > 0 and ref_h > 0 and (ref_w, ref_h) != (width, height):
        k[0, :] *= width / ref_w
        k[1, :] *= height / ref_h
    return k


def camera_model(info, width: int, height: int, rectified: bool = False) -> CameraModel | None:
    """The CameraModel of a ``width`` x ``height`` image described by ``info``; None when unusable.

    rectified: the image was rectified (P describes it; D is already applied). A rectified image
    whose P is unset (all zero, as uncalibrated drivers publish) falls back to K.
    """
    if info is None:
        return None
    if rectified:
        p = _matrix(info.p, 12)
        if p is not None and p[0] > 0.0:
            k = _scaled(p.reshape(3, 4)[:, :3].copy(), info, width, height)
            return CameraModel(k, source="P") if k is not None else None
    k = _matrix(info.k, 9)
    if k is None:
        return None
    k = _scaled(k.reshape(3, 3).copy(), info, width, height)
    if k is None:
        return None
    if rectified:
        return CameraModel(k)
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)) or not np.any(d != 0.0):
        return CameraModel(k)
    return CameraModel(k, d.copy(), str(info.distortion_model))


def k_from_camera_info(info, width: int, height: int) -> np.ndarray | None:
    """3x3 K of ``info`` scaled to a ``width`` x ``height`` image; None when the calibration is unusable."""
    model = camera_model(info, width, height)
    return None if model is None else model.k


def supported(model: CameraModel) -> bool:
    """Whether the image of ``model`` can be undistorted here (no distortion, or a known model)."""
    return not model.distorted or model.distortion_model in PINHOLE_MODELS + FISHEYE_MODELS


class Undistorter:
    """Undistorts raw images onto their own K and distorts 2D points back; remap tables are cached."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._maps: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))

    def image(self, rgb: np.ndarray, model: CameraModel) -> np.ndarray:
        """``rgb`` as a pinhole camera with intrinsics ``model.k`` would see it (unchanged if undistorted)."""
        if not model.distorted:
            return rgb
        height, width = rgb.shape[:2]
        key = (width, height, model.k.tobytes(), model.d.tobytes(), model.distortion_model)
        if key != self._key:
            if model.distortion_model in FISHEYE_MODELS:
                maps = cv2.fisheye.initUndistortRectifyMap(
                    model.k, model.d[:4], np.eye(3), model.k, (width, height), cv2.CV_16SC2)
            else:
                maps = cv2.initUndistortRectifyMap(model.k, model.d, np.eye(3), model.k, (width, height),
                                                   cv2.CV_16SC2)
            self._key, self._maps = key, maps
        return cv2.remap(rgb, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def distort_points(points: np.ndarray, model: CameraModel) -> np.ndarray:
    """Pixels (..., 2) of the undistorted image -> the same rays' pixels in the raw (distorted) image."""
    points = np.asarray(points, dtype=np.float64)
    if not model.distorted or points.size == 0:
        return points
    flat = points.reshape(-1, 2)
    k = model.k
    normalised = np.stack([(flat[:, 0] - k[0, 2]) / k[0, 0], (flat[:, 1] - k[1, 2]) / k[1, 1]], axis=1)
    if model.distortion_model in FISHEYE_MODELS:
        raw = cv2.fisheye.distortPoints(normalised[:, None, :], k, model.d[:4]).reshape(-1, 2)
    else:
        rays = np.concatenate([normalised, np.ones((len(flat), 1))], axis=1)
        raw, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k, model.d)
        raw = raw.reshape(-1, 2)
    return raw.reshape(points.shape)
