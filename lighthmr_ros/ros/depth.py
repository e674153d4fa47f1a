"""Aligned depth images (sensor_msgs/Image, 16UC1/mono16 millimetres or 32FC1 metres) -> metres.

Why a module of its own: the colour conversions (lighthmr_ros.ros.image) refuse one-channel depth
on purpose, and the depth image must be read with its own byte order and row stride; the fusion
itself (lighthmr_ros.depth_fusion) needs no ROS.
"""
from __future__ import annotations

import numpy as np

from lighthmr_ros.depth_fusion import DEPTH_ENCODINGS, depth_to_metres
from lighthmr_ros.errors import ImageError

_DTYPES = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}


def depth_msg_to_metres(msg) -> np.ndarray:
    """A depth Image -> (H, W) float32 metres, NaN where the sensor gave no reading."""
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise ImageError(f"depth encoding {encoding!r} is not supported: use 16UC1 (millimetres) or 32FC1 (metres).")
    dtype = np.dtype(_DTYPES[encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0 or step < width * dtype.itemsize or len(msg.data) < step * height:
        raise ImageError(f"depth image {width}x{height} (step {step}) does not match its {len(msg.data)} bytes.")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8, count=step * height).reshape(height, step)
    depth = rows[:, : width * dtype.itemsize].copy().view(dtype).reshape(height, width)
    return depth_to_metres(depth.astype(dtype.newbyteorder("=")), encoding)


def depth_to_msg(depth: np.ndarray, header, encoding: str = "16UC1"):
    """(H, W) depth in the encoding's unit (mm for 16UC1, m for 32FC1) -> sensor_msgs/Image (tests, tools)."""
    from sensor_msgs.msg import Image

    if encoding not in _DTYPES:
        raise ImageError(f"depth encoding {encoding!r} is not supported: use 16UC1 or 32FC1.")
    data = np.ascontiguousarray(depth, dtype=np.dtype(_DTYPES[encoding]).newbyteorder("<"))
    msg = Image(header=header, height=data.shape[0], width=data.shape[1], encoding=encoding, is_bigendian=0,
                step=data.shape[1] * data.itemsize)
    msg.data = data.tobytes()
    return msg
