"""Camera intrinsics from sensor_msgs/CameraInfo, scaled to the image actually received.

Drivers often publish CameraInfo for the full sensor while the image is resized (image_proc
resize, binning, a compressed preview), so K is rescaled from the CameraInfo size (or its ROI)
to the image size. Invalid calibrations (K[0] <= 0, NaN, zero focal length) give None so the
caller falls back to a field-of-view guess.
"""
from __future__ import annotations

import numpy as np


def k_from_camera_info(info, width: int, height: int) -> np.ndarray | None:
    """3x3 K of ``info`` scaled to a ``width`` x ``height`` image; None when the calibration is unusable."""
    if info is None:
        return None
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0.0 or k[4] <= 0.0:
        return None
    k = k.reshape(3, 3).copy()
    if k[2, 2] != 1.0:
        if k[2, 2] <= 0.0:
            return None
        k /= k[2, 2]
    ref_w, ref_h = int(info.width), int(info.height)
    roi = getattr(info, "roi", None)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0 and (
        int(roi.width), int(roi.height)) != (ref_w, ref_h):
        # The image is a crop of the calibrated sensor: move the principal point into the crop.
        k[0, 2] -= int(roi.x_offset)
        k[1, 2] -= int(roi.y_offset)
        ref_w, ref_h = int(roi.width), int(roi.height)
    if ref_w > 0 and ref_h > 0 and (ref_w, ref_h) != (width, height):
        sx, sy = width / ref_w, height / ref_h
        k[0, :] *= sx
        k[1, :] *= sy
    return k
