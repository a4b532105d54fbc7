"""Operations endpoints and the shared error shape."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_healthz(tiny_client: TestClient) -> None:
    response = tiny_client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_models_and_providers(tiny_client: TestClient) -> None:
    response = tiny_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "draining": False, "models": 1,
                               "providers": {"test-affine": "CPUExecutionProvider"}}


def test_readyz_is_503_before_start_up(tiny_settings: Settings) -> None:
    client = TestClient(create_app(tiny_settings))  # not entered: the lifespan has not run
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["ready"] is False


def test_models_lists_manifest_with_active_provider(tiny_client: TestClient) -> None:
    (model,) = tiny_client.get("/v1/models").json()["models"]
    assert model["id"] == "test-affine" and model["loaded"] is True
    assert model["active_provider"] == "CPUExecutionProvider"
    assert model["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}]
    assert len(model["sha256"]) == 64


def test_metrics_count_requests_per_route(tiny_client: TestClient) -> None:
    tiny_client.get("/healthz")
    tiny_client.get("/does/not/exist")
    text = tiny_client.get("/metrics").text
    assert 'atelier_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert 'atelier_model_provider_info{model="test-affine",provider="CPUExecutionProvider"} 1.0' in text


def test_unknown_route_and_method_use_the_error_shape(tiny_client: TestClient) -> None:
    response = tiny_client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    response = tiny_client.delete("/healthz")
    assert response.status_code == 405 and response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_openapi_docs_are_served(tiny_client: TestClient) -> None:
    assert tiny_client.get("/docs").status_code == 200
    assert "/v1/models" in tiny_client.get("/openapi.json").json()["paths"]


def test_start_up_fails_on_corrupt_model(tiny_settings: Settings) -> None:
    import pytest

    from app.errors import ModelLoadError

    path = tiny_settings.models_dir / "affine.onnx"
    path.write_bytes(b"x" + path.read_bytes())
    with pytest.raises(ModelLoadError), TestClient(create_app(tiny_settings)):
        pass


def test_docs_load_nothing_from_outside(tiny_client: TestClient) -> None:
    import re

    page = tiny_client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(url.startswith("/") for url in assets), assets
    for url in assets:
        assert tiny_client.get(url).status_code == 200, url
    assert tiny_client.get("/redoc").status_code == 404


def test_not_ready_before_start_up_and_for_missing_models(tiny_settings: Settings, tiny_client: TestClient) -> None:
    cold = TestClient(create_app(tiny_settings))  # lifespan not run: no models yet
    response = cold.post("/v1/detect", content=b"x", headers={"Content-Type": "image/png"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "NOT_READY"
    # The tiny deployment has no MTCNN models: detection is not available, and says so.
    from tests.conftest import encode, gradient_rgb

    response = tiny_client.post("/v1/detect", files={"image": ("x.png", encode(gradient_rgb()), "image/png")})
    assert response.status_code == 503 and response.json()["error"]["code"] == "NOT_READY"


def test_unexpected_errors_are_500_internal_without_details(served_settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import encode, gradient_rgb

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internal detail")

    app = create_app(served_settings.model_copy(update={"warmup": False}))
    with TestClient(app, raise_server_exceptions=False) as raw:
        monkeypatch.setattr(app.state.service.pipelines.detector, "run", broken)
        response = raw.post("/v1/detect", files={"image": ("x.png", encode(gradient_rgb()), "image/png")},
                            headers={"X-Request-ID": "broken-1"})
        assert raw.get("/healthz").status_code == 200
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "INTERNAL", "message": "internal error; the incident was logged",
                                         "request_id": "broken-1"}}
    assert response.headers["x-request-id"] == "broken-1"  # answered outside the request id middleware


def test_models_report_which_precision_runs_on_the_committed_models(client: TestClient) -> None:
    """On the CPU provider, ATELIER_PRECISION=auto: dlib's int8 variant serves the embedder (its gate held and
    it measured faster), everything else runs float32; the fp16 and int8 files that do not run say why."""
    import onnxruntime as ort

    from app.runtime import GPU_PROVIDERS

    models = {m["id"]: m for m in client.get("/v1/models").json()["models"]}
    if any(p in GPU_PROVIDERS for p in ort.get_available_providers()):
        assert models["dlib-face-resnet"]["precision"] == "float32" and not models["dlib-face-resnet-int8"]["loaded"]
        return
    assert models["dlib-face-resnet-int8"]["loaded"] and models["dlib-face-resnet-int8"]["precision"] == "int8"
    assert not models["dlib-face-resnet"]["loaded"] and models["dlib-face-resnet"]["precision"] is None
    assert "served by its int8 variant dlib-face-resnet-int8" in models["dlib-face-resnet"]["note"]
    for model_id in ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet", "style-multi26"):  # MTCNN stays float32
        assert models[model_id]["precision"] == "float32", model_id
    assert models["style-arbitrary-transform"]["precision"] == "int8"  # shipped as int8 QDQ
    assert not models["style-multi26-fp16"]["loaded"] and models["style-multi26-fp16"]["precision"] is None
