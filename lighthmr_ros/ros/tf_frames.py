"""Every tracked person as TF frames: ``body_<id>`` and, optionally, ``head_<id>`` (REP-155 names).

Why: robot software looks people up by frame (``lookup_transform("map", "body_3")``), and a frame
per person is what ROS4HRI (REP-155) specifies; navigation, gaze and manipulation code then needs
no knowledge of our messages.

Frames, all children of the image's optical frame (``header.frame_id``, x right, y down, z forward):
- ``body_<id>``: at the body root (pelvis, ``Human.translation``), oriented by the global
  orientation ``pose[0]``, with REP-103 body axes (x forward out of the chest, y to the body's
  left, z up along the spine), as REP-155 asks.
- ``head_<id>``: at the head joint, oriented by the head bone's rotation in the camera (the body
  model's rotations composed from the root down to the head), same REP-103 axes (x where the face
  points, z up the head).

People without a track (id 0: tracking off) get no frames: their ids are not stable, so the
frames would jump between people. The body model's rotations are in its canonical axes (x the
body's left, y up, z forward); ``REP103_IN_CANONICAL`` turns them into REP-103 axes.

Broadcasting: on a ROS machine ``tf2_ros.TransformBroadcaster``; without tf2_ros (pip-only
installs) ``make_broadcaster`` publishes tf2_msgs/TFMessage on /tf itself when that interface is
installed, and returns None otherwise.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import roma
import torch
from geometry_msgs.msg import TransformStamped
from transforms3d.quaternions import mat2quat

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.human import Human

# Columns: the REP-103 body axes (x forward, y left, z up) written in the canonical body axes.
REP103_IN_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class FrameOptions:
    """prefix: put before every frame name (e.g. "cam_left/" when several cameras share a TF tree).

    head: also publish ``head_<id>``; head_chain and head_joint then say how (see ``head_chain``).
    """

    prefix: str = ""
    head: bool = False
    head_chain: tuple[int, ...] = ()
    head_joint: int = -1

    def __post_init__(self) -> None:
        if self.head and (not self.head_chain or self.head_joint < 0):
            raise ConfigError("head frames need the body model's head chain: "
                              "build FrameOptions with head_options().")
        if any(c.isspace() for c in self.prefix) or self.prefix.startswith("/"):
            raise ConfigError(f"TF frame prefix {self.prefix!r} must not start with '/' or contain spaces.")


def head_chain(pose_joint_names: Sequence[str], joint_names: Sequence[str], joint_parents: Sequence[int],
               head_index: int) -> tuple[int, ...]:
    """Indices into ``Human.pose`` of the rotations from the root down to the head, root first.

    Output joints that have no rotation of their own (not in pose_joint_names) are skipped:
    their rotation is the identity.
    """
    pose_index = {name: i for i, name in enumerate(pose_joint_names)}
    if pose_joint_names and pose_joint_names[0] not in joint_names:  # SMPL-X: "global_orient" turns the root
        roots = [j for j, parent in enumerate(joint_parents) if parent < 0]
        if len(roots) == 1:
            pose_index.setdefault(joint_names[roots[0]], 0)
    chain = []
    j, root = head_index, head_index
    while j >= 0:
        name = joint_names[j]
        if name in pose_index:
            chain.append(pose_index[name])
        root, j = j, joint_parents[j]
    if pose_index.get(joint_names[root]) != 0:  # pose[0] is the global orientation, about the root
        raise ConfigError("the body model's head joint does not descend from its root rotation.")
    return tuple(reversed(chain))


def head_options(spec, prefix: str = "") -> FrameOptions:
    """FrameOptions with head frames for a body model's BodySpec."""
    chain = head_chain(spec.pose_joint_names, spec.joint_names, spec.joint_parents, spec.head_index)
    return FrameOptions(prefix=prefix, head=True, head_chain=chain, head_joint=spec.head_index)


def frame_id(kind: str, track_id: int, prefix: str = "") -> str:
    """REP-155 frame name: ``body_3``, ``head_3`` (with the prefix in front)."""
    return f"{prefix}{kind}_{int(track_id)}"


def _rotations(human: Human) -> torch.Tensor:
    return roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(human.pose, dtype=np.float64).reshape(-1, 3)))


def body_pose(human: Human) -> tuple[np.ndarray, np.ndarray]:
    """Position (3,) and rotation (3, 3) of ``body_<id>`` in the optical frame."""
    rot = _rotations(human)[0].numpy() @ REP103_IN_CANONICAL
    return np.asarray(human.translation, dtype=np.float64).reshape(3), rot


def head_pose(human: Human, chain: Sequence[int], head_joint: int) -> tuple[np.ndarray, np.ndarray]:
    """Position (3,) and rotation (3, 3) of ``head_<id>`` in the optical frame."""
    rots = _rotations(human)
    rot = torch.eye(3, dtype=rots.dtype)
    for i in chain:
        rot = rot @ rots[i]
    return np.asarray(human.joints, dtype=np.float64)[head_joint], rot.numpy() @ REP103_IN_CANONICAL


def _transform(header, child: str, position: np.ndarray, rotation: np.ndarray) -> TransformStamped:
    msg = TransformStamped()
    msg.header = header
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in position)
    w, x, y, z = (float(v) for v in mat2quat(rotation))
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z = x, y, z
    msg.transform.rotation.w = w
    return msg


def human_transforms(humans: Sequence[Human], header,
                     options: FrameOptions | None = None) -> list[TransformStamped]:
    """TransformStamped per tracked person (and head); parent and stamp are the header's."""
    options = options or FrameOptions()
    out = []
    for human in humans:
        if int(human.id) == 0:
            continue
        out.append(_transform(header, frame_id("body", human.id, options.prefix), *body_pose(human)))
        if options.head:
            position, rotation = head_pose(human, options.head_chain, options.head_joint)
            out.append(_transform(header, frame_id("head", human.id, options.prefix), position, rotation))
    return out


def make_broadcaster(node) -> Callable[[list[TransformStamped]], None] | None:
    """A function that sends TransformStampeds on /tf: tf2_ros where it imports, else a TFMessage publisher.

    Returns None when neither tf2_ros nor tf2_msgs is installed (the caller logs that TF is off).
    """
    try:
        from tf2_ros import TransformBroadcaster
    except ImportError:
        pass
    else:
        broadcaster = TransformBroadcaster(node)
        return broadcaster.sendTransform
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    from rclpy.qos import QoSProfile

    publisher = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))  # tf2_ros' own /tf QoS

    def send(transforms: list[TransformStamped]) -> None:
        publisher.publish(TFMessage(transforms=list(transforms)))

    return send
