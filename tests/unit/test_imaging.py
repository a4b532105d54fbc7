"""Decoding: formats, EXIF orientation, modes (grayscale, 16-bit, palette, CMYK, alpha), limits, encoding."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.errors import ImageTooLarge, InvalidImage, InvalidParameter, PayloadTooLarge
from app.imaging import check_encodable, decode_base64, decode_image, encode_image
from tests.conftest import encode, gradient_rgb

LIMIT = 40_000_000


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(fmt: str) -> None:
    rgb = gradient_rgb()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(rgb, fmt, **extra), max_pixels=LIMIT)
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (48, 64, 3)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert decoded.alpha is None


def test_jpeg_decodes_close_to_source() -> None:
    rgb = gradient_rgb()
    decoded = decode_image(encode(rgb, "JPEG", quality=95), max_pixels=LIMIT)
    assert decoded.source_format == "JPEG"
    assert np.abs(decoded.rgb.astype(int) - rgb).mean() < 3


# Orientation tag -> how the stored pixels must be transformed for display (EXIF 2.3, tag 0x0112).
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = gradient_rgb(30, 50)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "PNG", exif=exif.tobytes())
    decoded = decode_image(data, max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.rgb, ORIENTATIONS[orientation](stored))


def test_exif_orientation_in_jpeg() -> None:
    stored = gradient_rgb(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), max_pixels=LIMIT)
    assert decoded.rgb.shape == (50, 30, 3)


def test_grayscale_becomes_rgb() -> None:
    gray = gradient_rgb()[..., 0]
    decoded = decode_image(encode(gray, "PNG"), max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.rgb, np.repeat(gray[..., None], 3, axis=2))


def test_16_bit_grayscale_scales_to_8_bit() -> None:
    wide = (np.arange(64, dtype=np.uint32)[None, :].repeat(8, 0) * 1040).astype(np.uint16)  # up to 65520
    image = Image.fromarray(wide)  # mode I;16
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    expected = np.rint(wide.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(decoded.rgb[..., 0], expected)
    assert decoded.rgb[..., 0].max() == 255


def test_16_bit_rgb_png() -> None:
    import cv2

    rgb16 = gradient_rgb().astype(np.uint16) * 257
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))
    assert ok
    decoded = decode_image(data.tobytes(), max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.rgb, gradient_rgb())


def test_palette_with_transparency_keeps_alpha() -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[5:15, 5:25, 3] = 255
    image = Image.fromarray(rgba, "RGBA").convert("P")
    image.info["transparency"] = 0
    palette = Image.fromarray(rgba, "RGBA").quantize(colors=4)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert decoded.alpha is not None
    assert decoded.alpha[10, 10] == 255 and decoded.alpha[0, 0] == 0


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_trns_colour_key_becomes_alpha(mode: str) -> None:
    """PNG's tRNS chunk: in an RGB or grey image, one colour means transparent (and no alpha channel)."""
    rgb = gradient_rgb()
    rgb[5:9, 7:12] = (10, 20, 30)
    image = Image.fromarray(rgb).convert(mode)
    key: object = int(np.asarray(image)[6, 8]) if mode == "L" else (10, 20, 30)
    keyed = np.asarray(image) == key if mode == "L" else np.all(np.asarray(image) == key, axis=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=key)
    decoded = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, np.where(keyed, 0, 255).astype(np.uint8))
    out = Image.open(io.BytesIO(encode_image(decoded.rgb, decoded.alpha, "png")[0]))
    assert out.mode == "RGBA" and np.asarray(out)[6, 8, 3] == 0  # and the answer keeps it


def test_rgba_alpha_is_kept_aside() -> None:
    rgba = np.dstack([gradient_rgb(), np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))])
    decoded = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded.rgb, rgba[..., :3])
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, rgba[..., 3])


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = np.full((16, 16, 3), (200, 40, 40), np.uint8)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    decoded = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert decoded.rgb.shape == (16, 16, 3)
    assert np.abs(decoded.rgb.astype(int) - rgb).max() < 12


def test_first_frame_of_animated_gif() -> None:
    frames = [Image.fromarray(np.full((10, 10, 3), v, np.uint8)) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert decoded.rgb.max() == 0


@pytest.mark.parametrize("data", [b"", b"x", b"GIF89a", b"hello, this is text", b"<svg xmlns='x'></svg>"])
def test_non_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_image(data, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_images_are_invalid(fmt: str, fraction: float) -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # noise: no byte budget left to spare
    data = encode(noisy, fmt)
    with pytest.raises(InvalidImage):
        decode_image(data[: int(len(data) * fraction)], max_pixels=LIMIT)


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = encode(gradient_rgb(100, 100), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).width == 100


def test_decompression_bomb_header_is_refused_without_decoding() -> None:
    # A PNG whose header claims 65535 x 65535: refused from the header, before any pixel is read.
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(
        b"IEND", b"")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=LIMIT)


def test_byte_limit() -> None:
    data = encode(gradient_rgb(), "PNG")
    with pytest.raises(PayloadTooLarge):
        decode_image(data, max_pixels=LIMIT, max_bytes=len(data) - 1)


def test_base64_with_data_uri_and_whitespace() -> None:
    data = encode(gradient_rgb(), "PNG")
    text = base64.b64encode(data).decode()
    wrapped = "data:image/png;base64," + "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert decode_base64(wrapped, "image", 10**6) == data


@pytest.mark.parametrize("text", ["not base64!!", "YWJjZ", "====", 12])
def test_bad_base64(text: object) -> None:
    with pytest.raises((InvalidImage, InvalidParameter)):
        decode_base64(text, "image", 10**6)  # type: ignore[arg-type]


def test_base64_over_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_base64(base64.b64encode(b"x" * 2000).decode(), "image", 1000)


@pytest.mark.parametrize("fmt,media", [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")])
def test_encode_formats(fmt: str, media: str) -> None:
    data, media_type = encode_image(gradient_rgb(), None, fmt)
    assert media_type == media
    assert Image.open(io.BytesIO(data)).size == (64, 48)


def test_encode_png_restores_alpha() -> None:
    alpha = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    data, _ = encode_image(gradient_rgb(), alpha, "png")
    decoded = decode_image(data, max_pixels=LIMIT)
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, alpha)


def test_encode_rejects_unknown_format() -> None:
    with pytest.raises(InvalidParameter):
        encode_image(gradient_rgb(), None, "gif")


@pytest.mark.parametrize(("fmt", "limit"), [("webp", 16_383), ("jpeg", 65_500)])
def test_encoder_side_limits_are_checked_before_encoding(fmt: str, limit: int) -> None:
    check_encodable(limit, 2, fmt)
    check_encodable(2, limit, fmt)
    for width, height in ((limit + 1, 2), (2, limit + 1)):
        with pytest.raises(InvalidParameter, match=f"limited to {limit} px.*format=png"):
            check_encodable(width, height, fmt)
        with pytest.raises(InvalidParameter):
            encode_image(np.zeros((height, width, 3), np.uint8), None, fmt)
    check_encodable(limit + 1, 2, "png")
