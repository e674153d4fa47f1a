"""Bag plumbing without the model: reading any bag, topic choice, output staging and safety."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fixtures_bag import CAMERA_INFO_TOPIC, CHATTER_TOPIC, IMAGE_TOPIC, write_camera_bag, write_ros1_camera_bag

from lighthmr_ros.bag.reading import CdrConverter, connections_of, iter_messages, open_bag, select_topics
from lighthmr_ros.bag.writing import (
    HUMANS_TYPE,
    MARKERS_TYPE,
    TOPOLOGY_TYPE,
    StagedOutput,
    check_output,
    message_definition,
)
from lighthmr_ros.errors import BagError


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_select_topics_follows_the_bag(tmp_path, storage, compressed):
    bag = write_camera_bag(tmp_path / "in", storage=storage, compressed=compressed, frames=2)
    reader = open_bag(bag.path)
    try:
        sel = select_topics(reader, IMAGE_TOPIC)  # the user names the camera, auto finds /compressed
        assert sel.image == bag.image_topic and sel.compressed == compressed
        assert sel.camera_info == CAMERA_INFO_TOPIC
        assert set(sel.copy) == set(bag.topics)
        assert select_topics(reader, IMAGE_TOPIC, copy_topics="none").copy == ()
        assert select_topics(reader, IMAGE_TOPIC, camera_info_topic="none").camera_info is None
        assert select_topics(reader, IMAGE_TOPIC, copy_topics=f"{CHATTER_TOPIC}").copy == (CHATTER_TOPIC,)
        with pytest.raises(BagError, match="compressed=" + ("false" if compressed else "true")):
            select_topics(reader, bag.image_topic, compressed=not compressed)
    finally:
        reader.close()
    # the storage file alone, without metadata.yaml, reads the same
    (storage_file,) = [p for p in bag.path.iterdir() if p.name != "metadata.yaml"]
    reader = open_bag(storage_file)
    try:
        assert select_topics(reader, IMAGE_TOPIC).image == bag.image_topic
        assert sum(1 for _ in iter_messages(reader, reader.connections)) == 2 * len(bag.topics)
    finally:
        reader.close()


def test_missing_topic_lists_the_image_topics(camera_bag):
    reader = open_bag(camera_bag.path)
    try:
        with pytest.raises(BagError) as err:
            select_topics(reader, "/front/image_raw")
        assert "/front/image_raw" in str(err.value) and "/cam/image (sensor_msgs/msg/Image)" in str(err.value)
        assert CHATTER_TOPIC not in str(err.value)  # only image topics are offered
        with pytest.raises(BagError, match="not an image"):
            select_topics(reader, CHATTER_TOPIC)
        with pytest.raises(BagError, match="no CameraInfo topic /nope.*/cam/camera_info"):
            select_topics(reader, IMAGE_TOPIC, camera_info_topic="/nope")
        with pytest.raises(BagError, match="no topic /tf to copy"):
            select_topics(reader, IMAGE_TOPIC, copy_topics="/chatter,/tf")
    finally:
        reader.close()


def test_corrupt_and_truncated_inputs_raise_bag_error(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        open_bag(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="metadata.yaml"):
        open_bag(tmp_path / "empty")

    def read_all(path):
        reader = open_bag(path)
        try:
            return sum(1 for _ in iter_messages(reader, reader.connections))
        finally:
            reader.close()

    # truncated storage files: half of each file is gone
    for storage in ("sqlite3", "mcap"):
        bag = write_camera_bag(tmp_path / f"trunc_{storage}", storage=storage, frames=4)
        (data,) = [p for p in bag.path.iterdir() if p.suffix in {".db3", ".mcap"}]
        assert read_all(bag.path) == 12
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        with pytest.raises(BagError, match="corrupt or truncated"):
            read_all(bag.path)
    # garbage metadata
    bag = write_camera_bag(tmp_path / "badmeta", frames=1)
    (bag.path / "metadata.yaml").write_text("rosbag2_bagfile_information: [unterminated\n")
    with pytest.raises(BagError, match="corrupt or truncated"):
        read_all(bag.path)
    # a file that is not a bag at all
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 64)
    with pytest.raises(BagError):
        read_all(junk)


def test_ros1_bag_converts_to_ros2_messages(tmp_path):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    bag = write_ros1_camera_bag(tmp_path / "in.bag", frames=2)
    reader = open_bag(bag.path)
    try:
        sel = select_topics(reader, IMAGE_TOPIC)
        convert = CdrConverter(reader)
        seen = []
        for conn, _, raw in iter_messages(reader, connections_of(reader, [sel.image, sel.camera_info])):
            msg = deserialize_message(convert(conn, raw), Image if conn.topic == sel.image else CameraInfo)
            seen.append(msg)
        images = [m for m in seen if isinstance(m, Image)]
        infos = [m for m in seen if isinstance(m, CameraInfo)]
        assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images] == bag.header_stamps
        assert (images[0].width, images[0].height) == bag.size
        assert len(images[0].data) == bag.size[0] * bag.size[1] * 3
        assert infos[0].k[0] == pytest.approx(0.9 * bag.size[0])  # ROS 1 "K" became ROS 2 "k"
    finally:
        reader.close()


def test_message_definitions_match_the_built_messages():
    """The RIHS01 hashes written into bags equal the ones rosidl generated for the built messages."""
    share = Path(sys.prefix) / "share"
    if not (share / "lighthmr_ros" / "msg" / "HumanMeshArray.json").exists():
        pytest.skip("the lighthmr_ros messages are not built into this environment")
    for msgtype in (HUMANS_TYPE, TOPOLOGY_TYPE, MARKERS_TYPE):
        msgdef, digest = message_definition(msgtype)
        package, _, name = msgtype.split("/")
        description = json.loads((share / package / "msg" / f"{name}.json").read_text())
        hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
        assert hashes[msgtype] == digest
        assert msgdef.splitlines()[0] and f"MSG: {package}/{name}" not in msgdef  # own fields first
    humans_def = message_definition(HUMANS_TYPE)[0]
    assert "MSG: lighthmr_ros/HumanMesh\n" in humans_def and "MSG: geometry_msgs/Point\n" in humans_def


def test_check_output_refuses_clobbering(tmp_path, camera_bag):
    out = tmp_path / "out"
    check_output(out, [camera_bag.path], overwrite=False)  # fine: does not exist
    with pytest.raises(BagError, match="overlaps the input"):
        check_output(camera_bag.path, [camera_bag.path], overwrite=True)
    with pytest.raises(BagError, match="overlaps the input"):
        check_output(camera_bag.path / "out", [camera_bag.path], overwrite=True)
    other = write_camera_bag(tmp_path / "old_out", frames=1)
    with pytest.raises(BagError, match="exists already.*--overwrite"):
        check_output(other.path, [camera_bag.path], overwrite=False)
    check_output(other.path, [camera_bag.path], overwrite=True)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(BagError, match="not a rosbag"):
        check_output(precious, [camera_bag.path], overwrite=True)
    with pytest.raises(BagError, match="does not exist"):
        check_output(tmp_path / "no" / "such" / "out", [camera_bag.path], overwrite=False)


def test_staged_output_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with StagedOutput(out) as staging:
            staging.mkdir()
            (staging / "metadata.yaml").write_text("partial")
            raise KeyboardInterrupt
    assert not out.exists() and list(tmp_path.iterdir()) == []

    with StagedOutput(out) as staging:
        staging.mkdir()
        (staging / "metadata.yaml").write_text("first")
    assert (out / "metadata.yaml").read_text() == "first"

    # overwrite keeps the old bag until the new one is complete
    with pytest.raises(RuntimeError):
        with StagedOutput(out, overwrite=True) as staging:
            staging.mkdir()
            (staging / "metadata.yaml").write_text("second")
            raise RuntimeError("crash")
    assert (out / "metadata.yaml").read_text() == "first"
    with StagedOutput(out, overwrite=True) as staging:
        staging.mkdir()
        (staging / "metadata.yaml").write_text("second")
    assert (out / "metadata.yaml").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
