"""Per-person TF frames (REP-155 names, REP-103 axes) from Human records."""
from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch
from std_msgs.msg import Header
from transforms3d.quaternions import quat2mat

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.human import Human
from lighthmr_ros.ros.tf_frames import (
    FrameOptions,
    head_chain,
    head_options,
    human_transforms,
    make_broadcaster,
)


def _human(track: int, pose: np.ndarray, translation=(0.3, 0.1, 3.0), joints=None) -> Human:
    pose = np.asarray(pose, dtype=np.float32).reshape(-1, 3)
    return Human(id=track, score=0.9, center_2d=np.zeros(2, np.float32),
                 translation=np.array(translation, np.float32), pose=pose, shape=np.zeros(6, np.float32),
                 expression=np.zeros(0, np.float32),
                 joints=np.zeros((3, 3), np.float32) if joints is None else joints,
                 joints_2d=np.zeros((3, 2), np.float32))


def _header() -> Header:
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    return header


def _matrix(msg) -> np.ndarray:
    q = msg.transform.rotation
    return quat2mat([q.w, q.x, q.y, q.z])


def test_person_facing_the_camera_gets_rep103_axes():
    # upright, facing the camera: canonical up (+y) is the image's up (-y), canonical forward (+z) is -z
    pose = np.zeros((4, 3))
    pose[0] = [math.pi, 0.0, 0.0]
    msgs = human_transforms([_human(7, pose)], _header())
    assert len(msgs) == 1
    msg = msgs[0]
    assert msg.child_frame_id == "body_7" and msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    t = msg.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], [0.3, 0.1, 3.0], atol=1e-6)
    R = _matrix(msg)
    np.testing.assert_allclose(R[:, 0], [0, 0, -1], atol=1e-6)  # x forward: toward the camera
    np.testing.assert_allclose(R[:, 1], [1, 0, 0], atol=1e-6)  # y left: the person's left is image right
    np.testing.assert_allclose(R[:, 2], [0, -1, 0], atol=1e-6)  # z up: up in the image


def test_untracked_people_get_no_frames_and_prefix_applies():
    pose = np.zeros((4, 3))
    msgs = human_transforms([_human(0, pose), _human(2, pose)], _header(), FrameOptions(prefix="cam_left/"))
    assert [m.child_frame_id for m in msgs] == ["cam_left/body_2"]
    with pytest.raises(ConfigError, match="must not start with '/'"):
        FrameOptions(prefix="/x")
    with pytest.raises(ConfigError, match="head chain"):
        FrameOptions(head=True)


def test_head_chain_follows_the_skeleton():
    names = ("root", "spine", "neck", "head", "arm")
    parents = (-1, 0, 1, 2, 1)
    # "neck" has no rotation of its own; pose order differs from the joint order
    assert head_chain(("root", "arm", "spine", "head"), names, parents, 3) == (0, 2, 3)
    with pytest.raises(ConfigError, match="root rotation"):
        head_chain(("spine", "head"), names, parents, 3)
    # SMPL-X names its first rotation "global_orient", not after the root joint it turns
    assert head_chain(("global_orient", "spine", "head"), names, parents, 3) == (0, 1, 2)


def test_head_frame_turns_with_the_head_bones(anny_body):
    _check_head_frame(anny_body)


def test_smplx_head_frame_turns_with_the_head_bones(smplx_model_dir):
    from lighthmr_ros.body import create_body_model

    # only SMPL-X's 55 skeleton joints move rigidly with the head; later ones are surface landmarks
    _check_head_frame(create_body_model("smplx", model_dir=smplx_model_dir), skeleton=55)


def _check_head_frame(body, skeleton: int | None = None):
    spec = body.spec
    options = head_options(spec)
    rng = np.random.default_rng(0)
    rot = roma.rotvec_to_rotmat(torch.from_numpy(rng.normal(0, 0.3, (spec.num_pose_joints, 3))).float())
    shape = body.mean_shape()[None]
    with torch.no_grad():
        posed = body(rot[None], shape)
        rest = body(body.rest_pose()[None], shape)
    head = spec.head_index
    children = [j for j, p in enumerate(spec.joint_parents[:skeleton]) if p == head]
    assert children
    joints = (posed.joints[0] - posed.joints[0, 0] + torch.tensor([0.0, 0.0, 3.0])).numpy()
    human = _human(4, roma.rotmat_to_rotvec(rot).numpy(), translation=joints[0], joints=joints)
    body_msg, head_msg = human_transforms([human], _header(), options)
    assert head_msg.child_frame_id == "head_4"
    t = head_msg.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], joints[head], atol=1e-5)
    # the head frame's rotation carries the rest-pose offsets of the head's children to their posed offsets
    R_canonical = _matrix(head_msg) @ np.linalg.inv(np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    rest_off = (rest.joints[0, children] - rest.joints[0, head]).numpy()
    posed_off = (posed.joints[0, children] - posed.joints[0, head]).numpy()
    np.testing.assert_allclose(rest_off @ R_canonical.T, posed_off, atol=1e-4)
    # with every bone at rest, the head frame is oriented like the body frame
    still = _human(4, np.concatenate([roma.rotmat_to_rotvec(rot[:1]).numpy(),
                                      np.zeros((spec.num_pose_joints - 1, 3))]), joints=joints)
    body_msg, head_msg = human_transforms([still], _header(), options)
    np.testing.assert_allclose(_matrix(head_msg), _matrix(body_msg), atol=1e-5)


@pytest.mark.ros
def test_frames_arrive_on_tf_over_dds(tf_message_type, ros_harness, rclpy_context):
    """make_broadcaster sends the frames on /tf (tf2_ros, or a TFMessage publisher without it)."""
    import rclpy

    inbox = ros_harness.subscribe(tf_message_type, "/tf", qos=100)
    node = rclpy.create_node("lighthmr_tf_sender", context=rclpy_context)
    ros_harness.add_node(node)
    send = make_broadcaster(node)
    assert send is not None
    pose = np.zeros((4, 3))
    pose[0] = [math.pi, 0.0, 0.0]
    frames = human_transforms([_human(3, pose), _human(5, pose, translation=(-1.0, 0.2, 4.0))], _header())

    def arrived() -> bool:
        send(frames)
        return bool(inbox)

    assert ros_harness.wait_for(arrived, timeout=20.0, period=0.1)
    got = inbox[0].transforms
    assert [t.child_frame_id for t in got] == ["body_3", "body_5"]
    assert all(t.header.frame_id == "camera_color_optical_frame" for t in got)
    t = got[1].transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], [-1.0, 0.2, 4.0], atol=1e-6)
    np.testing.assert_allclose(_matrix(got[0]), _matrix(frames[0]), atol=1e-9)


def test_head_options_for_smplx(smplx_model_dir):
    from lighthmr_ros.body import create_body_model

    spec = create_body_model("smplx", model_dir=smplx_model_dir).spec
    options = head_options(spec, prefix="cam/")
    names = spec.pose_joint_names
    assert options.head_chain[0] == 0 and names[options.head_chain[-1]] == "head"
    assert [names[i] for i in options.head_chain[1:]] == ["spine1", "spine2", "spine3", "neck", "head"]
