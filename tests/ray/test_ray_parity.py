"""The same answers on Ray Serve (deploy/ray) as from the plain service, request for request.

One local Ray on loopback for the module (2 CPUs, small object store, no dashboard, no usage stats), the
application deployed once; the plain service is a TestClient over the same Settings. Every request carries
the same X-Request-ID both ways, so error bodies compare whole; JSON bodies compare exactly except
`timings_ms`, images byte for byte.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import MODELS_DIR, photo_bytes

pytestmark = pytest.mark.slow  # ~Ray start, four deployments loading their models, ~40 requests each way

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
from ray import serve  # noqa: E402

from deploy.ray.atelier_serve import APP_NAME, build_app, start_ray  # noqa: E402

KEY = "parity-key"
MAX_UPLOAD = 2_000_000  # above every test photo, so a 413 costs little to provoke


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def settings() -> Settings:
    # One intra-op thread everywhere: the replicas' sessions then do the same arithmetic as the plain service's.
    return Settings(models_dir=MODELS_DIR, intra_op_threads=1, api_keys=KEY, max_upload_bytes=MAX_UPLOAD)


@pytest.fixture(scope="module")
def plain(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def on_ray(settings: Settings) -> Iterator[httpx.Client]:
    port = free_port()
    start_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings, cpus_per_replica=0.5, max_replicas=1), name=APP_NAME, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the Ray deployment never became ready"
                time.sleep(0.5)
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "timings_ms"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def files(**photos: str) -> dict[str, tuple[str, bytes, str]]:
    return {field: (name, photo_bytes(name), "application/octet-stream") for field, name in photos.items()}


AUTH = {"X-API-Key": KEY}
# (id, method, path, request keyword arguments)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("detect", "POST", "/v1/detect", {"files": files(image="astronaut")}),
    ("detect-options", "POST", "/v1/detect",
     {"files": files(image="obama.jpg"), "data": {"min_face_size": "40", "thresholds": "0.6,0.7,0.8"}}),
    ("detect-no-face", "POST", "/v1/detect", {"files": files(image="coffee")}),
    ("detect-json", "POST", "/v1/detect",
     {"json": {"image": base64.b64encode(photo_bytes("biden.jpg")).decode(), "max_faces": 1}}),
    ("detect-annotated", "POST", "/v1/detect?annotate=true", {"files": files(image="astronaut")}),
    ("embed", "POST", "/v1/embed", {"files": files(image="obama.jpg")}),
    ("verify-same", "POST", "/v1/verify", {"files": files(image_a="obama.jpg", image_b="obama2.jpg")}),
    ("verify-different", "POST", "/v1/verify",
     {"files": files(image_a="obama.jpg", image_b="biden.jpg"), "data": {"face": "best_match"}}),
    ("stylize-network", "POST", "/v1/stylize", {"files": files(image="astronaut"),
                                                "data": {"style": "3", "max_side": "256"}}),
    ("stylize-mix-jpeg", "POST", "/v1/stylize",
     {"files": files(image="astronaut"), "data": {"style": "3:0.7,11:0.3", "max_side": "192", "format": "jpeg",
                                                  "strength": "0.6", "preserve_color": "true"}}),
    ("stylize-filter", "POST", "/v1/stylize", {"files": files(image="coffee"), "data": {"style": "stylization"}}),
    ("stylize-arbitrary", "POST", "/v1/stylize",
     {"files": files(image="astronaut", style_image="coffee"), "data": {"max_side": "192"}}),
    ("styles", "GET", "/v1/styles", {}),
    ("preview", "GET", "/v1/styles/3/preview", {}),
    ("models", "GET", "/v1/models", {}),
    ("openapi", "GET", "/openapi.json", {}),
    ("page", "GET", "/", {}),
    ("healthz", "GET", "/healthz", {}),
    # every error code reachable from outside
    ("invalid-image", "POST", "/v1/detect", {"files": {"image": ("x.png", b"not an image at all", "image/png")}}),
    ("invalid-image-embed", "POST", "/v1/embed", {"files": {"image": ("x.jpg", b"\xff\xd8\xff junk", "image/jpeg")}}),
    ("unknown-style", "POST", "/v1/stylize", {"files": files(image="astronaut"), "data": {"style": "no-such-style"}}),
    ("unknown-preview", "GET", "/v1/styles/no-such-style/preview", {}),
    ("invalid-parameter", "POST", "/v1/detect", {"files": files(image="astronaut"), "data": {"min_face_size": "5"}}),
    ("invalid-parameter-verify", "POST", "/v1/verify",
     {"files": files(image_a="obama.jpg", image_b="biden.jpg"), "data": {"threshold": "2"}}),
    ("payload-too-large", "POST", "/v1/detect",
     {"content": b"\x00" * (MAX_UPLOAD + 1), "headers": {"Content-Type": "image/png"}}),
    ("missing-field", "POST", "/v1/verify", {"files": files(image_a="obama.jpg")}),
    ("unsupported-media-type", "POST", "/v1/detect", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}),
    ("no-face", "POST", "/v1/verify", {"files": files(image_a="coffee", image_b="obama.jpg")}),
    ("not-found", "GET", "/v1/no-such-endpoint", {}),
    ("no-key", "POST", "/v1/detect", {"files": files(image="astronaut"), "auth": None}),
    ("wrong-key", "GET", "/v1/models", {"auth": {"X-API-Key": "not-the-key"}}),
    ("bearer-key", "GET", "/v1/styles", {"auth": {"Authorization": f"Bearer {KEY}"}}),
]

EXPECTED_STATUS = {
    "invalid-image": (422, "INVALID_IMAGE"), "invalid-image-embed": (422, "INVALID_IMAGE"),
    "unknown-style": (404, "UNKNOWN_STYLE"), "unknown-preview": (404, "UNKNOWN_STYLE"),
    "invalid-parameter": (422, "INVALID_PARAMETER"), "invalid-parameter-verify": (422, "INVALID_PARAMETER"),
    "payload-too-large": (413, "PAYLOAD_TOO_LARGE"), "missing-field": (422, "MISSING_FIELD"),
    "unsupported-media-type": (415, "UNSUPPORTED_MEDIA_TYPE"), "no-face": (422, "NO_FACE"),
    "not-found": (404, "NOT_FOUND"), "no-key": (401, "UNAUTHORIZED"), "wrong-key": (401, "UNAUTHORIZED"),
}
COMPARED_HEADERS = ("content-type", "x-request-id", "x-faces", "x-style", "www-authenticate")


def send(client: httpx.Client | TestClient, case: str, method: str, path: str, kwargs: dict[str, Any]
         ) -> httpx.Response:
    kwargs = dict(kwargs)
    auth = kwargs.pop("auth", AUTH)
    headers = {**(auth or {}), **kwargs.pop("headers", {}), "X-Request-ID": f"parity-{case}"}
    return client.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize(("case", "method", "path", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_same_answer(plain: TestClient, on_ray: httpx.Client, case: str, method: str, path: str,
                     kwargs: dict[str, Any]) -> None:
    expected = send(plain, case, method, path, kwargs)
    got = send(on_ray, case, method, path, kwargs)
    assert got.status_code == expected.status_code, got.text[:500]
    if case in EXPECTED_STATUS:
        status, code = EXPECTED_STATUS[case]
        assert expected.status_code == status and expected.json()["error"]["code"] == code
    else:
        assert expected.status_code == 200, expected.text[:500]
    for header in COMPARED_HEADERS:
        assert got.headers.get(header) == expected.headers.get(header), header
    if expected.headers["content-type"].startswith("application/json"):
        assert without_timings(got.json()) == without_timings(expected.json())
    else:
        assert got.content == expected.content  # images (stylised, annotated, previews) and the page: same bytes


def test_readiness_reflects_every_deployment(plain: TestClient, on_ray: httpx.Client) -> None:
    expected, got = plain.get("/readyz"), on_ray.get("/readyz")
    assert got.status_code == expected.status_code == 200
    assert got.json() == expected.json()
    assert got.json()["ready"] is True and got.json()["models"] >= 7


def test_metrics_are_served_by_the_ingress(on_ray: httpx.Client) -> None:
    on_ray.get("/v1/styles", headers=AUTH)
    response = on_ray.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'atelier_http_requests_total{method="GET",route="/v1/styles",status="200"}' in response.text
