"""ATELIER_RATE_LIMIT through the HTTP layer: the burst, 429 with Retry-After, per key, exemptions, metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import MODELS_DIR

# One token a minute: nothing refills while a test runs, however slow the machine.
RULE = {"rate_limit": "1/min", "rate_burst": 3}


@pytest.fixture
def keyed_client() -> Iterator[TestClient]:
    settings = Settings(models_dir=MODELS_DIR, warmup=False, api_keys="alpha,beta", **RULE)
    with TestClient(create_app(settings)) as client:
        yield client


def _models(client: TestClient, key: str) -> object:
    return client.get("/v1/models", headers={"X-API-Key": key})


def _limited_total(client: TestClient) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines()
                if line.startswith("atelier_rate_limited_total "))
    return float(line.split()[1])


def test_the_burst_then_429_with_retry_after(keyed_client: TestClient) -> None:
    before = _limited_total(keyed_client)  # the registry is the process's: other tests count too
    assert [_models(keyed_client, "alpha").status_code for _ in range(3)] == [200] * 3  # type: ignore[attr-defined]
    refused = _models(keyed_client, "alpha")
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert refused.json()["error"]["code"] == "RATE_LIMITED"  # type: ignore[attr-defined]
    assert 1 <= int(refused.headers["retry-after"]) <= 60  # type: ignore[attr-defined]
    assert _limited_total(keyed_client) == before + 1


def test_one_keys_flood_leaves_another_key_alone(keyed_client: TestClient) -> None:
    for _ in range(10):
        _models(keyed_client, "alpha")
    assert _models(keyed_client, "beta").status_code == 200  # type: ignore[attr-defined]


def test_health_readiness_metrics_and_bad_keys_are_not_counted(keyed_client: TestClient) -> None:
    for _ in range(10):
        assert keyed_client.get("/healthz").status_code == 200
        assert keyed_client.get("/readyz").status_code == 200
        assert keyed_client.get("/metrics").status_code == 200
        assert _models(keyed_client, "wrong").status_code == 401  # type: ignore[attr-defined]
    assert [_models(keyed_client, "alpha").status_code for _ in range(3)] == [200] * 3  # type: ignore[attr-defined]


def test_without_keys_the_client_address_is_limited() -> None:
    with TestClient(create_app(Settings(models_dir=MODELS_DIR, warmup=False, **RULE))) as client:
        statuses = [client.get("/v1/styles").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_bad_rule_stops_start_up() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(rate_limit="lots")
