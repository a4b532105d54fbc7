"""GET /v1/styles, GET /v1/styles/{id}/preview and POST /v1/stylize through HTTP."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import encode, photo_bytes


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def odd_photo() -> bytes:
    """scikit-image's astronaut cropped to an odd 333 x 517 (width x height) with an alpha gradient."""
    rgb = np.asarray(decode(photo_bytes("astronaut")).convert("RGB").resize((333, 517)))
    alpha = np.tile(np.linspace(0, 255, 333).astype(np.uint8), (517, 1))
    return encode(np.dstack([rgb, alpha]), "PNG")


def stylize(client: TestClient, image: bytes, **options: object) -> object:
    return client.post("/v1/stylize", files={"image": ("in.png", image, "image/png")},
                       data={k: str(v) for k, v in options.items()})


def test_style_list_has_every_kind_and_previews(client: TestClient) -> None:
    styles = client.get("/v1/styles").json()["styles"]
    kinds = {style["kind"] for style in styles}
    assert {"multi-style", "filter", "arbitrary"} <= kinds
    assert sum(style["kind"] == "multi-style" for style in styles) == 26
    with_preview = [s for s in styles if s["preview_url"]]
    assert len(with_preview) >= 26
    preview = client.get(with_preview[0]["preview_url"])
    assert preview.status_code == 200 and preview.headers["content-type"].startswith("image/")
    assert decode(preview.content).size[0] > 0


def test_unknown_preview_is_404(client: TestClient) -> None:
    response = client.get("/v1/styles/no-such-style/preview")
    assert response.status_code == 404 and response.json()["error"]["code"] == "UNKNOWN_STYLE"


@pytest.mark.parametrize("style", ["3", "stylization", "3:0.7,11:0.3"])
def test_output_keeps_odd_size_and_alpha(client: TestClient, style: str) -> None:
    response = stylize(client, odd_photo(), style=style)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    out = decode(response.content)  # type: ignore[attr-defined]
    assert out.size == (333, 517) and out.mode == "RGBA"
    alpha = np.asarray(out)[..., 3]
    np.testing.assert_array_equal(alpha, np.tile(np.linspace(0, 255, 333).astype(np.uint8), (517, 1)))


def test_style_by_name_equals_style_by_id(client: TestClient) -> None:
    styles = {s["id"]: s["name"] for s in client.get("/v1/styles").json()["styles"]}
    data = encode(np.asarray(decode(photo_bytes("astronaut")).convert("RGB").resize((128, 128))), "PNG")
    by_id = stylize(client, data, style="5").content  # type: ignore[attr-defined]
    by_name = stylize(client, data, style=styles["5"]).content  # type: ignore[attr-defined]
    assert by_id == by_name


def test_strength_zero_returns_the_input(client: TestClient) -> None:
    data = encode(np.asarray(decode(photo_bytes("astronaut")).convert("RGB").resize((160, 120))), "PNG")
    out = np.asarray(decode(stylize(client, data, style="3", strength=0).content).convert("RGB"))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(out, np.asarray(decode(data).convert("RGB")))


@pytest.mark.parametrize("fmt,media", [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
def test_output_formats(client: TestClient, fmt: str, media: str) -> None:
    response = stylize(client, odd_photo(), style="pencil-sketch", format=fmt, quality=80)
    assert response.status_code == 200 and response.headers["content-type"] == media  # type: ignore[attr-defined]
    assert decode(response.content).size == (333, 517)  # type: ignore[attr-defined]


def test_max_side_processes_smaller_and_resizes_back(client: TestClient) -> None:
    response = stylize(client, photo_bytes("astronaut"), style="3", max_side=128)
    assert response.status_code == 200 and decode(response.content).size == (512, 512)  # type: ignore[attr-defined]


def test_arbitrary_style_image(client: TestClient) -> None:
    files = {"image": ("a.png", photo_bytes("astronaut")), "style_image": ("c.png", photo_bytes("coffee"))}
    response = client.post("/v1/stylize", files=files, data={"max_side": "256"})
    assert response.status_code == 200 and decode(response.content).size == (512, 512)
    payload = {"image": base64.b64encode(photo_bytes("astronaut")).decode(),
               "style_image": base64.b64encode(photo_bytes("chelsea")).decode(), "format": "jpeg"}
    assert client.post("/v1/stylize", json=payload).headers["content-type"] == "image/jpeg"


def test_raw_body_with_style_in_query(client: TestClient) -> None:
    response = client.post("/v1/stylize?style=detail-enhance", content=photo_bytes("astronaut"),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and decode(response.content).size == (512, 512)


@pytest.mark.parametrize("options,status,code", [
    ({"style": "no-such-style"}, 404, "UNKNOWN_STYLE"),
    ({"style": "3:0.5,nope:0.5"}, 404, "UNKNOWN_STYLE"),
    ({}, 404, "UNKNOWN_STYLE"),
    ({"style": "3", "strength": 1.5}, 422, "INVALID_PARAMETER"),
    ({"style": "3", "strength": "strong"}, 422, "INVALID_PARAMETER"),
    ({"style": "3", "max_side": 8}, 422, "INVALID_PARAMETER"),
    ({"style": "3", "format": "gif"}, 422, "INVALID_PARAMETER"),
    ({"style": "3", "quality": 0}, 422, "INVALID_PARAMETER"),
    ({"style": "3:-1"}, 422, "INVALID_PARAMETER"),
])
def test_errors(client: TestClient, options: dict[str, object], status: int, code: str) -> None:
    response = stylize(client, encode(np.zeros((8, 8, 3), np.uint8), "PNG"), **options)
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.json()["error"]["code"] == code  # type: ignore[attr-defined]
