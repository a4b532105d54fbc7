"""Image inputs → bytes to upload: a path, bytes, a binary file object, a PIL image or a numpy array.

PIL and numpy are never imported by this package unless such an object is passed: a PIL image is recognised by
its class's module and saved as PNG with its own PIL; a numpy array is encoded as PNG here with zlib (stdlib),
so arrays need no PIL. Arrays are RGB(A) or grayscale uint8, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); OpenCV's
BGR arrays must be converted first (`array[..., ::-1]`)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import IO, Any, Union

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Any]
"""What every image parameter accepts; Any stands for a PIL.Image.Image or a numpy.ndarray."""

# PNG colour types by channel count (PNG spec §11.2.2): gray, gray+alpha, RGB, RGBA.
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def _module_of(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def to_upload(value: ImageInput, name: str = "image") -> tuple[str, bytes]:
    """(file name, bytes) for one image parameter."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return path.name, path.read_bytes()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return name, bytes(value)
    module = _module_of(value)
    if module == "PIL":
        return f"{name}.png", pil_to_png(value)
    if module == "numpy":
        return f"{name}.png", array_to_png(value)
    if hasattr(value, "read"):
        data = value.read()
        if not isinstance(data, bytes):
            raise TypeError(f"{name}: the file object must be opened in binary mode")
        return Path(str(getattr(value, "name", name))).name, data
    raise TypeError(f"{name}: expected a path, bytes, a binary file, a PIL image or a numpy array, "
                    f"not {type(value).__name__}")


def pil_to_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA", "P", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def array_to_png(array: Any) -> bytes:
    """(H, W) or (H, W, C) uint8 → PNG bytes, filter type 0, zlib level 6 (its default)."""
    if str(array.dtype) != "uint8":
        raise ValueError(f"numpy images must be uint8 (got {array.dtype}); scale floats to 0–255 first")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _PNG_COLOUR_TYPES or 0 in array.shape[:2]:
        raise ValueError(f"numpy images are (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}")
    height, width, channels = (int(n) for n in array.shape)
    rows = array.tobytes()  # C order, copying a strided view
    stride = width * channels
    raw = b"".join(b"\x00" + rows[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
