"""Human records -> lighthmr_ros messages (HumanMeshArray, MeshTopology).

Array fields are filled straight from numpy buffers (``array.array`` built from bytes), never
element by element: a 10k-vertex mesh costs one memory copy, not 30k Python assignments.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point

from lighthmr_ros.human import Human
from lighthmr_ros.msg import HumanMesh, HumanMeshArray, MeshTopology


def f32_array(values) -> array:
    """Any array-like -> flat ``array('f')`` for a float32[] message field (one copy)."""
    return array("f", np.ascontiguousarray(values, dtype=np.float32).reshape(-1).tobytes())


def points_from_array(xyz: np.ndarray) -> list[Point]:
    """(N, 3) array -> list of geometry_msgs/Point (the message type leaves no vectorised path)."""
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, dtype=np.float64).reshape(-1, 3).tolist()]


def human_to_msg(human: Human, publish_vertices: bool = True) -> HumanMesh:
    """One Human record -> HumanMesh (all fields in the camera optical frame, metres, pixels)."""
    msg = HumanMesh()
    msg.id = int(human.id) & 0xFFFFFFFF
    msg.score = float(human.score)
    msg.center_2d = np.asarray(human.center_2d, dtype=np.float32).reshape(2)
    x, y, z = np.asarray(human.translation, dtype=np.float64).reshape(3).tolist()
    msg.translation = Point(x=x, y=y, z=z)
    msg.pose = f32_array(human.pose)
    msg.shape = f32_array(human.shape)
    msg.expression = f32_array(human.expression)
    msg.joints = points_from_array(human.joints)
    msg.joints_2d = f32_array(human.joints_2d)
    if publish_vertices and human.vertices is not None:
        msg.vertices = f32_array(human.vertices)
    return msg


def humans_to_msg(
    humans: Sequence[Human],
    header,
    k: np.ndarray,
    body_model: str,
    width: int,
    height: int,
    publish_vertices: bool,
    latency: float = 0.0,
) -> HumanMeshArray:
    """Every person of one image -> HumanMeshArray with the image's header and the K used."""
    msg = HumanMeshArray()
    msg.header = header
    msg.body_model = str(body_model)
    msg.k = np.asarray(k, dtype=np.float64).reshape(9)
    msg.width, msg.height = int(width), int(height)
    msg.latency = float(latency)
    msg.humans = [human_to_msg(h, publish_vertices) for h in humans]
    return msg


def topology_msg(predictor) -> MeshTopology:
    """The Predictor's body model structure (faces, joint names and parents), published once."""
    msg = MeshTopology()
    msg.body_model = str(predictor.body_model_name)
    msg.num_vertices = int(predictor.num_vertices)
    msg.faces = array("I", np.ascontiguousarray(predictor.faces, dtype=np.uint32).reshape(-1).tobytes())
    msg.joint_names = [str(n) for n in predictor.joint_names]
    msg.joint_parents = array("i", np.ascontiguousarray(predictor.joint_parents, dtype=np.int32).tobytes())
    return msg


def msg_to_arrays(msg: HumanMesh) -> dict[str, np.ndarray]:
    """HumanMesh -> numpy arrays (the inverse of human_to_msg; for consumers and tests)."""
    return {
        "translation": np.array([msg.translation.x, msg.translation.y, msg.translation.z]),
        "pose": np.frombuffer(msg.pose, dtype=np.float32).reshape(-1, 3),
        "shape": np.frombuffer(msg.shape, dtype=np.float32),
        "expression": np.frombuffer(msg.expression, dtype=np.float32),
        "joints": np.array([[p.x, p.y, p.z] for p in msg.joints]).reshape(-1, 3),
        "joints_2d": np.frombuffer(msg.joints_2d, dtype=np.float32).reshape(-1, 2),
        "vertices": np.frombuffer(msg.vertices, dtype=np.float32).reshape(-1, 3),
    }
