"""sensor_msgs Image / CompressedImage -> HxWx3 uint8 RGB numpy arrays.

Every message is validated before it is touched (size, encoding, ``step`` row padding, data
length), so a malformed message raises ImageError instead of crashing the node or allocating
absurd buffers. cv_bridge is used for the pixel conversion when it imports (a ROS install);
numpy/OpenCV do the same work where it does not (the pip wheels have no cv_bridge).
"""
from __future__ import annotations

import io
import logging

import cv2
import numpy as np

from lighthmr_ros.errors import ImageError

log = logging.getLogger(__name__)

try:  # pragma: no cover - cv_bridge only exists on a full ROS install
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
    _WHY_NO_BRIDGE = ""
except Exception as _exc:  # ImportError, or a cv_bridge built against another numpy (NumPy 2 on Humble)
    _BRIDGE = None
    _WHY_NO_BRIDGE = f"{type(_exc).__name__}: {_exc}".splitlines()[0]
_bridge_failed_once = False


def conversion_path() -> str:
    """Which code converts images here, in one line (the node logs it once at configure)."""
    if _BRIDGE is not None:
        return "cv_bridge"
    return f"numpy/OpenCV (cv_bridge does not import: {_WHY_NO_BRIDGE})"


def _bridge_failed(exc: Exception) -> None:
    """cv_bridge refused a message the numpy path accepts: say so once instead of falling back silently."""
    global _bridge_failed_once
    if not _bridge_failed_once:
        _bridge_failed_once = True
        log.warning("cv_bridge failed (%s: %s); converting with numpy/OpenCV instead", type(exc).__name__, exc)

#: Largest accepted side and pixel count; anything bigger is a corrupt header, not a camera.
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26  # 67 MP: above any camera in use, below a decoding stall

# encoding -> (channels, bytes per channel, layout); layout names how to reach RGB.
_RAW_ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgba"),
    "bgra8": (4, 1, "bgra"),
    "mono8": (1, 1, "mono"),
    "8uc1": (1, 1, "mono"),
    "8uc3": (3, 1, "bgr"),  # OpenCV's default channel order
    "8uc4": (4, 1, "bgra"),
    "mono16": (1, 2, "mono"),
    "16uc1": (1, 2, "mono"),
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgba"),
    "bgra16": (4, 2, "bgra"),
    # 4:2:2 packed YUV, 2 bytes per pixel. ROS "yuv422" is UYVY; "yuv422_yuy2" is YUYV.
    "yuv422": (2, 1, "uyvy"),
    "uyvy": (2, 1, "uyvy"),
    "yuv422_yuy2": (2, 1, "yuyv"),
    "yuyv": (2, 1, "yuyv"),
}

SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def _check_size(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} has size {width}x{height}; publish images with a positive width and height.")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(
            f"{what} claims {width}x{height} pixels, more than this node accepts "
            f"({MAX_SIDE} per side); check the camera driver's header fields."
        )


def image_msg_to_rgb(msg) -> np.ndarray:
    """Convert a sensor_msgs/Image into a contiguous HxWx3 uint8 RGB array (raises ImageError)."""
    encoding = str(msg.encoding).strip().lower()
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, "Image")
    if encoding not in _RAW_ENCODINGS:
        raise ImageError(
            f"Image encoding {msg.encoding!r} is not supported; publish one of {', '.join(SUPPORTED_ENCODINGS)}."
        )
    channels, depth, layout = _RAW_ENCODINGS[encoding]
    if layout in ("uyvy", "yuyv") and width % 2:
        raise ImageError(f"Image in {encoding} has odd width {width}; 4:2:2 YUV needs an even width.")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageError(
            f"Image step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} bytes); "
            "set step to the row length in bytes."
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    least, full = step * (height - 1) + row_bytes, step * height
    if not least <= data.size <= full:
        raise ImageError(
            f"Image data holds {data.size} bytes but {height} rows of step {step} need {full}; "
            "the message is truncated or its width/height/step are wrong."
        )
    if _BRIDGE is not None:  # pragma: no cover - exercised on a full ROS install only
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:
            _bridge_failed(exc)  # fall through to the numpy path, which has been validated above
    if data.size < full:  # last row's padding left out by the driver
        data = np.concatenate([data, np.zeros(full - data.size, np.uint8)])
    rows = data[:full].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        wide = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = (wide >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)
    return _to_rgb(pixels, layout)


def _to_rgb(pixels: np.ndarray, layout: str) -> np.ndarray:
    if layout == "rgb":
        return np.ascontiguousarray(pixels)
    if layout == "bgr":
        return np.ascontiguousarray(pixels[..., ::-1])
    if layout == "rgba":
        return np.ascontiguousarray(pixels[..., :3])
    if layout == "bgra":
        return np.ascontiguousarray(pixels[..., 2::-1])
    if layout == "mono":
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    code = cv2.COLOR_YUV2RGB_UYVY if layout == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def compressed_msg_to_rgb(msg) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png) into HxWx3 uint8 RGB (raises ImageError)."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ImageError(
            f"CompressedImage format {msg.format!r} is a depth image; subscribe to a colour image topic instead."
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError("CompressedImage has no data; check the publisher's image_transport plugin.")
    _check_size(*_compressed_size(data), "CompressedImage")
    if _BRIDGE is not None:  # pragma: no cover - exercised on a full ROS install only
        try:
            return np.ascontiguousarray(_BRIDGE.compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:
            _bridge_failed(exc)
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageError(f"CompressedImage ({msg.format or 'no format'}) could not be decoded as JPEG or PNG.")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    if decoded.ndim == 2:
        return np.ascontiguousarray(np.repeat(decoded[..., None], 3, axis=2))
    if decoded.shape[2] == 4:
        return _to_rgb(decoded, "bgra")
    return _to_rgb(decoded, "bgr")


def _compressed_size(data: np.ndarray) -> tuple[int, int]:
    """(width, height) from the JPEG/PNG header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            if img.format not in ("JPEG", "PNG"):
                raise ImageError(f"CompressedImage holds {img.format} data; publish jpeg or png.")
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"CompressedImage data is not a readable JPEG or PNG ({exc}).") from None


def rgb_to_image_msg(rgb: np.ndarray, header=None):
    """HxWx3 uint8 RGB -> sensor_msgs/Image (rgb8); used for the debug overlay and by tests."""
    from sensor_msgs.msg import Image

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = rgb.tobytes()
    return msg
