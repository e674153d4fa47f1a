"""Output side of bag processing: message definitions, QoS profiles and a staged output directory.

The output bag is written into a temporary directory beside OUTPUT and renamed into place only
when it is complete, so an interrupted run never leaves a half bag where the user expects one.
"""
from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from lighthmr_ros.errors import BagError

PACKAGE = "lighthmr_ros"
MESSAGE_NAMES = ("HumanMesh", "HumanMeshArray", "MeshTopology")

HUMANS_TYPE = f"{PACKAGE}/msg/HumanMeshArray"
TOPOLOGY_TYPE = f"{PACKAGE}/msg/MeshTopology"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"

# rosbag2 (Jazzy) records "infinite" durations as the largest rmw time.
_INFINITE = QosTime(sec=9223372036, nsec=854775807)


def _qos(depth: int, durability: QosDurability) -> Qos:
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


# What the node offers: results reliable and volatile; the topology once, transient-local
# so that `ros2 bag play` latches it for late subscribers (RViz, tools).
STREAM_QOS = _qos(5, QosDurability.VOLATILE)
LATCHED_QOS = _qos(1, QosDurability.TRANSIENT_LOCAL)


def message_dir() -> Path:
    """The folder holding this package's .msg files that the installed messages were built from.

    The installed share/ copy comes first: the message definitions written into the bag must
    describe the bytes rclpy serialises, i.e. the built messages, not a newer source edit.
    """
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # no ament index in this environment (plain venv): look elsewhere
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    try:
        import lighthmr_ros.msg as generated

        # <prefix>/lib/pythonX.Y/site-packages/lighthmr_ros/msg/__init__.py
        candidates.append(Path(generated.__file__).resolve().parents[5] / "share" / PACKAGE / "msg")
    except (ImportError, IndexError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "msg")  # source tree
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in MESSAGE_NAMES):
            return folder
    raise BagError(
        f"cannot find the {PACKAGE} message definitions ({', '.join(MESSAGE_NAMES)}.msg); "
        f"looked in {', '.join(str(c) for c in candidates)}: rebuild the package's messages."
    )


@functools.lru_cache(maxsize=1)
def output_typestore() -> Typestore:
    """ROS 2 Jazzy types plus this package's messages, to write definitions and hashes into bags."""
    store = get_typestore(Stores.ROS2_JAZZY)
    folder = message_dir()
    types = {}
    for name in MESSAGE_NAMES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


def message_definition(msgtype: str) -> tuple[str, str]:
    """(msgdef text with its dependencies, RIHS01 hash) of a type, as rosbag2 stores them."""
    store = output_typestore()
    if msgtype not in store.fielddefs:
        raise BagError(f"no definition of message type {msgtype!r} is known; it cannot be written with metadata.")
    msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    return msgdef, store.hash_rihs01(msgtype)


def _is_relative_to(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _looks_like_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix in {".mcap", ".db3", ".bag"}
    entries = list(path.iterdir())
    return not entries or (path / "metadata.yaml").is_file() or all(
        e.is_file() and (e.suffix in {".mcap", ".db3", ".zstd"} or e.name == "metadata.yaml") for e in entries
    )


def check_output(output: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse outputs that would modify the input or clobber something that is not a bag."""
    out = output.resolve()
    for src in inputs:
        src = src.resolve()
        if _is_relative_to(out, src) or _is_relative_to(src, out):
            raise BagError(f"output {output} overlaps the input {src}; choose an output path outside the input bag.")
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise BagError(f"output {output} exists already; pass --overwrite (overwrite=True) to replace it.")
        if not _looks_like_bag(output):
            raise BagError(f"output {output} exists and is not a rosbag; refusing to delete it, remove it yourself.")
    if not out.parent.is_dir():
        raise BagError(f"the folder of output {output} does not exist; create {out.parent} first.")


@dataclass
class StagedOutput:
    """Context manager: a temporary bag path beside `output`, renamed onto `output` on success only.

    Any exception (KeyboardInterrupt included) removes the temporary directory and leaves
    `output` as it was (absent, or the old bag when overwriting).
    """

    output: Path
    overwrite: bool = False
    _tmp: Path | None = None

    def __enter__(self) -> Path:
        out = self.output
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.resolve().parent))
        return self._tmp / out.name  # rosbags' Writer creates this folder and names its files after it

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tmp, self._tmp = self._tmp, None
        assert tmp is not None
        try:
            if exc_type is None:
                self._commit(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _commit(self, tmp: Path) -> None:
        out = self.output
        new = tmp / out.name
        if not new.is_dir():
            raise BagError(f"no bag was written for {out}.")
        if out.exists() or out.is_symlink():
            if not self.overwrite:  # appeared while we were working
                raise BagError(f"output {out} appeared while processing; pass --overwrite to replace it.")
            old = tmp / (out.name + ".old")
            out.rename(old)  # removed with tmp below
            try:
                new.rename(out)
            except BaseException:
                old.rename(out)  # put the previous bag back
                raise
        else:
            new.rename(out)
