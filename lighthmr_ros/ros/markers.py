"""Human records -> RViz MarkerArray: a mesh, a skeleton and an id label per person.

RViz gets slow with full body meshes (a 27k-triangle Anny mesh is 82k points per person), so
meshes are decimated by vertex clustering: vectorised, topology-independent, and it keeps the
silhouette. Every array starts with DELETEALL so people who left vanish at once, and every marker
has a lifetime of a few frame periods so they also vanish when frames stop (a node that is stopped,
deactivated or killed); the node also publishes a lone DELETEALL when it deactivates or shuts down.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from lighthmr_ros.human import Human
from lighthmr_ros.overlay import track_color
from lighthmr_ros.ros.cdr import serialize
from lighthmr_ros.ros.messages import points_from_array

MESH_ALPHA = 0.85
SKELETON_WIDTH_M = 0.02
LABEL_HEIGHT_M = 0.12


def decimate_mesh(vertices: np.ndarray, faces: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a triangle mesh to about 1/``factor`` of its triangles by vertex clustering.

    Vertices are snapped to a grid of cell size sqrt(factor) x the mean edge length and each cell
    is replaced by the mean of its vertices; collapsed and duplicate triangles are dropped.
    Winding of the kept triangles is preserved. ``factor <= 1`` returns the mesh unchanged.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if factor <= 1 or len(faces) == 0:
        return vertices, faces
    edges = vertices[faces[:, [1, 2, 0]]] - vertices[faces]
    mean_edge = float(np.sqrt((edges**2).sum(-1)).mean())
    if not math.isfinite(mean_edge) or mean_edge <= 0.0:
        return vertices, faces
    cell = mean_edge * math.sqrt(factor)
    keys = np.floor((vertices - vertices.min(0)) / cell).astype(np.int64)
    dims = keys.max(0) + 1
    linear = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, cluster = np.unique(linear, return_inverse=True)
    cluster = cluster.reshape(-1)
    n = int(cluster.max()) + 1
    counts = np.bincount(cluster, minlength=n)[:, None]
    merged = np.stack([np.bincount(cluster, weights=vertices[:, i], minlength=n) for i in range(3)], 1) / counts
    new_faces = cluster[faces]
    keep = (new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2]) & (
        new_faces[:, 2] != new_faces[:, 0])
    new_faces = new_faces[keep]
    ordered = np.sort(new_faces, axis=1)
    _, first = np.unique((ordered[:, 0] * n + ordered[:, 1]) * n + ordered[:, 2], return_index=True)
    return merged, new_faces[np.sort(first)]


def _marker(header, ns: str, marker_id: int, marker_type: int, rgb, alpha: float, lifetime_s: float) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(marker_id)
    m.type = marker_type
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))
    seconds = max(0.0, float(lifetime_s))  # 0: forever (RViz's convention)
    m.lifetime.sec = int(seconds)
    m.lifetime.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000
    return m


def clear_markers(header) -> MarkerArray:
    """One DELETEALL: RViz removes every marker of this publisher (sent on deactivate and shutdown)."""
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    return MarkerArray(markers=[clear])


def build_markers(
    humans: Sequence[Human],
    header,
    faces: np.ndarray | None,
    joint_parents: Sequence[int],
    decimation: int = 1,
    lifetime_s: float = 0.0,
) -> tuple[MarkerArray, dict[int, dict[str, np.ndarray]]]:
    """The MarkerArray with empty ``points`` and, per id(marker), its points as an (N, 3) array."""
    out = clear_markers(header)
    points: dict[int, dict[str, np.ndarray]] = {}
    parents = np.asarray(joint_parents, dtype=np.int64)
    for index, human in enumerate(humans):
        rgb = track_color(human.id)
        if human.vertices is not None and faces is not None and len(faces):
            verts, tris = decimate_mesh(human.vertices, faces, int(decimation))
            mesh = _marker(header, "mesh", index, Marker.TRIANGLE_LIST, rgb, MESH_ALPHA, lifetime_s)
            points[id(mesh)] = {"points": np.ascontiguousarray(verts[tris.reshape(-1)], dtype=np.float64)}
            out.markers.append(mesh)
        joints = np.asarray(human.joints, dtype=np.float64).reshape(-1, 3)
        if len(joints) and len(parents) == len(joints):
            child = np.flatnonzero(parents >= 0)
            bones = np.stack([joints[child], joints[parents[child]]], 1).reshape(-1, 3)
            skeleton = _marker(header, "skeleton", index, Marker.LINE_LIST, rgb, 1.0, lifetime_s)
            skeleton.scale.x = SKELETON_WIDTH_M
            points[id(skeleton)] = {"points": np.ascontiguousarray(bones)}
            out.markers.append(skeleton)
        label = _marker(header, "label", index, Marker.TEXT_VIEW_FACING, (1.0, 1.0, 1.0), 1.0, lifetime_s)
        anchor = np.asarray(human.translation, dtype=np.float64).reshape(3).copy()
        if len(joints):  # above the head: optical frame y points down
            anchor[1] = joints[:, 1].min() - 0.15
        label.pose.position.x, label.pose.position.y, label.pose.position.z = anchor.tolist()
        label.scale.x = label.scale.y = label.scale.z = LABEL_HEIGHT_M
        label.text = f"id {int(human.id)}  {float(human.score):.2f}"
        out.markers.append(label)
    return out, points


def humans_to_markers(
    humans: Sequence[Human],
    header,
    faces: np.ndarray | None,
    joint_parents: Sequence[int],
    decimation: int = 1,
    lifetime_s: float = 0.0,
) -> MarkerArray:
    """DELETEALL, then per person a TRIANGLE_LIST mesh, a LINE_LIST skeleton and a TEXT label.

    Marker ids are the person's index in ``humans``; colours follow the track id so a person
    keeps its colour while tracked. Persons without vertices get a skeleton and a label only.
    For publishing, humans_to_markers_cdr gives the same message serialised without per-point objects.
    """
    out, points = build_markers(humans, header, faces, joint_parents, decimation, lifetime_s)
    for marker in out.markers:
        if id(marker) in points:
            marker.points = points_from_array(points[id(marker)]["points"])
    return out


def humans_to_markers_cdr(
    humans: Sequence[Human],
    header,
    faces: np.ndarray | None,
    joint_parents: Sequence[int],
    decimation: int = 1,
    lifetime_s: float = 0.0,
) -> bytes:
    """humans_to_markers serialised to CDR (publishable bytes), with the point arrays copied in one go."""
    out, points = build_markers(humans, header, faces, joint_parents, decimation, lifetime_s)
    return serialize(out, points)
