"""In-memory upload handling of the web demo: body limits, multipart parsing, image decoding."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from fixtures_web import encode_image, png_declaring
from PIL import Image

from lighthmr_ros.errors import ImageError
from lighthmr_ros.web.uploads import UploadError, decode_image, parse_multipart, read_body


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


def _read(content_length, parts, limit):
    return asyncio.run(read_body(content_length, _chunks(*parts), limit))


def test_read_body_within_limit():
    assert _read("6", [b"abc", b"def"], 6) == b"abcdef"


@pytest.mark.parametrize("declared", ["1000", None])
def test_read_body_over_limit_is_413(declared):
    # declared too large: refused before reading; undeclared (chunked): refused while reading
    with pytest.raises(UploadError) as info:
        _read(declared, [b"x" * 600, b"x" * 600], 1000)
    assert info.value.status_code == 413
    assert "MiB" in str(info.value)


def test_read_body_bad_content_length_is_400():
    with pytest.raises(UploadError) as info:
        _read("ten", [b""], 10)
    assert info.value.status_code == 400


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ123") -> tuple[str, bytes]:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: image/png\r\n"
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def test_parse_multipart_fields_and_file():
    payload = bytes(range(256)) * 10 + b"\r\n--not-the-boundary\r\n"
    content_type, body = _multipart([("det_threshold", None, b"0.25"), ("image", "a.png", payload)])
    form = parse_multipart(content_type, body)
    assert form.fields == {"det_threshold": "0.25"}
    assert form.files["image"].data == payload
    assert form.files["image"].filename == "a.png"
    assert form.files["image"].content_type == "image/png"


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data"])
def test_parse_multipart_wrong_type_is_415(content_type):
    with pytest.raises(UploadError) as info:
        parse_multipart(content_type, b"{}")
    assert info.value.status_code == 415


def test_parse_multipart_malformed_is_400():
    with pytest.raises(UploadError) as info:
        parse_multipart("multipart/form-data; boundary=abc", b"--abc\r\nno-colon-header\r\n\r\nx\r\n--abc--\r\n")
    assert info.value.status_code == 400


def test_parse_multipart_too_many_parts_is_400():
    content_type, body = _multipart([(f"f{i}", None, b"1") for i in range(40)])
    with pytest.raises(UploadError) as info:
        parse_multipart(content_type, body)
    assert info.value.status_code == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_decode_image_formats(fmt):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    out = decode_image(encode_image(rgb, fmt), max_pixels=10_000)
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    if fmt in ("PNG", "BMP"):  # lossless
        np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_decode_image_converts_to_rgb(mode):
    image = Image.new(mode, (10, 6))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), 1000).shape == (6, 10, 3)


def test_decode_image_applies_exif_orientation():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = 255  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode_image(rgb, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, 10_000)
    assert out.shape == (30, 20, 3)
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the white band is now on top


@pytest.mark.parametrize(
    "data,status",
    [
        (b"", 400),
        (b"hello, this is not an image", 415),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", 415),
        (encode_image(np.zeros((8, 8, 3), np.uint8), "GIF"), 415),  # a real image in a refused format
    ],
)
def test_decode_image_refuses_non_images(data, status):
    with pytest.raises(UploadError) as info:
        decode_image(data, 10_000)
    assert info.value.status_code == status
    assert isinstance(info.value, ImageError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_image_truncated_is_400(fmt):
    rgb = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode_image(rgb, fmt)
    with pytest.raises(UploadError) as info:
        decode_image(data[: len(data) // 2], 10_000)
    assert info.value.status_code == 400
    assert "corrupt" in str(info.value)


def test_decode_image_pixel_limit_is_413():
    data = encode_image(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(UploadError) as info:
        decode_image(data, max_pixels=64 * 63)
    assert info.value.status_code == 413
    assert "pixels" in str(info.value)


@pytest.mark.parametrize("side", [9_000, 60_000])  # under and over Pillow's own bomb limit (2 x 89.5 MP)
def test_decode_image_bomb_header_refused_before_decoding(side):
    data = png_declaring(side, side)
    assert len(data) < 200
    with pytest.raises(UploadError) as info:
        decode_image(data, max_pixels=40_000_000)
    assert info.value.status_code == 413
