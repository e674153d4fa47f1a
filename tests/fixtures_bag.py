"""Bags for the bag tests, written with the rosbags library only (its own typestores, no project code).

`write_camera_bag` records what a camera driver would: Image or CompressedImage frames of a real
photo with people (scikit-image's astronaut), optionally CameraInfo, plus an unrelated topic.
Header stamps differ from log times on purpose, so tests can tell which one was copied where.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

IMAGE_TOPIC = "/cam/image"
CAMERA_INFO_TOPIC = "/cam/camera_info"
CHATTER_TOPIC = "/chatter"
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz
HEADER_LAG_NS = 7_000_000  # header stamp = log time - 7 ms (capture before recording)


@dataclass
class RecordedBag:
    path: Path
    image_topic: str
    log_times: list[int] = field(default_factory=list)  # ns, per image
    header_stamps: list[tuple[int, int]] = field(default_factory=list)  # (sec, nanosec), per image
    size: tuple[int, int] = (0, 0)  # width, height
    topics: dict[str, int] = field(default_factory=dict)  # message counts


def camera_frame(width: int = 160, height: int = 120, index: int = 0) -> np.ndarray:
    """RGB uint8 frame: the astronaut photo resized, shifted a little per frame."""
    from skimage.data import astronaut

    rgb = cv2.resize(astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.roll(rgb, 2 * index, axis=1))


def write_camera_bag(
    path: Path,
    *,
    storage: str = "sqlite3",
    compressed: bool = False,
    camera_info: bool = True,
    frames: int = 3,
    width: int = 160,
    height: int = 120,
    topic: str = IMAGE_TOPIC,
    chatter: bool = True,
    version: int = 9,
) -> RecordedBag:
    """A rosbag2 folder as `ros2 bag record` would make it (rosbags Writer + Jazzy typestore)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    Image, CompressedImage = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    CameraInfo, Roi = ts.types["sensor_msgs/msg/CameraInfo"], ts.types["sensor_msgs/msg/RegionOfInterest"]
    String = ts.types["std_msgs/msg/String"]

    image_topic = topic + "/compressed" if compressed else topic
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    bag = RecordedBag(path=path, image_topic=image_topic, size=(width, height))
    with Writer(path, version=version, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        images = writer.add_connection(image_topic, image_type, typestore=ts)
        info_conn = (writer.add_connection(CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=ts)
                     if camera_info else None)
        chat = writer.add_connection(CHATTER_TOPIC, "std_msgs/msg/String", typestore=ts) if chatter else None
        f = 0.9 * width
        k = np.array([f, 0, width / 2, 0, f, height / 2, 0, 0, 1], dtype=np.float64)
        for i in range(frames):
            log_time = START_NS + i * PERIOD_NS
            stamp_ns = log_time - HEADER_LAG_NS
            header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam_optical")
            rgb = camera_frame(width, height, i)
            if info_conn is not None:  # drivers publish CameraInfo with the image, logged just after it
                info = CameraInfo(
                    header=header, height=height, width=width, distortion_model="plumb_bob",
                    d=np.zeros(5), k=k, r=np.eye(3).reshape(-1),
                    p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], 1).reshape(-1),
                    binning_x=0, binning_y=0, roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
                )
                writer.write(info_conn, log_time + 1000, ts.serialize_cdr(info, info.__msgtype__))
            if compressed:
                ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1])
                assert ok
                msg = CompressedImage(header=header, format="rgb8; jpeg compressed bgr8", data=jpeg.reshape(-1))
            else:
                msg = Image(
                    header=header, height=height, width=width, encoding="rgb8", is_bigendian=0,
                    step=width * 3, data=rgb.reshape(-1),
                )
            writer.write(images, log_time, ts.serialize_cdr(msg, msg.__msgtype__))
            bag.log_times.append(log_time)
            bag.header_stamps.append((stamp_ns // 10**9, stamp_ns % 10**9))
            if chat is not None:
                chatter = ts.serialize_cdr(String(data=f"hello {i}"), "std_msgs/msg/String")
                writer.write(chat, log_time + 50_000_000, chatter)
    bag.topics = {image_topic: frames}
    if camera_info:
        bag.topics[CAMERA_INFO_TOPIC] = frames
    if chatter:
        bag.topics[CHATTER_TOPIC] = frames
    return bag


def write_ros1_camera_bag(path: Path, *, frames: int = 2, width: int = 160, height: int = 120) -> RecordedBag:
    """A ROS 1 .bag with sensor_msgs/Image and CameraInfo (rosbags' rosbag1 Writer, Noetic typestore)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    Image, CameraInfo = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CameraInfo"]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    bag = RecordedBag(path=path, image_topic=IMAGE_TOPIC, size=(width, height))
    with Writer(path) as writer:
        images = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        infos = writer.add_connection(CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=ts)
        f = 0.9 * width
        k = np.array([f, 0, width / 2, 0, f, height / 2, 0, 0, 1], dtype=np.float64)
        for i in range(frames):
            log_time = START_NS + i * PERIOD_NS
            stamp_ns = log_time - HEADER_LAG_NS
            header = Header(seq=i, stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam_optical")
            info = CameraInfo(
                header=header, height=height, width=width, distortion_model="plumb_bob", D=np.zeros(5), K=k,
                R=np.eye(3).reshape(-1), P=np.zeros(12), binning_x=0, binning_y=0,
                roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
            )
            writer.write(infos, log_time, ts.serialize_ros1(info, info.__msgtype__))
            rgb = camera_frame(width, height, i)
            msg = Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                        data=rgb.reshape(-1))
            writer.write(images, log_time + 1000, ts.serialize_ros1(msg, msg.__msgtype__))
            bag.log_times.append(log_time + 1000)
            bag.header_stamps.append((stamp_ns // 10**9, stamp_ns % 10**9))
    bag.topics = {IMAGE_TOPIC: frames, CAMERA_INFO_TOPIC: frames}
    return bag


@pytest.fixture
def camera_bag(tmp_path) -> RecordedBag:
    """A small sqlite3 rosbag2 with raw images, CameraInfo and a String topic."""
    return write_camera_bag(tmp_path / "in_bag")


@pytest.fixture(scope="session")
def bag_predictor(anny_body):
    """A real Predictor for the bag tests: the untrained student at 224 px on the CPU (fast, real outputs)."""
    from lighthmr_ros.inference import Predictor

    return Predictor(config="lighthmr_tinyvit5m", body_model=anny_body, device="cpu", image_size=224)
