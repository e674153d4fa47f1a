"""Pure conversions of the ROS side: images, intrinsics, messages, markers (no DDS needed)."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lighthmr_ros.errors import ImageError  # noqa: E402
from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.intrinsics import k_from_camera_info  # noqa: E402
from lighthmr_ros.ros.markers import decimate_mesh, humans_to_markers  # noqa: E402


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Build an Image with ``pad`` garbage bytes after each row."""
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
    garbage = np.full((h, pad), 0xAB, np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian))
    msg.step = rows.shape[1] + pad
    msg.data = np.concatenate([rows, garbage], axis=1).tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings(test_rgb, pad):
    alpha = np.full(test_rgb.shape[:2] + (1,), 77, np.uint8)
    cases = {
        "rgb8": test_rgb,
        "bgr8": test_rgb[..., ::-1],
        "rgba8": np.concatenate([test_rgb, alpha], -1),
        "bgra8": np.concatenate([test_rgb[..., ::-1], alpha], -1),
        "8UC3": test_rgb[..., ::-1],
    }
    for encoding, pixels in cases.items():
        out = image_msg_to_rgb(raw_msg(pixels, encoding, pad))
        assert out.dtype == np.uint8 and out.shape == test_rgb.shape and out.flags.c_contiguous
        np.testing.assert_array_equal(out, test_rgb, err_msg=encoding)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono_encodings(test_rgb, bigendian):
    gray = test_rgb[..., 0]
    out = image_msg_to_rgb(raw_msg(gray, "mono8", pad=3))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, 2))
    wide = gray.astype(np.uint16) * 256 + 255  # the low byte must not leak into the result
    wide = wide.astype(">u2" if bigendian else "<u2")
    out16 = image_msg_to_rgb(raw_msg(wide, "mono16", pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out16, np.repeat(gray[..., None], 3, 2))


def test_yuv422_layouts():
    # BT.601 limited-range reference colours: red, green, blue, mid grey.
    yuv = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (126, 128, 128)]
    expect = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)])
    w = 8  # two pixels of each colour
    uyvy = np.array([[u, y, v, y] for y, u, v in yuv], np.uint8).reshape(1, w, 2)
    yuyv = np.array([[y, u, y, v] for y, u, v in yuv], np.uint8).reshape(1, w, 2)
    a = image_msg_to_rgb(raw_msg(uyvy, "yuv422", pad=4))
    b = image_msg_to_rgb(raw_msg(yuyv, "yuyv"))
    c = image_msg_to_rgb(raw_msg(yuyv, "yuv422_yuy2"))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    assert np.abs(a[0, ::2].astype(int) - expect).max() <= 12


def test_last_row_padding_may_be_missing(test_rgb):
    msg = raw_msg(test_rgb, "rgb8", pad=6)
    msg.data = bytes(msg.data)[:-6]
    np.testing.assert_array_equal(image_msg_to_rgb(msg), test_rgb)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(width=0), "size"),
        (dict(height=0, data=b""), "size"),
        (dict(encoding="bayer_rggb8"), "not supported"),
        (dict(encoding=""), "not supported"),
        (dict(step=10), "step"),
        (dict(data=b"\x00" * 100), "bytes"),
        (dict(width=100_000, height=100_000), "claims"),
        (dict(encoding="yuv422", width=63, step=126), "even width"),
    ],
)
def test_malformed_images_raise(test_rgb, change, words):
    msg = raw_msg(test_rgb, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=words):
        image_msg_to_rgb(msg)


def test_too_much_data_raises(test_rgb):
    msg = raw_msg(test_rgb, "rgb8")
    msg.data = bytes(msg.data) + b"\x00" * 7
    with pytest.raises(ImageError, match="bytes"):
        image_msg_to_rgb(msg)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(c) - 4) + c + struct.pack(">I", zlib.crc32(c)) for c in (chunk, idat))


def test_compressed(test_rgb):
    bgr = test_rgb[..., ::-1]
    png = CompressedImage(format="png", data=cv2.imencode(".png", bgr)[1].tobytes())
    np.testing.assert_array_equal(compressed_msg_to_rgb(png), test_rgb)
    jpg = CompressedImage(format="rgb8; jpeg compressed bgr8",
                          data=cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes())
    out = compressed_msg_to_rgb(jpg)
    assert out.shape == test_rgb.shape and np.abs(out.astype(int) - test_rgb).mean() < 4
    gray = CompressedImage(format="png", data=cv2.imencode(".png", test_rgb[..., 0])[1].tobytes())
    assert compressed_msg_to_rgb(gray).shape == test_rgb.shape


