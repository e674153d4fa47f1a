"""`lighthmr bag` with several image topics: one batch per moment, each camera its own outputs, as the node."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]

from lighthmr_ros.bag import InputOptions, output_topics, process_bag  # noqa: E402
from lighthmr_ros.bag.process import camera_name  # noqa: E402
from lighthmr_ros.errors import BagError  # noqa: E402
from lighthmr_ros.ros.pipeline import PipelineOptions  # noqa: E402
from lighthmr_ros.ros.tf_frames import FrameOptions  # noqa: E402

CAMERAS = ("front", "left", "right")
START_NS, PERIOD_NS, FRAMES = 1_700_000_000_000_000_000, 100_000_000, 3


def write_rig_bag(path: Path) -> dict[str, np.ndarray]:
    """Three cameras recorded together: /<cam>/image and /<cam>/camera_info, 1 ms apart within a moment."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    rng = np.random.default_rng(7)
    ks = {}
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {c: (writer.add_connection(f"/{c}/image", "sensor_msgs/msg/Image", typestore=ts),
                     writer.add_connection(f"/{c}/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts))
                 for c in CAMERAS}
        for i in range(FRAMES):
            for j, cam in enumerate(CAMERAS):
                w, h = 160 + 32 * j, 120 + 16 * j
                k = np.array([120.0 + 40 * j, 0, w / 2, 0, 120.0 + 40 * j, h / 2, 0, 0, 1])
                ks[cam] = k
                log_time = START_NS + i * PERIOD_NS + j * 1_000_000
                stamp_ns = log_time - 5000  # captured just before it was logged
                header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                    sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=f"{cam}_optical")
                roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                           do_rectify=False)
                info = T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5), k=k,
                    r=np.eye(3).reshape(-1), p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], 1).reshape(-1),
                    binning_x=0, binning_y=0, roi=roi)
                writer.write(conns[cam][1], log_time - 500, ts.serialize_cdr(info, info.__msgtype__))
                rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                image = T["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                                                   step=w * 3, data=rgb.reshape(-1))
                writer.write(conns[cam][0], log_time, ts.serialize_cdr(image, image.__msgtype__))
    return ks


def read_bag(path: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def test_camera_names_from_image_topics():
    assert camera_name("/front/image_raw") == "front" and camera_name("/cam/left/image/compressed") == "cam/left"
    assert camera_name("/image") == "image"
    assert output_topics("/lighthmr", "front")["humans"] == "/lighthmr/front/humans"
    assert output_topics("/lighthmr")["human_points"] == "/lighthmr/human_points"
    assert output_topics("/lighthmr", "front")["mesh_topology"] == "/lighthmr/mesh_topology"


def test_three_image_topics_in_batches_with_tf_and_points(tmp_path, ros_predictor, tf_message_type):
    bag = tmp_path / "rig"
    ks = write_rig_bag(bag)
    options = PipelineOptions(det_threshold=0.0, max_humans=2, tf=FrameOptions(), points_voxel_m=0.05)
    summary = process_bag(bag, tmp_path / "out", [f"/{c}/image" for c in CAMERAS], predictor=ros_predictor,
                          options=options, progress=False)
    assert summary.frames == 3 * FRAMES and summary.largest_batch == 3
    got = read_bag(tmp_path / "out")
    assert len(got["/lighthmr/mesh_topology"]) == 1 and len(got["/tf"]) == 3 * FRAMES
    for j, cam in enumerate(CAMERAS):
        topics = output_topics("/lighthmr", cam)
        humans, clouds = got[topics["humans"]], got[topics["human_points"]]
        assert len(humans) == len(clouds) == len(got[topics["markers"]]) == FRAMES
        for i, ((t, msg), (tc, cloud)) in enumerate(zip(humans, clouds, strict=True)):
            log_time = START_NS + i * PERIOD_NS + j * 1_000_000
            assert t == tc == log_time  # stamped with the image's log time
            assert msg.header.frame_id == cloud.header.frame_id == f"{cam}_optical"
            stamp_ns = log_time - 5000
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (stamp_ns // 10**9, stamp_ns % 10**9)
            np.testing.assert_allclose(msg.k, ks[cam])
            assert (msg.width, msg.height) == (160 + 32 * j, 120 + 16 * j)
            ids = sorted(p.id for p in msg.humans)
            assert ids and min(ids) > 0
            cloud_ids = np.frombuffer(bytes(cloud.data), dtype=np.dtype([("xyz", "<f4", 3), ("id", "<u4")]))["id"]
            assert sorted(set(cloud_ids.tolist())) == ids
            tf = next(m for tt, m in got["/tf"] if tt == log_time)
            frames = {x.child_frame_id: x for x in tf.transforms}
            assert set(frames) == {f"{cam}/body_{i}" for i in ids}  # each camera its own tracker: prefixed
            for person in msg.humans:
                tr = frames[f"{cam}/body_{person.id}"]
                assert tr.header.frame_id == f"{cam}_optical"
                np.testing.assert_allclose([tr.transform.translation.x, tr.transform.translation.y,
                                            tr.transform.translation.z],
                                           [person.translation.x, person.translation.y, person.translation.z])
    # the same camera alone, one image per Predictor call: the same people (batching changes nothing)
    alone = process_bag(bag, tmp_path / "front_only", "/front/image", predictor=ros_predictor, progress=False,
                        options=PipelineOptions(det_threshold=0.0, max_humans=2),
                        topics=InputOptions(copy_topics="none"))
    assert alone.largest_batch == 1
    single = read_bag(tmp_path / "front_only")["/lighthmr/humans"]
    for (_, a), (_, b) in zip(single, got["/lighthmr/front/humans"], strict=True):
        np.testing.assert_allclose([[p.translation.x, p.translation.y, p.translation.z] for p in a.humans],
                                   [[p.translation.x, p.translation.y, p.translation.z] for p in b.humans],
                                   atol=1e-3)


def test_cli_takes_several_image_topics(tmp_path, ros_smplx_dir, tf_message_type, capsys):
    from lighthmr_ros.cli import main

    bag = tmp_path / "rig"
    write_rig_bag(bag)
    code = main(["bag", str(bag), str(tmp_path / "out"), "--image-topic", "/front/image", "/left/image",
                 "--config", "lighthmr_tinyvit5m", "--body-model", "smplx", "--smplx-model-dir", str(ros_smplx_dir),
                 "--image-size", "224", "--device", "cpu", "--det-threshold", "0.0", "--max-humans", "1",
                 "--tf", "--tf-head-frames", "--points", "--quiet", "--copy-topics", "none"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "batches of up to 2 images" in printed and "/lighthmr/left/human_points: 3 messages" in printed
    got = read_bag(tmp_path / "out")
    children = {x.child_frame_id for _, m in got["/tf"] for x in m.transforms}
    assert {c.split("/")[0] for c in children} == {"front", "left"}
    assert any("/head_" in c for c in children) and any("/body_" in c for c in children)
    with pytest.raises(BagError, match="several image topics"):
        process_bag(bag, tmp_path / "x", ["/front/image", "/left/image"], topics=InputOptions(
            camera_info_topic="/front/camera_info"), progress=False)


def test_depth_topic_corrects_distances_in_bags(tmp_path, ros_predictor):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from lighthmr_ros.depth_fusion import DepthFusionParams, render_owner_depth

    # the untrained test model shows its people in a square wide-angle view (see test_ros_outputs.py)
    side, fov = 480, 100.0
    rgb = np.random.default_rng(11).integers(0, 255, (side, side, 3), dtype=np.uint8)
    K = ros_predictor.default_K(side, side, fov)
    raw = ros_predictor.predict(rgb, K=K, det_threshold=0.0, max_humans=2)
    owner, rendered = render_owner_depth(raw, ros_predictor.faces, K, side, side)
    assert (owner >= 0).sum() > 1000
    depth_mm = np.where(owner >= 0, np.round((rendered + 0.3) * 1000.0), 0).astype(np.uint16)
    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    bag = tmp_path / "rgbd"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        images = writer.add_connection("/cam/color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        depths = writer.add_connection("/cam/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image",
                                       typestore=ts)
        for i in range(2):
            log_time = START_NS + i * PERIOD_NS
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                sec=log_time // 10**9, nanosec=log_time % 10**9), frame_id="cam_color_optical")
            depth = T["sensor_msgs/msg/Image"](header=header, height=side, width=side, encoding="16UC1",
                                               is_bigendian=0, step=2 * side, data=depth_mm.view(np.uint8).reshape(-1))
            writer.write(depths, log_time - 1000, ts.serialize_cdr(depth, depth.__msgtype__))
            image = T["sensor_msgs/msg/Image"](header=header, height=side, width=side, encoding="rgb8",
                                               is_bigendian=0, step=3 * side, data=rgb.reshape(-1))
            writer.write(images, log_time, ts.serialize_cdr(image, image.__msgtype__))
    options = PipelineOptions(det_threshold=0.0, max_humans=2, fov_deg=fov, depth=DepthFusionParams(),
                              tracking=False)
    with pytest.raises(BagError, match="one depth topic per image topic"):
        process_bag(bag, tmp_path / "x", "/cam/color/image_raw", predictor=ros_predictor, options=options,
                    topics=InputOptions(depth_topics=["/a", "/b"]), progress=False)
    with pytest.raises(BagError, match="no depth image topic /nope"):
        process_bag(bag, tmp_path / "x", "/cam/color/image_raw", predictor=ros_predictor, options=options,
                    topics=InputOptions(depth_topics=["/nope"]), progress=False)
    process_bag(bag, tmp_path / "out", "/cam/color/image_raw", predictor=ros_predictor, options=options,
                topics=InputOptions(depth_topics=["/cam/aligned_depth_to_color/image_raw"]), progress=False)
    messages = [m for _, m in read_bag(tmp_path / "out")["/lighthmr/humans"]]
    assert len(messages) == 2
    for msg in messages:
        assert len(msg.humans) == len(raw) and any(p.depth_corrected for p in msg.humans)
        for person, before in zip(msg.humans, raw, strict=True):
            if person.depth_corrected:
                assert person.translation.z - before.translation[2] == pytest.approx(0.3, abs=0.02)
                assert person.depth_correction_m > 0.29
