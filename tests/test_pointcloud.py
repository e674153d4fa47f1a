"""All people as one PointCloud2 (x, y, z float32, id uint32) in the optical frame."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.ros.pointcloud import cloud_to_points, people_cloud, people_points, voxel_downsample


def _human(track: int, vertices) -> Human:
    return Human(id=track, score=0.9, center_2d=np.zeros(2), translation=np.zeros(3), pose=np.zeros((1, 3)),
                 shape=np.zeros(6), expression=np.zeros(0), joints=np.zeros((1, 3)),
                 joints_2d=np.zeros((1, 2)), vertices=vertices)


def _people():
    rng = np.random.default_rng(0)
    a = (rng.normal(0, 0.2, (3000, 3)) + [0.5, 0.0, 3.0]).astype(np.float32)
    b = (rng.normal(0, 0.2, (2000, 3)) + [-1.0, 0.2, 5.0]).astype(np.float32)
    return [_human(4, a), _human(9, b), _human(11, None)]


def test_round_trip_through_dds_serialisation():
    people = _people()
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 42
    msg = people_cloud(people, header, voxel_m=0.0)
    assert msg.header.frame_id == "camera_optical_frame" and msg.header.stamp.sec == 42
    assert [f.name for f in msg.fields] == ["x", "y", "z", "id"] and msg.point_step == 16
    assert msg.width == 5000 and msg.height == 1 and msg.row_step == 16 * 5000 and not msg.is_bigendian
    back = deserialize_message(serialize_message(msg), PointCloud2)  # the bytes a subscriber gets
    points = cloud_to_points(back)
    xyz = np.stack([points["x"], points["y"], points["z"]], 1)
    np.testing.assert_array_equal(xyz, np.concatenate([people[0].vertices, people[1].vertices]))
    np.testing.assert_array_equal(np.unique(points["id"], return_counts=True)[1], [3000, 2000])
    assert set(points["id"].tolist()) == {4, 9}  # a person without vertices adds no points


def test_voxel_grid_thins_evenly_and_keeps_the_shape():
    people = _people()
    points = people_points(people, voxel_m=0.1)
    assert 0 < len(points) < 2500
    for person in people[:2]:
        mine = points[points["id"] == person.id]
        xyz = np.stack([mine["x"], mine["y"], mine["z"]], 1)
        # every vertex has a cloud point within a voxel diagonal, and the centroid is kept
        d = np.linalg.norm(person.vertices[::10, None] - xyz[None], axis=-1).min(1)
        assert d.max() < 0.1 * np.sqrt(3)
        one = voxel_downsample(person.vertices, 0.1)
        np.testing.assert_allclose(len(one), len(xyz))
    grid = np.array([[0.01, 0.01, 0.01], [0.02, 0.03, 0.04], [0.51, 0.0, 0.0]])
    np.testing.assert_allclose(voxel_downsample(grid, 0.1), [[0.015, 0.02, 0.025], [0.51, 0.0, 0.0]])


def test_empty_cloud_and_bad_input():
    msg = people_cloud([], Header(frame_id="cam"))
    assert msg.width == 0 and len(cloud_to_points(msg)) == 0
    with pytest.raises(ConfigError, match="voxel size"):
        people_points(_people(), voxel_m=-1.0)
    other = PointCloud2()
    with pytest.raises(ImageError, match="not a lighthmr people cloud"):
        cloud_to_points(other)


def test_sensor_msgs_py_reads_the_cloud():
    point_cloud2 = pytest.importorskip("sensor_msgs_py.point_cloud2",
                                       reason="sensor_msgs_py comes with a ROS install")
    msg = people_cloud(_people(), Header(frame_id="cam"), voxel_m=0.0)
    points = point_cloud2.read_points_numpy(msg, field_names=("x", "y", "z"))
    assert points.shape == (5000, 3)
