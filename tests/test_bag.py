"""process_bag end to end: real Predictor (untrained student), real rclpy messages, bags read back
by three independent decoders (rosbags with the embedded definitions, rclpy, mcap-ros2-support)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fixtures_bag import CAMERA_INFO_TOPIC, CHATTER_TOPIC, IMAGE_TOPIC, write_camera_bag, write_ros1_camera_bag

from lighthmr_ros.bag import InputOptions, OutputOptions, output_topics, process_bag
from lighthmr_ros.errors import BagError
from lighthmr_ros.ros.pipeline import PipelineOptions

pytestmark = [pytest.mark.ros, pytest.mark.slow]
TOPICS = output_topics("/lighthmr")


def run(bag, out, predictor, on_frame=None, **kwargs):
    """process_bag with the keyword arguments sorted into its option dataclasses."""
    # threshold 0: the untrained student then finds its max_humans peaks in every image, so the
    # per-person checks below always have people to check
    groups = {InputOptions: {}, OutputOptions: {}, PipelineOptions: dict(det_threshold=0.0, max_humans=2,
                                                                         marker_decimation=8)}
    for key, value in kwargs.items():
        owner = next(cls for cls in groups if key in {f.name for f in dataclasses.fields(cls)})
        groups[owner][key] = value
    return process_bag(bag.path, out, IMAGE_TOPIC, predictor=predictor, progress=False, on_frame=on_frame,
                       topics=InputOptions(**groups[InputOptions]), writing=OutputOptions(**groups[OutputOptions]),
                       options=PipelineOptions(**groups[PipelineOptions]))


def read_rosbags(path: Path) -> dict[str, list[tuple[int, object]]]:
    """Every message of a bag decoded by rosbags from the definitions embedded in the bag itself."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def raw_messages(path: Path, topic: str) -> list[tuple[int, bytes]]:
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, bytes(raw)) for _, t, raw in reader.messages(connections=conns)]


