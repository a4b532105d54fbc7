"""The bad-input corpus: generated in memory (no binaries committed), each case with the answer it must get.

Run `python -m tests.hardening.corpus OUTDIR` to write the cases to files for manual poking (curl, fuzzers).
Each case is a request body for an image endpoint plus the documented status and error code.
"""

from __future__ import annotations

import base64
import io
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str | None  # None: a 200 answer
    image: bytes | None = None  # sent as the image field(s) of a multipart body
    raw: tuple[bytes, str] | None = None  # (body, content type) sent as is, replacing the multipart body
    json: Any = None  # a JSON body (image fields filled in by the caller when the value is ...)
    field_name: str | None = None  # multipart under another field name than the endpoint's
    options: dict[str, str] = field(default_factory=dict)


def _png(array: np.ndarray, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _encode(array: np.ndarray, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _noise(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's shape) with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(
        b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is patched to claim width x height."""
    data = bytearray(_encode(_noise(16, 16), "JPEG"))
    marker = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, marker + 5, height, width)
    return bytes(data)


def png_with_broken_crc() -> bytes:
    data = bytearray(_png(_noise()))
    data[29] ^= 0xFF  # inside IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(data)


def _tiff_pages() -> bytes:
    frames = [Image.fromarray(_noise(seed=s)) for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0)
    return buffer.getvalue()


def _palette_transparent() -> bytes:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (255, 0, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").quantize(colors=4).save(buffer, format="PNG")
    return buffer.getvalue()


def _cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_noise()).convert("CMYK").save(buffer, format="JPEG")
    return buffer.getvalue()


def _png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def _exif_oriented(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_noise(40, 60, seed=orientation), "JPEG", exif=exif.tobytes())


def build_cases(upload_limit: int) -> list[Case]:
    """Every case; `upload_limit` is the server's ATELIER_MAX_UPLOAD_BYTES (one case goes past it)."""
    good_png = _png(_noise())
    jpeg = _encode(_noise(), "JPEG")
    webp = _encode(_noise(), "WEBP")
    invalid = lambda name, data: Case(name, 422, "INVALID_IMAGE", image=data)  # noqa: E731
    cases = [
        invalid("zero-bytes", b""),
        invalid("one-byte", b"\xff"),
        invalid("random-bytes", np.random.default_rng(1).bytes(4096)),
        invalid("text", b"hello, I am not an image\n" * 20),
        invalid("html", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        invalid("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'),
        invalid("png-broken-crc", png_with_broken_crc()),
        invalid("png-signature-only", b"\x89PNG\r\n\x1a\n"),
        invalid("jpeg-soi-only", b"\xff\xd8\xff"),
        invalid("gif-header-only", b"GIF89a"),
        *[invalid(f"truncated-jpeg-{p}", jpeg[: len(jpeg) * p // 100]) for p in (10, 50, 90)],
        *[invalid(f"truncated-png-{p}", good_png[: len(good_png) * p // 100]) for p in (10, 50, 90)],
        *[invalid(f"truncated-webp-{p}", webp[: len(webp) * p // 100]) for p in (10, 50, 90)],
        Case("png-bomb-65535x65535", 413, "IMAGE_TOO_LARGE", image=png_claiming(65535, 65535)),
        Case("jpeg-claims-60000x60000", 413, "IMAGE_TOO_LARGE", image=jpeg_claiming(60000, 60000)),
        Case("over-byte-limit", 413, "PAYLOAD_TOO_LARGE", image=b"\xff\xd8" + b"\0" * (upload_limit + 10)),
        Case("one-pixel", 200, None, image=_png(_noise(1, 1))),
        Case("two-by-two", 200, None, image=_png(_noise(2, 2))),
        Case("png-16-bit", 200, None, image=_png16()),
        Case("cmyk-jpeg", 200, None, image=_cmyk_jpeg()),
        Case("palette-transparent-png", 200, None, image=_palette_transparent()),
        Case("animated-gif", 200, None, image=_animated_gif()),
        Case("multipage-tiff", 200, None, image=_tiff_pages()),
        *[Case(f"exif-orientation-{o}", 200, None, image=_exif_oriented(o)) for o in range(1, 9)],
        Case("wrong-field-name", 422, "MISSING_FIELD", image=good_png, field_name="file"),
        Case("no-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=(b"", "")),
        Case("text-content-type", 415, "UNSUPPORTED_MEDIA_TYPE", raw=(b"hello", "text/plain")),
        Case("json-not-an-object", 422, "INVALID_PARAMETER", raw=(b"[1, 2, 3]", "application/json")),
        Case("json-malformed", 422, "INVALID_PARAMETER", raw=(b'{"image": ', "application/json")),
        Case("json-empty-object", 422, "MISSING_FIELD", json={}),
        Case("json-bad-base64", 422, "INVALID_IMAGE", json={"image": "$$$ not base64 $$$"}),
        Case("json-image-is-number", 422, "INVALID_PARAMETER", json={"image": 42}),
        Case("json-image-is-list", 422, "INVALID_PARAMETER", json={"image": [1, 2]}),
        Case("json-data-uri", 200, None, json={"image": "data:image/png;base64," + base64.b64encode(
            good_png).decode()}),
        Case("unknown-option", 422, "INVALID_PARAMETER", image=good_png, options={"no_such_option": "1"}),
        Case("option-wrong-type", 422, "INVALID_PARAMETER", image=good_png, options={"max_side": "huge"}),
    ]
    return cases


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "bad-input-corpus")
    target.mkdir(parents=True, exist_ok=True)
    for case in build_cases(20_000_000):
        data = case.image if case.image is not None else case.raw[0] if case.raw else repr(case.json).encode()
        (target / f"{case.name}.bin").write_bytes(data)
    return 0


BuildCases = Callable[[int], list[Case]]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
