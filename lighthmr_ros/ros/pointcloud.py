"""All people of one image as ONE sensor_msgs/PointCloud2 (fields x, y, z float32 and id uint32).

Why: costmaps, obstacle layers and octomaps take point clouds, not meshes; one cloud per image
(not one per person) is one message per frame for them to mark and clear. Points are the mesh
vertices thinned by a voxel grid per person (one point, the mean, per ``voxel_m`` cube), so
density is even whatever the distance, and ``id`` is the person's track id (0 when untracked),
letting a consumer drop or colour people. The cloud is in the image's optical frame, in metres.

The message is built from one numpy buffer (one copy); sensor_msgs_py's ``create_cloud`` is
used where it imports (a ROS install), numpy otherwise; both give the same bytes.
"""
from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("id", "<u4")])


def cloud_fields() -> list[PointField]:
    """The four fields of the cloud, little-endian, 16 bytes a point."""
    return [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
        PointField(name="id", offset=12, datatype=PointField.UINT32, count=1),
    ]


def voxel_downsample(points: np.ndarray, voxel_m: float) -> np.ndarray:
    """The mean point of each occupied ``voxel_m`` cube (all points when voxel_m is 0)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if voxel_m <= 0 or len(points) == 0:
        return points
    keys = np.floor(points / voxel_m).astype(np.int64)
    keys -= keys.min(0)
    dims = keys.max(0) + 1
    linear = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]  # one int per voxel: a 1-D unique
    _, cell, counts = np.unique(linear, return_inverse=True, return_counts=True)
    cell = cell.reshape(-1)
    sums = np.stack([np.bincount(cell, weights=points[:, i], minlength=len(counts)) for i in range(3)], 1)
    return sums / counts[:, None]


def people_points(humans: Sequence[Human], voxel_m: float = 0.05) -> np.ndarray:
    """Structured (N,) array of POINT_DTYPE: every person's thinned vertices with its track id."""
    if not (np.isfinite(voxel_m) and voxel_m >= 0):
        raise ConfigError(f"the point cloud voxel size must be >= 0 metres, got {voxel_m}.")
    parts = []
    for human in humans:
        if human.vertices is None:
            continue
        xyz = voxel_downsample(human.vertices, voxel_m)
        part = np.empty(len(xyz), POINT_DTYPE)
        part["x"], part["y"], part["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        part["id"] = int(human.id) & 0xFFFFFFFF
        parts.append(part)
    return np.concatenate(parts) if parts else np.empty(0, POINT_DTYPE)


def _cloud_numpy(header, points: np.ndarray) -> PointCloud2:
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, len(points)
    msg.fields = cloud_fields()
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = POINT_DTYPE.itemsize * len(points)
    msg.data = array("B", points.tobytes())
    msg.is_dense = True
    return msg


def people_cloud(humans: Sequence[Human], header, voxel_m: float = 0.05) -> PointCloud2:
    """One PointCloud2 with all people's (thinned) vertices, in ``header.frame_id`` at ``header.stamp``."""
    points = people_points(humans, voxel_m)
    try:
        from sensor_msgs_py.point_cloud2 import create_cloud
    except ImportError:
        return _cloud_numpy(header, points)
    if sys.byteorder != "little":  # create_cloud writes native order; the fields say little-endian
        return _cloud_numpy(header, points)
    msg = create_cloud(header, cloud_fields(), points)
    msg.is_dense = True
    return msg


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    """A cloud made by ``people_cloud`` -> structured (N,) array of POINT_DTYPE (for consumers and tests)."""
    names = [(f.name, f.offset, f.datatype) for f in msg.fields]
    expected = [(f.name, f.offset, f.datatype) for f in cloud_fields()]
    if names != expected or msg.point_step != POINT_DTYPE.itemsize or msg.is_bigendian:
        raise ImageError(f"not a lighthmr people cloud (fields {names}, point_step {msg.point_step}).")
    return np.frombuffer(bytes(msg.data), dtype=POINT_DTYPE, count=msg.width * msg.height)
