"""Input side of bag processing: open any bag rosbags reads, pick the topics, stream raw CDR.

Every message leaves here as ROS 2 CDR bytes, so the caller deserialises it with rclpy into the
same message objects the node receives (ROS 1 bags are converted with rosbags' own converter).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.typesys import Stores, get_typestore

from lighthmr_ros.bag.writing import LATCHED_QOS, STREAM_QOS
from lighthmr_ros.errors import BagError

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)
_IDL_SEPARATOR = "=" * 80 + "\n"


def open_bag(path: Path) -> AnyReader:
    """An opened AnyReader on a rosbag2 folder, a .mcap/.db3 file or ROS 1 .bag files; BagError if unusable."""
    if not path.exists():
        raise BagError(f"input bag {path} does not exist.")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder (no metadata.yaml); pass the bag folder, a .mcap or .db3 file.")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except Exception as err:  # rosbags, sqlite, mcap and YAML errors all mean the same to the user
        raise BagError(f"cannot read bag {path}, it looks corrupt or truncated: {err}") from err
    return reader


def _describe(topics: dict[str, str], types: Sequence[str] | None = None) -> str:
    names = [f"{t} ({m})" for t, m in sorted(topics.items()) if types is None or m in types]
    return ", ".join(names) if names else "none"


@dataclass(frozen=True)
class Selection:
    """The topics one run reads: the images, their CameraInfo (or None), the ones copied through."""

    image: str
    compressed: bool
    camera_info: str | None
    copy: tuple[str, ...] = field(default_factory=tuple)


def select_topics(
    reader: AnyReader,
    image_topic: str,
    camera_info_topic: str | None = None,
    compressed: str | bool = "auto",
    copy_topics: str | Sequence[str] = "all",
) -> Selection:
    """Resolve the user's topic choices against the bag; BagError naming what the bag has otherwise.

    compressed: "auto" follows the topic's type (and finds `<image_topic>/compressed`),
    True/"true" wants CompressedImage, False/"false" wants Image. camera_info_topic None looks
    for the usual sibling `<camera>/camera_info`; "" or "none" uses no CameraInfo.
    """
    types = {topic: info.msgtype or "?" for topic, info in reader.topics.items()}
    where = reader.paths[0]
    mode = str(compressed).lower()
    if mode not in {"auto", "true", "false"}:
        raise BagError(f"compressed must be auto, true or false, not {compressed!r}.")
    candidates = [image_topic]
    if mode != "false" and not image_topic.endswith("/compressed"):
        candidates.append(image_topic.rstrip("/") + "/compressed")
    wanted = {"auto": IMAGE_TYPES, "true": (COMPRESSED_IMAGE,), "false": (RAW_IMAGE,)}[mode]
    image = next((t for t in candidates if types.get(t) in wanted), None)
    if image is None:
        if image_topic in types and types[image_topic] in IMAGE_TYPES:
            raise BagError(
                f"topic {image_topic} of {where} is {types[image_topic]}, not what compressed={mode} asks for; "
                "use compressed=auto."
            )
        if image_topic in types:
            raise BagError(
                f"topic {image_topic} of {where} is {types[image_topic]}, not an image; "
                f"image topics: {_describe(types, IMAGE_TYPES)}."
            )
        raise BagError(f"{where} has no topic {image_topic}; image topics: {_describe(types, IMAGE_TYPES)}.")

    if camera_info_topic is None:
        base = image[: -len("/compressed")] if image.endswith("/compressed") else image
        siblings = [base.rsplit("/", 1)[0] + "/camera_info", base + "/camera_info"]
        info = next((t for t in siblings if types.get(t) == CAMERA_INFO), None)
    elif camera_info_topic.lower() in {"", "none"}:
        info = None
    elif types.get(camera_info_topic) == CAMERA_INFO:
        info = camera_info_topic
    else:
        raise BagError(
            f"{where} has no CameraInfo topic {camera_info_topic}; "
            f"CameraInfo topics: {_describe(types, (CAMERA_INFO,))}."
        )

    if isinstance(copy_topics, str):
        if copy_topics.lower() == "all":
            copy = tuple(sorted(types))
        elif copy_topics.lower() in {"none", ""}:
            copy = ()
        else:
            copy = tuple(t.strip() for t in copy_topics.split(",") if t.strip())
    else:
        copy = tuple(copy_topics)
    if missing := [t for t in copy if t not in types]:
        raise BagError(f"{where} has no topic {', '.join(missing)} to copy; its topics: {_describe(types)}.")
    return Selection(image=image, compressed=types[image] == COMPRESSED_IMAGE, camera_info=info, copy=copy)


def connections_of(reader: AnyReader, topics: Sequence[str]) -> list[Connection]:
    wanted = set(topics)
    return [c for c in reader.connections if c.topic in wanted]


def iter_messages(reader: AnyReader, connections: Sequence[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
    """(connection, log time ns, raw bytes) in log-time order; storage failures become BagError."""
    if not connections:
        return
    stream = reader.messages(connections=connections)
    while True:
        try:
            item = next(stream)
        except StopIteration:
            return
        except Exception as err:
            raise BagError(f"cannot read bag {reader.paths[0]}, it looks corrupt or truncated: {err}") from err
        yield item


def first_message(reader: AnyReader, topic: str) -> tuple[Connection, int, bytes] | None:
    """The first message of a topic (used to know the intrinsics before the first image)."""
    for item in iter_messages(reader, connections_of(reader, [topic])):
        return item
    return None


class CdrConverter:
    """Turns raw messages of any input connection into ROS 2 CDR bytes of the Jazzy definition."""

    def __init__(self, reader: AnyReader):
        self.reader = reader
        self.target = get_typestore(Stores.ROS2_JAZZY)
        self._converters: dict[str, Callable[[bytes], bytes]] = {}
        self._cache: dict[str, object] = {}

    def __call__(self, connection: Connection, raw: bytes) -> bytes:
        if self.reader.is2:
            return raw
        convert = self._converters.get(connection.msgtype)
        if convert is None:
            convert = self._converters[connection.msgtype] = self._make(connection.msgtype)
        return bytes(convert(raw))

    def _make(self, msgtype: str) -> Callable[[bytes], bytes]:
        from rosbags.convert.converter import generate_message_converter  # ROS 1 -> 2 field migration

        if msgtype not in self.target.fielddefs:
            raise BagError(f"ROS 1 message type {msgtype} has no ROS 2 Jazzy counterpart to convert to.")
        return generate_message_converter(
            self.reader.typestore, self.target, msgtype, msgtype, self._cache, src_is2=False, dst_is2=True
        )

    def definition(self, connection: Connection) -> tuple[str, str, str, list]:
        """(msgdef, rihs01, serialization format, offered QoS) to re-create a connection in a rosbag2 bag."""
        ext = connection.ext
        if self.reader.is2 and isinstance(ext, ConnectionExtRosbag2):
            msgdef, digest = connection.msgdef.data, connection.digest
            if connection.msgdef.format == MessageDefinitionFormat.IDL and not msgdef.startswith(_IDL_SEPARATOR):
                msgdef = f"{_IDL_SEPARATOR}IDL: {connection.msgtype}\n{msgdef}"
            if connection.msgdef.format == MessageDefinitionFormat.NONE or not msgdef or not digest:
                msgdef, digest = self._from_jazzy(connection.msgtype)
            return msgdef, digest, ext.serialization_format, list(ext.offered_qos_profiles)
        msgdef, digest = self._from_jazzy(connection.msgtype)
        latched = bool(getattr(ext, "latching", 0))
        return msgdef, digest, "cdr", [LATCHED_QOS if latched else STREAM_QOS]

    def _from_jazzy(self, msgtype: str) -> tuple[str, str]:
        if msgtype not in self.target.fielddefs:
            raise BagError(f"the input bag has no definition of {msgtype} and ROS 2 Jazzy does not know it.")
        msgdef, _ = self.target.generate_msgdef(msgtype, ros_version=2)
        return msgdef, self.target.hash_rihs01(msgtype)
