"""Inputs that decode fine and fail later: in option resolution, in the encoders, at an option's bounds.

The bad-input corpus (corpus.py) is mostly bytes that never decode; schemathesis sends random bodies that never
decode either. These cases get past the decoder, so they reach the pipelines, the encoders and the headers.
Every answer must be 200 or a documented 4xx, never a 5xx.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel

from app.config import Settings
from app.imaging import MAX_OUTPUT_SIDE
from app.main import create_app
from app.routers.detect import DetectOptions
from app.routers.stylize import StylizeOptions
from app.routers.verify import EmbedOptions, VerifyOptions
from tests.conftest import MODELS_DIR, encode

FORMATS = tuple(MAX_OUTPUT_SIDE)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=MODELS_DIR, warmup=False)), raise_server_exceptions=False) as c:
        yield c


def _png(height: int, width: int, seed: int = 0) -> bytes:
    return encode(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


SMALL = _png(40, 56)


def _stylize(client: TestClient, image: bytes, **options: Any) -> Any:
    return client.post("/v1/stylize", files={"image": ("i.png", image, "image/png")},
                       data={k: str(v) for k, v in options.items()})


# ---------------------------------------------------------------- styles that need resolving


@pytest.mark.parametrize(("spec", "resolved"), [
    ("3\u3000", "3"),  # ideographic space: str.strip() removes it, an HTTP header cannot carry it
    ("3\xa0", "3"),  # no-break space: latin-1, but not a token character either
    ("\u2003stylization\u2003", "stylization"),
    ("Ink Sketch on CREAM", "11"),  # a name, case-insensitively, comes back as the id
    ("3\u3000:1,11:3", "3:0.25,11:0.75"),
    ("3:1,3:1", "3"),  # the same style twice is one style
    ("3:\u0661", "3"),  # Python's float() reads any Unicode decimal digit: ARABIC-INDIC ONE is a weight of 1
])
def test_style_header_carries_the_resolved_id(client: TestClient, spec: str, resolved: str) -> None:
    response = _stylize(client, SMALL, style=spec, max_side=64)
    assert response.status_code == 200, response.text
    assert response.headers["x-style"] == resolved


@pytest.mark.parametrize("spec", ["\u98a8", "3\u3000x", "\u200b", "3:1e400", "3:-0", "\x00"])
def test_odd_styles_get_a_4xx_with_a_code(client: TestClient, spec: str) -> None:
    response = _stylize(client, SMALL, style=spec, max_side=64)
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]["code"] in {"UNKNOWN_STYLE", "INVALID_PARAMETER"}


def test_arbitrary_style_image_is_labelled_arbitrary(client: TestClient) -> None:
    response = client.post("/v1/stylize", files={"image": ("i.png", SMALL, "image/png"),
                                                 "style_image": ("s.png", _png(32, 32, 1), "image/png")},
                           data={"max_side": "64"})
    assert response.status_code == 200, response.text
    assert response.headers["x-style"] == "arbitrary"


# ---------------------------------------------------------------- every output format at its size limits


def _sizes() -> Iterator[tuple[int, int]]:
    # Each format's limit, one past it, and the other formats' limits: (height, width), both orientations.
    for side in sorted({*MAX_OUTPUT_SIDE.values()} - {MAX_OUTPUT_SIDE["png"]}):
        for long_side in (side, side + 1):
            yield 2, long_side
            yield long_side, 2


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("height", "width"), list(_sizes()))
def test_extreme_aspect_ratios_in_every_format(client: TestClient, fmt: str, height: int, width: int) -> None:
    response = _stylize(client, _png(height, width), style="stylization", format=fmt, max_side=32)
    if max(height, width) <= MAX_OUTPUT_SIDE[fmt]:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == f"image/{fmt}"
        with Image.open(io.BytesIO(response.content)) as out:
            assert out.size == (width, height)
    else:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_PARAMETER"
        assert str(MAX_OUTPUT_SIDE[fmt]) in error["message"] and "format=png" in error["message"]


def test_annotated_detection_of_a_sliver_is_a_png(client: TestClient) -> None:
    response = client.post("/v1/detect", files={"image": ("i.png", _png(4, 70_000), "image/png")},
                           data={"annotate": "true"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.headers["x-faces"] == "0"


# ---------------------------------------------------------------- every numeric option at its bounds


def _bounds(options: type[BaseModel]) -> Iterator[tuple[str, Any]]:
    """(name, value) for each declared ge/le bound of each numeric option of `options`."""
    for name, info in options.model_fields.items():
        for constraint in info.metadata:
            for attribute in ("ge", "le"):
                value = getattr(constraint, attribute, None)
                if value is not None:
                    yield name, value


ENDPOINTS: list[tuple[str, tuple[str, ...], type[BaseModel], dict[str, str]]] = [
    ("/v1/stylize", ("image",), StylizeOptions, {"style": "7"}),
    ("/v1/detect", ("image",), DetectOptions, {}),
    ("/v1/embed", ("image",), EmbedOptions, {}),
    ("/v1/verify", ("image_a", "image_b"), VerifyOptions, {}),
]
BOUND_CASES = [(path, fields, base, name, value) for path, fields, options, base in ENDPOINTS
               for name, value in _bounds(options)]


def test_bounds_are_found() -> None:
    found = {(path, name) for path, _, _, name, _ in BOUND_CASES}
    assert {("/v1/stylize", "max_side"), ("/v1/stylize", "quality"), ("/v1/detect", "scale_factor"),
            ("/v1/verify", "threshold")} <= found


@pytest.mark.parametrize(("path", "fields", "base", "name", "value"), BOUND_CASES,
                         ids=[f"{c[0]}-{c[3]}={c[4]}" for c in BOUND_CASES])
def test_every_option_at_its_bounds(client: TestClient, path: str, fields: tuple[str, ...], base: dict[str, str],
                                    name: str, value: Any) -> None:
    files = {field: (f"{field}.png", _png(64, 48, seed=i), "image/png") for i, field in enumerate(fields)}
    response = client.post(path, files=files, data={**base, name: str(value)})
    if path == "/v1/verify" and response.status_code == 422:  # noise has no face to compare
        assert response.json()["error"]["code"] == "NO_FACE", response.text
    else:
        assert response.status_code == 200, response.text
