"""Uploads held in memory: bounded body reading, multipart parsing and image decoding.

Starlette's own form parser spools files over 1 MB to temporary files on disk; the demo keeps
every upload in memory instead (bounded by a size limit), so concurrent requests never share
files and nothing is left behind. Each refusal is an UploadError carrying its HTTP status.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from lighthmr_ros.errors import ImageError

#: Formats the demo decodes; anything else is answered with 415.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
MAX_PARTS = 16
MAX_FIELD_BYTES = 4096


class UploadError(ImageError):
    """An upload that is refused; ``status_code`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class FormPart:
    """One part of a multipart body."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Form:
    """A parsed multipart body: plain fields as text, file parts as bytes."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, FormPart] = field(default_factory=dict)


async def read_body(content_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read a request body into memory, refusing (413) anything over ``limit`` bytes.

    The declared Content-Length is checked first so an oversized upload is refused before its
    bytes arrive; the running total is checked too, for chunked bodies and lying clients.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError("The Content-Length header is not a number.", 400) from None
        if declared > limit:
            raise UploadError(_too_large(declared, limit), 413)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise UploadError(_too_large(len(body), limit), 413)
    return bytes(body)


def _too_large(size: int, limit: int) -> str:
    return f"The upload is {size / 2**20:.1f} MiB; send an image under {limit / 2**20:.1f} MiB."


def parse_multipart(content_type: str | None, body: bytes) -> Form:
    """Parse a multipart/form-data body held in memory."""
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError("Send the image as multipart/form-data with a part named 'image'.", 415)
    parts: list[FormPart] = []
    state: dict = {}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise UploadError(f"The form has more than {MAX_PARTS} parts.", 400)
        state.update(headers={}, data=bytearray(), field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name")
        if name is None:
            raise UploadError("A form part has no name.", 400)
        filename = disposition.get(b"filename")
        part_type = state["headers"].get(b"content-type")
        parts.append(
            FormPart(
                name=name.decode("utf-8", "replace"),
                data=bytes(state["data"]),
                filename=None if filename is None else filename.decode("utf-8", "replace"),
                content_type=None if part_type is None else part_type.decode("latin-1"),
            )
        )

    parser = MultipartParser(
        params[b"boundary"],
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python_multipart raises its own errors for malformed bodies
        raise UploadError(f"The multipart body is malformed ({exc}).", 400) from None
    form = Form()
    for part in parts:
        if part.filename is not None:
            form.files[part.name] = part
        elif len(part.data) > MAX_FIELD_BYTES:
            raise UploadError(f"The form field '{part.name}' is too long.", 400)
        else:
            form.fields[part.name] = part.data.decode("utf-8", "replace")
    return form


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image to an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    The pixel count is read from the header and checked before any pixel is decoded, so a
    decompression bomb (a tiny file declaring a huge image) is refused (413) cheaply.
    """
    if not data:
        raise UploadError("The image part is empty; choose an image file.", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError(f"The image has too many pixels; send one under {max_pixels:,} pixels.", 413) from None
    except Image.UnidentifiedImageError:
        raise UploadError(
            f"The upload is not a supported image; send {', '.join(IMAGE_FORMATS)}.", 415
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise UploadError(
            f"The image is {width}x{height} = {width * height:,} pixels; send one under {max_pixels:,} pixels.", 413
        )
    if width < 2 or height < 2:
        raise UploadError(f"The image is {width}x{height}; send one at least 2x2 pixels.", 400)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # truncated data, bad chunks: PIL raises OSError, SyntaxError, ValueError
        raise UploadError(f"The {image.format} image is corrupt or truncated ({exc}).", 400) from None
    return np.ascontiguousarray(rgb)
