"""API keys and CORS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


@pytest.fixture
def keyed_client(tiny_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# operators\nfile-key-1\n\n")
    settings = Settings(models_dir=tiny_models, api_keys="key-a, key-b", api_key_file=key_file)
    with TestClient(create_app(settings)) as client:
        yield client


def test_v1_needs_a_key_when_keys_are_configured(keyed_client: TestClient) -> None:
    response = keyed_client.get("/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = keyed_client.get("/v1/models", headers={"X-API-Key": "key-c"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
    assert keyed_client.get("/v1/models", headers={"Authorization": "Basic a2V5LWE="}).status_code == 401


@pytest.mark.parametrize("headers", [
    {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}, {"Authorization": "Bearer key-a"},
    {"Authorization": "bearer file-key-1"},
])
def test_valid_keys_are_accepted(keyed_client: TestClient, headers: dict[str, str]) -> None:
    assert keyed_client.get("/v1/models", headers=headers).status_code == 200


def test_health_readiness_and_metrics_stay_open(keyed_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert keyed_client.get(path).status_code == 200


def test_no_keys_means_open(tiny_client: TestClient) -> None:
    assert tiny_client.get("/v1/models").status_code == 200


def test_cors_is_off_unless_configured(tiny_client: TestClient, tiny_models: Path) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in tiny_client.options("/v1/models", headers=preflight).headers
    settings = Settings(models_dir=tiny_models, cors_origins="https://example.org")
    with TestClient(create_app(settings)) as client:
        response = client.options("/v1/models", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"