@pytest.mark.parametrize(
    "storage,compressed,camera_info",
    [("sqlite3", False, True), ("mcap", True, False), ("mcap", False, True), ("sqlite3", True, False)],
)
def test_process_bag_writes_decodable_results(tmp_path, bag_predictor, storage, compressed, camera_info):
    from rclpy.serialization import deserialize_message
    from visualization_msgs.msg import MarkerArray

    from lighthmr_ros.msg import HumanMeshArray, MeshTopology

    bag = write_camera_bag(tmp_path / "in", storage="sqlite3" if storage == "mcap" else "mcap",
                           compressed=compressed, camera_info=camera_info, frames=3)
    before = {p.name: p.read_bytes() for p in bag.path.iterdir()}
    out = tmp_path / "out"
    summary = run(bag, out, bag_predictor, storage=storage)

    assert summary.frames == 3 and summary.skipped == 0 and summary.output == out
    assert summary.fps > 0 and summary.image_topic == bag.image_topic
    assert {p.name: p.read_bytes() for p in bag.path.iterdir()} == before  # input untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging left
    assert (out / f"out.{'db3' if storage == 'sqlite3' else 'mcap'}").is_file()

    # 1. rosbags, using only what the bag itself declares
    decoded = read_rosbags(out)
    assert {t: len(m) for t, m in decoded.items()} == {
        **bag.topics, TOPICS["humans"]: 3, TOPICS["markers"]: 3, TOPICS["mesh_topology"]: 1,
    } == summary.topics
    humans = decoded[TOPICS["humans"]]
    assert [t for t, _ in humans] == bag.log_times
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in humans] == bag.header_stamps
    assert {m.header.frame_id for _, m in humans} == {"cam_optical"}
    assert sum(len(m.humans) for _, m in humans) == summary.humans >= 3
    w, h = bag.size
    for _, msg in humans:
        assert (msg.width, msg.height) == (w, h) and msg.body_model == bag_predictor.body_model_name
        k = np.asarray(msg.k).reshape(3, 3)
        expected = np.array([[0.9 * w, 0, w / 2], [0, 0.9 * w, h / 2], [0, 0, 1]]) if camera_info else \
            bag_predictor.default_K(w, h, 60.0)
        np.testing.assert_allclose(k, expected, rtol=1e-6)
        for person in msg.humans:
            assert len(person.vertices) == 3 * bag_predictor.num_vertices
            assert len(person.joints) == len(bag_predictor.joint_names)
            assert person.id >= 1  # tracked
    markers = decoded[TOPICS["markers"]]
    assert [t for t, _ in markers] == bag.log_times
    for (_, array), (_, msg) in zip(markers, humans, strict=True):
        assert array.markers[0].action == 3  # DELETEALL first
        assert all(m.header.stamp == msg.header.stamp for m in array.markers)
    (t_topology, topology), = decoded[TOPICS["mesh_topology"]]
    assert t_topology == bag.log_times[0]
    assert len(topology.faces) == bag_predictor.faces.size and topology.num_vertices == bag_predictor.num_vertices
    assert [m.data for _, m in decoded[CHATTER_TOPIC]] == ["hello 0", "hello 1", "hello 2"]

    # 2. rclpy's own typesupport on the raw bytes
    for (_, raw), (_, ref) in zip(raw_messages(out, TOPICS["humans"]), humans, strict=True):
        msg = deserialize_message(raw, HumanMeshArray)
        assert msg.header.stamp.sec == ref.header.stamp.sec and len(msg.humans) == len(ref.humans)
        for a, b in zip(msg.humans, ref.humans, strict=True):
            np.testing.assert_allclose(np.asarray(a.vertices), b.vertices, rtol=1e-6)
    for (_, raw), (_, ref) in zip(raw_messages(out, TOPICS["markers"]), markers, strict=True):
        array = deserialize_message(raw, MarkerArray)
        assert [(m.ns, m.id, m.type, len(m.points)) for m in array.markers] == \
            [(m.ns, m.id, m.type, len(m.points)) for m in ref.markers]
    ((_, raw),) = raw_messages(out, TOPICS["mesh_topology"])
    assert list(deserialize_message(raw, MeshTopology).joint_names) == list(bag_predictor.joint_names)

    # 3. mcap-ros2-support, which knows nothing of our package but the schemas in the file
    if storage == "mcap":
        from mcap_ros2.reader import read_ros2_messages

        got = [(m.channel.topic, m.log_time_ns, m.ros_msg) for m in read_ros2_messages(str(out / "out.mcap"))]
        mcap_humans = [(t, msg) for topic, t, msg in got if topic == TOPICS["humans"]]
        assert [t for t, _ in mcap_humans] == bag.log_times
        assert [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in mcap_humans] == bag.header_stamps
        assert [len(m.humans) for _, m in mcap_humans] == [len(m.humans) for _, m in humans]
        assert sum(1 for topic, _, _ in got if topic == TOPICS["markers"]) == 3


