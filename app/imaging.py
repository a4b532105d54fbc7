"""Image intake and output: bytes -> 8-bit RGB array (+ alpha kept aside), and back.

Pillow does the decoding because it reads the size from the header before decoding the pixels (so a
decompression bomb is refused cheaply), applies EXIF orientation, and handles every mode we meet
(grayscale, 16-bit, palette, CMYK, alpha). Pipelines only ever see (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ImageTooLarge, InvalidImage, InvalidParameter, PayloadTooLarge

# Formats the service accepts; MPO is what many cameras write for JPEG with a preview frame.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
OUTPUT_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}

# The largest side each encoder can write. WebP: 14-bit dimensions in its VP8/VP8L headers (libwebp's
# WEBP_MAX_DIMENSION). JPEG: the SOF marker has 16 bits, but libjpeg(-turbo) stops at JPEG_MAX_DIMENSION,
# 65500 (jmorecfg.h; 65535 fails in Pillow's encoder here). PNG: 31-bit (PNG spec 11.2.2); the decode limit
# (max_pixels) is far below that, so PNG can hold whatever was decoded.
MAX_OUTPUT_SIDE = {"png": 2**31 - 1, "jpeg": 65_500, "webp": 16_383}

_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
             cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]
_DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied
    alpha: np.ndarray | None  # (H, W) uint8 when the input had transparency
    source_format: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def decode_base64(text: str, field: str, max_bytes: int) -> bytes:
    """Strict base64 (an optional data-URI prefix is allowed); whitespace and newlines are ignored."""
    if not isinstance(text, str):
        raise InvalidParameter(f"field '{field}' must be a base64 string")
    body = _DATA_URI.sub("", text.strip(), count=1)
    body = "".join(body.split())
    if len(body) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLarge(f"field '{field}' is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"field '{field}' is not valid base64") from None


def _to_rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (H, W, 3) uint8 RGB and an optional (H, W) uint8 alpha."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the full range down to 8 bits rather than clipping.
        wide = np.asarray(image).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None
    # Transparency as an alpha channel, or as a tRNS chunk (PNG): one palette index, or one grey or RGB colour
    # that stands for "transparent" in a P, L, 1 or RGB image. Pillow turns either into alpha on RGBA.
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "1", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))), None


# Peak memory of decoding, per pixel: Pillow's RGBX buffer, the RGB array, EXIF transposition (17 B/px measured
# for a 24 MP JPEG, bench/memory_factors.py), rounded up.
DECODE_BYTES_PER_PIXEL = 20


@contextmanager
def _opened(data: bytes, max_pixels: int, max_bytes: int | None) -> Iterator[Image.Image]:
    """Pillow's lazy open of `data` (the header read, no pixels) after the byte limits, closed afterwards.

    Raises PayloadTooLarge, InvalidImage or ImageTooLarge for what is not an image or too big to accept.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise InvalidImage("the image is empty")
    with warnings.catch_warnings():
        # Pillow warns (and at twice its own limit raises) on very large images; our own limit decides.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"image dimensions exceed {max_pixels} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise InvalidImage("the data is not an image in a supported format") from None
        try:
            _check_header(image, max_pixels)
            yield image
        finally:
            image.close()


def _check_header(image: Image.Image, max_pixels: int) -> None:
    """The format and size as the header states them: InvalidImage or ImageTooLarge before anything is decoded."""
    source_format = image.format or "unknown"
    if source_format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"image format {source_format} is not supported (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")


def peek_size(data: bytes, *, max_pixels: int, max_bytes: int | None = None) -> tuple[int, int]:
    """(height, width) from the image's header alone, nothing decoded: for estimating a job before it runs.

    Raises what decode_image would for the same bytes' limits and header.
    """
    with _opened(data, max_pixels, max_bytes) as image:
        width, height = image.size
    return height, width


def decode_image(data: bytes, *, max_pixels: int, max_bytes: int | None = None) -> DecodedImage:
    """Decode bytes into RGB. Raises InvalidImage, ImageTooLarge or PayloadTooLarge; never anything else."""
    with _opened(data, max_pixels, max_bytes) as image:
        try:
            return _decode_opened(image)
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"image dimensions exceed {max_pixels} pixels") from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error):
            # Pillow's decoders signal truncation and corruption through all of these.
            raise InvalidImage("the image data is truncated or corrupt") from None


def _decode_opened(image: Image.Image) -> DecodedImage:
    """The pixels of an image whose header _check_header accepted."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animations and multi-page files: the first frame
    image.load()
    oriented = ImageOps.exif_transpose(image) or image
    rgb, alpha = _to_rgb_and_alpha(oriented)
    return DecodedImage(rgb=rgb, alpha=alpha, source_format=image.format or "unknown")


def check_encodable(width: int, height: int, fmt: str) -> None:
    """Raise InvalidParameter, naming the limit and the formats that can, unless `fmt` can store width x height.

    Called before the work, so a result that could never be sent is refused before it is computed."""
    if fmt not in OUTPUT_FORMATS:
        raise InvalidParameter(f"format must be one of {', '.join(OUTPUT_FORMATS)}")
    limit = MAX_OUTPUT_SIDE[fmt]
    if max(width, height) > limit:
        others = [f for f, side in MAX_OUTPUT_SIDE.items() if f != fmt and max(width, height) <= side]
        raise InvalidParameter(
            f"a {width}x{height} image cannot be written as {fmt}: its sides are limited to {limit} px; "
            f"use format={' or format='.join(others)}, or send a smaller image")


def encode_image(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str = "png", quality: int = 90) -> tuple[bytes, str]:
    """(H, W, 3) uint8 RGB (+ optional alpha) -> (encoded bytes, media type). JPEG drops the alpha channel."""
    check_encodable(int(rgb.shape[1]), int(rgb.shape[0]), fmt)
    pil_format, media_type = OUTPUT_FORMATS[fmt]
    if fmt == "png":
        # OpenCV's PNG writer, zlib level 1, RLE strategy, Paeth filter only (no per-row filter search): on a
        # stylised 512 px image about 3x faster than Pillow at any level and no larger (665 kB vs 675 kB).
        planes = [rgb[..., 2], rgb[..., 1], rgb[..., 0]] + ([alpha] if alpha is not None else [])
        ok, encoded = cv2.imencode(".png", np.dstack(planes).astype(np.uint8, copy=False), _PNG_FAST)
        if not ok:
            raise InvalidImage("the result could not be encoded as PNG")
        return encoded.tobytes(), media_type
    if alpha is not None and fmt == "webp":
        image = Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA")
    else:
        image = Image.fromarray(rgb.astype(np.uint8, copy=False), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, quality=quality)
    return buffer.getvalue(), media_type
