"""Serialise ROS messages to CDR bytes (what rclpy's serialize_message produces), with numpy fast paths.

Marker.points is a sequence of geometry_msgs/Point: rclpy needs one Python object per vertex and
then converts each back in C, about 6 us per point, i.e. most of a frame for a few body meshes.
Here such a sequence can be given as an (N, 3) float64 array and is written with one memory copy.
The walker reads the field layout from the message classes themselves, so it follows whatever
the installed ROS distribution defines (Marker grew texture and mesh_file fields after Humble).
Publishers accept the bytes directly (``publisher.publish(data)``); rosbag writers store them as is.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

# rosidl basic type name -> (struct code, size)
_BASIC = {
    "boolean": ("?", 1), "byte": ("B", 1), "octet": ("B", 1), "char": ("B", 1), "uint8": ("B", 1),
    "int8": ("b", 1), "int16": ("h", 2), "uint16": ("H", 2), "int32": ("i", 4), "uint32": ("I", 4),
    "int64": ("q", 8), "uint64": ("Q", 8), "float": ("f", 4), "double": ("d", 8),
    "float32": ("f", 4), "float64": ("d", 8),
}
_HEADER = b"\x00\x01\x00\x00"  # CDR little endian encapsulation, as rmw_fastrtps writes it


class _Writer:
    def __init__(self):
        self.parts: list[bytes] = [_HEADER]
        self.pos = 0  # offset after the encapsulation header: alignment is relative to it

    def align(self, size: int) -> None:
        pad = (-self.pos) % size
        if pad:
            self.parts.append(b"\x00" * pad)
            self.pos += pad

    def raw(self, data: bytes) -> None:
        self.parts.append(data)
        self.pos += len(data)

    def basic(self, code: str, size: int, value) -> None:
        self.align(size)
        self.raw(struct.pack("<" + code, value))

    def string(self, value: str) -> None:
        data = value.encode("utf-8")
        self.basic("I", 4, len(data) + 1)
        self.raw(data + b"\x00")

    def block(self, values, code: str, size: int) -> None:
        """A run of basic values without a count (the body of an array or sequence)."""
        if isinstance(values, (bytes, bytearray)):
            data = bytes(values)
        else:
            data = np.ascontiguousarray(values, dtype=np.dtype("<" + code)).tobytes()
        if data:
            self.align(size)
            self.raw(data)


def _parse(type_name: str) -> tuple[str, str, int | None]:
    """'sequence<float, 5>' -> ('sequence', 'float', None); 'double[9]' -> ('array', 'double', 9)."""
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<"):-1].split(",")[0].strip()
        return "sequence", inner, None
    if type_name.endswith("]"):
        inner, _, n = type_name[:-1].rpartition("[")
        return "array", inner, int(n)
    return "single", type_name, None


def _is_string(name: str) -> bool:
    return name == "string" or name.startswith("string<") or name == "wstring" or name.startswith("wstring<")


def _write_message(w: _Writer, msg, arrays: dict[int, dict[str, np.ndarray]]) -> None:
    override = arrays.get(id(msg), {})
    for field, type_name in msg.get_fields_and_field_types().items():
        value = override.get(field)
        if value is None:
            value = getattr(msg, field)
        kind, inner, _ = _parse(type_name)
        if kind == "single":
            _write_value(w, inner, value, arrays)
            continue
        if kind == "sequence":
            w.basic("I", 4, len(value))
        if inner in _BASIC:
            code, size = _BASIC[inner]
            w.block(value, code, size)
        elif isinstance(value, np.ndarray) and not _is_string(inner):
            # A sequence of flat messages given as an (N, fields) array: one copy.
            code, size = ("f", 4) if value.dtype == np.float32 else ("d", 8)
            w.block(value, code, size)
        else:
            for item in value:
                _write_value(w, inner, item, arrays)


def _write_value(w: _Writer, type_name: str, value, arrays) -> None:
    if type_name in _BASIC:
        code, size = _BASIC[type_name]
        if code == "B" and isinstance(value, (bytes, bytearray)):
            value = value[0]
        w.basic(code, size, value)
    elif _is_string(type_name):
        w.string(value)
    else:
        _write_message(w, value, arrays)


def serialize(msg: Any, arrays: dict[int, dict[str, np.ndarray]] | None = None) -> bytes:
    """CDR bytes of ``msg``; ``arrays`` maps id(sub-message) -> {field: ndarray} to replace fields.

    A replaced sequence of messages is an (N, k) float64 (or float32) array whose rows are the
    messages' fields in order (geometry_msgs/Point: x, y, z).
    """
    w = _Writer()
    _write_message(w, msg, arrays or {})
    return b"".join(w.parts)