def test_output_decodes_with_types_from_the_msg_files(tmp_path, bag_predictor):
    """A consumer that registers our .msg files in rosbags (no embedded definitions used)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    bag = write_camera_bag(tmp_path / "in", frames=2, chatter=False)
    summary = run(bag, tmp_path / "out", bag_predictor, copy_topics="none", markers=False, publish_vertices=False,
                  tracking=False)
    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = Path(__file__).resolve().parent.parent / "msg"
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"lighthmr_ros/msg/{path.stem}"))
    store.register(types)
    raws = raw_messages(tmp_path / "out", TOPICS["humans"])
    messages = [store.deserialize_cdr(raw, "lighthmr_ros/msg/HumanMeshArray") for _, raw in raws]
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in messages] == bag.header_stamps
    assert all(len(p.vertices) == 0 for m in messages for p in m.humans)  # publish_vertices=False
    assert sum(len(m.humans) for m in messages) == summary.humans >= 2
    assert all(p.id == 0 for m in messages for p in m.humans)  # tracking=False: 0 means not tracked
    decoded = read_rosbags(tmp_path / "out")
    assert set(decoded) == {TOPICS["humans"], TOPICS["mesh_topology"]}  # nothing copied, no markers


def test_interrupt_leaves_no_output(tmp_path, bag_predictor):
    bag = write_camera_bag(tmp_path / "in", frames=3)

    def stop(done, total):
        assert total == 3
        if done == 1:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(bag, out, bag_predictor, on_frame=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

    # same when overwriting: the previous output survives an interrupted run untouched
    first = run(bag, out, bag_predictor, copy_topics="none")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        run(bag, out, bag_predictor, overwrite=True, on_frame=stop)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
    assert first.frames == 3


def test_overwrite_refused_unless_asked(tmp_path, bag_predictor):
    bag = write_camera_bag(tmp_path / "in", frames=1)
    out = tmp_path / "out"
    run(bag, out, bag_predictor, copy_topics="none")
    stamp = (out / "metadata.yaml").stat().st_mtime_ns
    with pytest.raises(BagError, match="exists already.*--overwrite"):
        run(bag, out, bag_predictor)
    assert (out / "metadata.yaml").stat().st_mtime_ns == stamp
    summary = run(bag, out, bag_predictor, overwrite=True, storage="mcap")
    assert summary.frames == 1 and (out / "out.mcap").is_file() and not (out / "out.db3").exists()
    with pytest.raises(BagError, match="overlaps the input"):
        run(bag, bag.path, bag_predictor, overwrite=True)
    assert len(read_rosbags(bag.path)[bag.image_topic]) == 1


def test_errors_name_the_problem(tmp_path, bag_predictor):
    bag = write_camera_bag(tmp_path / "in", frames=2)
    with pytest.raises(BagError, match=r"no topic /front/image.*/cam/image \(sensor_msgs/msg/Image\)"):
        process_bag(bag.path, tmp_path / "out", "/front/image", predictor=bag_predictor, progress=False)
    db3 = next(bag.path.glob("*.db3"))
    db3.write_bytes(db3.read_bytes()[:4096])
    with pytest.raises(BagError, match="corrupt or truncated"):
        run(bag, tmp_path / "out", bag_predictor)
    with pytest.raises(BagError, match="storage must be"):
        run(bag, tmp_path / "out", bag_predictor, storage="zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_unreadable_images_are_skipped_and_all_bad_is_an_error(tmp_path, bag_predictor):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    Image, Header = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    path = tmp_path / "bad"
    with Writer(path, version=9) as writer:
        conn = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        for i in range(2):
            msg = Image(header=Header(stamp=Time(sec=1 + i, nanosec=0), frame_id="c"), height=8, width=8,
                        encoding="32FC1", is_bigendian=0, step=32, data=np.zeros(256, np.uint8))
            writer.write(conn, (1 + i) * 10**9, ts.serialize_cdr(msg, msg.__msgtype__))
    with pytest.raises(BagError, match="none of the 2 images"):
        process_bag(path, tmp_path / "out", IMAGE_TOPIC, predictor=bag_predictor, progress=False)
    assert not (tmp_path / "out").exists()

    # one bad frame among good ones: skipped and counted, the rest processed
    mixed = write_camera_bag(tmp_path / "mixed", frames=2, chatter=False, camera_info=False)
    bad = Image(header=Header(stamp=Time(sec=5, nanosec=0), frame_id="c"), height=8, width=8,
                encoding="32FC1", is_bigendian=0, step=32, data=np.zeros(256, np.uint8))
    merged = tmp_path / "merged"
    from rosbags.highlevel import AnyReader

    with AnyReader([mixed.path]) as reader, Writer(merged, version=9) as writer:
        conn = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        for _, t, raw in reader.messages():
            writer.write(conn, t, raw)
        writer.write(conn, mixed.log_times[-1] + 1, ts.serialize_cdr(bad, bad.__msgtype__))
    summary = run(mixed.__class__(path=merged, image_topic=IMAGE_TOPIC), tmp_path / "out", bag_predictor)
    assert (summary.frames, summary.skipped) == (2, 1)
    assert [t for t, _ in read_rosbags(tmp_path / "out")[TOPICS["humans"]]] == mixed.log_times


def test_ros1_input(tmp_path, bag_predictor):
    bag = write_ros1_camera_bag(tmp_path / "in.bag", frames=2)
    summary = run(bag, tmp_path / "out", bag_predictor)
    decoded = read_rosbags(tmp_path / "out")
    humans = decoded[TOPICS["humans"]]
    assert [t for t, _ in humans] == bag.log_times
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in humans] == bag.header_stamps
    assert len(decoded[CAMERA_INFO_TOPIC]) == 2 and len(decoded[IMAGE_TOPIC]) == 2  # copied, now CDR
    assert decoded[CAMERA_INFO_TOPIC][0][1].k[0] == pytest.approx(0.9 * bag.size[0])
    np.testing.assert_allclose(humans[0][1].k[0], 0.9 * bag.size[0])
    assert summary.frames == 2
