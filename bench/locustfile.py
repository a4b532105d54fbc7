"""Locust users for bench/load.py: closed-loop clients, one class per endpoint, each sending its next request
as soon as the last one is answered. Run by bench/load.py (locust --headless); not a test.

The photos are the registry packages' (export.fetch), read once per Locust process.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from locust import FastHttpUser, constant, task
from PIL import Image

from export.fetch import skimage_photo_png, test_photo

# The registry packages hold portraits, no group photo: the detect users send the four face photos side by side
# in one 1920 x 1080 JPEG (each scaled into a 480 x 1080 column, centred on grey), a photo with four faces.
GROUP_MEMBERS = ("obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg")
GROUP_SIZE = (1920, 1080)


@cache
def photo(name: str) -> bytes:
    return test_photo(name).read_bytes() if name.endswith((".jpg", ".png")) else skimage_photo_png(name)


@cache
def group_photo_1920() -> bytes:
    width, height = GROUP_SIZE
    column = width // len(GROUP_MEMBERS)
    canvas = Image.new("RGB", GROUP_SIZE, (128, 128, 128))
    for index, name in enumerate(GROUP_MEMBERS):
        with Image.open(io.BytesIO(photo(name))) as image:
            member = image.convert("RGB")
            member.thumbnail((column, height), Image.Resampling.LANCZOS)
            canvas.paste(member, (index * column + (column - member.width) // 2, (height - member.height) // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@cache
def stylize_input_512() -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(photo("astronaut"))).convert("RGB"))  # 512 x 512
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


class AtelierUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 30.0

    def post_files(self, path: str, files: dict[str, tuple[str, bytes]], data: dict[str, str] | None = None,
                   name: str | None = None) -> None:
        boundary = "atelierbench"
        parts = []
        for field, (filename, content) in files.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"'
                         f'\r\nContent-Type: application/octet-stream\r\n\r\n'.encode() + content + b"\r\n")
        for field, value in (data or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'
                         .encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        self.client.post(path, data=body, name=name or path,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


class DetectUser(AtelierUser):
    @task
    def detect(self) -> None:
        self.post_files("/v1/detect", {"image": ("group.jpg", group_photo_1920())})


class EmbedUser(AtelierUser):
    @task
    def embed(self) -> None:
        self.post_files("/v1/embed", {"image": ("obama.jpg", photo("obama.jpg"))})


class VerifyUser(AtelierUser):
    @task
    def verify(self) -> None:
        self.post_files("/v1/verify", {"image_a": ("a.jpg", photo("obama.jpg")),
                                       "image_b": ("b.jpg", photo("obama2.jpg"))})


class StylizeUser(AtelierUser):
    @task
    def stylize(self) -> None:
        self.post_files("/v1/stylize", {"image": ("in.jpg", stylize_input_512())},
                        {"style": "3", "max_side": "512", "format": "jpeg"})