@pytest.mark.parametrize(
    "data, fmt, words",
    [
        (b"", "jpeg", "no data"),
        (b"\xff\xd8\xff\xe0garbage" * 20, "jpeg", "not a readable"),
        (b"hello world", "png", "not a readable"),
        (None, "png", "claims"),
        (b"\x00", "16UC1; compressedDepth", "depth"),
    ],
)
def test_bad_compressed_raise(data, fmt, words):
    if data is None:
        data = _png_header(200_000, 10)
    with pytest.raises(ImageError, match=words):
        compressed_msg_to_rgb(CompressedImage(format=fmt, data=data))


def test_truncated_jpeg_raises_or_decodes(test_rgb):
    full = cv2.imencode(".jpg", test_rgb)[1].tobytes()
    with pytest.raises(ImageError):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=full[:200]))


def test_rgb_to_image_msg_round_trip(test_rgb):
    msg = rgb_to_image_msg(test_rgb, Header(frame_id="cam"))
    assert msg.header.frame_id == "cam"
    np.testing.assert_array_equal(image_msg_to_rgb(msg), test_rgb)


def _info(k, width=640, height=480) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = np.asarray(k, dtype=np.float64)
    return info


def test_k_from_camera_info_scaled():
    k = [500.0, 0, 320, 0, 510, 240, 0, 0, 1]
    np.testing.assert_allclose(k_from_camera_info(_info(k), 640, 480), np.reshape(k, (3, 3)))
    half = k_from_camera_info(_info(k), 320, 240)
    np.testing.assert_allclose(half, [[250, 0, 160], [0, 255, 120], [0, 0, 1]])
    info = _info(k)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 40, 320, 240
    np.testing.assert_allclose(k_from_camera_info(info, 320, 240), [[500, 0, 220], [0, 510, 200], [0, 0, 1]])
    # Size 0 in the CameraInfo: no scaling information, K used as is.
    np.testing.assert_allclose(k_from_camera_info(_info(k, 0, 0), 320, 240), np.reshape(k, (3, 3)))


@pytest.mark.parametrize("k", [[0.0] * 9, [np.nan, 0, 1, 0, 1, 1, 0, 0, 1], [-5, 0, 1, 0, 5, 1, 0, 0, 1],
                               [500, 0, 320, 0, 0, 240, 0, 0, 1], [500, 0, 320, 0, 500, 240, 0, 0, 0]])
def test_k_from_camera_info_invalid(k):
    assert k_from_camera_info(_info(k), 640, 480) is None
    assert k_from_camera_info(None, 640, 480) is None


def test_humans_to_msg_round_trip(human_factory):
    from lighthmr_ros.msg import HumanMeshArray
    from lighthmr_ros.ros.messages import humans_to_msg, msg_to_arrays

    humans = [human_factory((0.5, 0.1, 3.0), human_id=3, seed=1), human_factory((-1, 0, 4), human_id=7, seed=2)]
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    k = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    msg = humans_to_msg(humans, header, k, "anny", 640, 480, publish_vertices=True, latency=0.25)
    back = deserialize_message(serialize_message(msg), HumanMeshArray)
    assert back.header.frame_id == "camera_optical" and back.header.stamp.sec == 12
    assert back.header.stamp.nanosec == 345 and back.body_model == "anny"
    assert (back.width, back.height) == (640, 480) and back.latency == pytest.approx(0.25)
    np.testing.assert_allclose(np.reshape(back.k, (3, 3)), k)
    assert [h.id for h in back.humans] == [3, 7]
    for src, dst in zip(humans, back.humans, strict=True):
        arrays = msg_to_arrays(dst)
        assert dst.score == pytest.approx(src.score)
        np.testing.assert_allclose(dst.center_2d, src.center_2d, rtol=1e-6)
        np.testing.assert_allclose(arrays["translation"], src.translation)
        for key in ("pose", "shape", "expression", "joints", "joints_2d", "vertices"):
            np.testing.assert_allclose(arrays[key], getattr(src, key), rtol=1e-5, atol=1e-6, err_msg=key)
    lean = humans_to_msg(humans, header, k, "anny", 640, 480, publish_vertices=False)
    assert all(len(h.vertices) == 0 for h in lean.humans) and len(lean.humans[0].joints) == 5


def test_topology_msg():
    from lighthmr_ros.msg import MeshTopology
    from lighthmr_ros.ros.messages import topology_msg

    class Structure:  # the attributes topology_msg reads from a Predictor
        body_model_name = "smplx"
        num_vertices = 4
        faces = np.array([[0, 1, 2], [0, 2, 3]])
        joint_names = ["pelvis", "head"]
        joint_parents = np.array([-1, 0])

    back = deserialize_message(serialize_message(topology_msg(Structure())), MeshTopology)
    assert back.body_model == "smplx" and back.num_vertices == 4
    assert list(back.faces) == [0, 1, 2, 0, 2, 3]
    assert list(back.joint_names) == ["pelvis", "head"] and list(back.joint_parents) == [-1, 0]


def test_markers_empty_is_deleteall():
    out = humans_to_markers([], Header(frame_id="cam"), np.zeros((0, 3), int), [], 1)
    assert [m.action for m in out.markers] == [Marker.DELETEALL]


def test_markers_per_person(human_factory):
    faces = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [8, 9, 10], [9, 10, 11]])
    parents = [-1, 0, 1, 1, 0]
    humans = [human_factory((0, 0, 3), human_id=1, seed=1), human_factory((1, 0, 3), human_id=2, seed=2)]
    out = humans_to_markers(humans, Header(frame_id="cam"), faces, parents, 1)
    back = deserialize_message(serialize_message(out), MarkerArray)
    assert back.markers[0].action == Marker.DELETEALL
    kinds = [(m.ns, m.id, m.type) for m in back.markers[1:]]
    assert kinds == [("mesh", 0, Marker.TRIANGLE_LIST), ("skeleton", 0, Marker.LINE_LIST),
                     ("label", 0, Marker.TEXT_VIEW_FACING), ("mesh", 1, Marker.TRIANGLE_LIST),
                     ("skeleton", 1, Marker.LINE_LIST), ("label", 1, Marker.TEXT_VIEW_FACING)]
    mesh = np.array([[p.x, p.y, p.z] for p in back.markers[1].points])
    np.testing.assert_allclose(mesh, humans[0].vertices[faces.reshape(-1)])
    bones = np.array([[p.x, p.y, p.z] for p in back.markers[2].points])
    assert len(bones) == 2 * 4
    np.testing.assert_allclose(bones[:2], humans[0].joints[[1, 0]])
    assert back.markers[1].color != back.markers[4].color  # colour by track id
    assert "id 1" in back.markers[3].text and back.markers[1].header.frame_id == "cam"


def test_decimation_reduces_and_keeps_shape():
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=4)
    for factor in (4, 16):
        verts, faces = decimate_mesh(sphere.vertices, sphere.faces, factor)
        ratio = len(sphere.faces) / len(faces)
        assert factor / 2 < ratio < factor * 2
        assert faces.max() < len(verts)
        radius = np.linalg.norm(verts, axis=1)
        assert np.all(radius > 0.85) and np.all(radius < 1.01)
        # Winding kept: normals still point outwards.
        tri = verts[faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        assert (np.einsum("ij,ij->i", normals, tri.mean(1)) > 0).mean() > 0.95
    same_v, same_f = decimate_mesh(sphere.vertices, sphere.faces, 1)
    assert len(same_f) == len(sphere.faces)


def test_cdr_matches_rclpy_serialisation(human_factory):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from lighthmr_ros.msg import HumanMeshArray
    from lighthmr_ros.ros.cdr import serialize
    from lighthmr_ros.ros.markers import humans_to_markers_cdr
    from lighthmr_ros.ros.messages import humans_to_msg

    header = Header(frame_id="kamera_é")
    header.stamp.sec, header.stamp.nanosec = 3, 99
    humans = [human_factory((0, 0, 3), 1, seed=1), human_factory((1, 0, 3), 2, seed=2)]
    faces = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7]])
    messages = [
        humans_to_markers(humans, header, faces, [-1, 0, 1, 1, 0], 1),
        humans_to_markers([], header, faces, [], 1),
        humans_to_msg(humans, header, np.eye(3), "anny", 10, 20, True, 0.5),
        humans_to_msg([], header, np.eye(3), "smplx", 1, 2, False),
        Image(header=header, encoding="rgb8", height=1, width=1, step=3, data=b"abc"),
        CameraInfo(distortion_model="plumb_bob", d=[0.1, 0.2]),
        DiagnosticArray(status=[DiagnosticStatus(level=b"\x01", name="a", values=[KeyValue(key="k", value="v")])]),
    ]
    for msg in messages:
        ours, theirs = serialize(msg), serialize_message(msg)
        assert len(ours) == len(theirs), type(msg).__name__
        assert deserialize_message(ours, type(msg)) == deserialize_message(theirs, type(msg)), type(msg).__name__
    fast = humans_to_markers_cdr(humans, header, faces, [-1, 0, 1, 1, 0], 1)
    assert fast == serialize(messages[0])  # the numpy path writes the same bytes as the object path
    back = deserialize_message(fast, MarkerArray)
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in back.markers[1].points], humans[0].vertices[faces.reshape(-1)])
    assert deserialize_message(serialize(messages[2]), HumanMeshArray).humans[1].id == 2
