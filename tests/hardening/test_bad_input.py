"""Every bad-input case against every image endpoint: the documented status and code, never a 5xx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import MODELS_DIR
from tests.hardening.corpus import Case, _png, build_cases

UPLOAD_LIMIT = 2_000_000  # small, so that the over-limit case stays cheap


@dataclass(frozen=True)
class Endpoint:
    path: str
    fields: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()  # always sent (e.g. the style)
    success: tuple[int, str | None] = (200, None)  # what a valid face-less image gets
    out_of_range: tuple[tuple[str, str], ...] = ()


ENDPOINTS = [
    Endpoint("/v1/detect", ("image",), out_of_range=(("min_face_size", "5"), ("scale_factor", "0.99"))),
    Endpoint("/v1/embed", ("image",), out_of_range=(("thresholds", "0.5,2,0.5"), ("max_faces", "0"))),
    Endpoint("/v1/stylize", ("image",), options=(("style", "stylization"),),
             out_of_range=(("strength", "1.5"), ("max_side", "8"), ("quality", "101"))),
    Endpoint("/v1/verify", ("image_a", "image_b"), success=(422, "NO_FACE"),
             out_of_range=(("threshold", "5"), ("face", "everyone"))),
]
CASES = build_cases(UPLOAD_LIMIT)
FILLER = _png(np.random.default_rng(7).integers(0, 255, (32, 32, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def hard_client() -> Iterator[TestClient]:
    settings = Settings(models_dir=MODELS_DIR, max_upload_bytes=UPLOAD_LIMIT, warmup=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def send(client: TestClient, endpoint: Endpoint, case: Case) -> object:
    options = dict(endpoint.options) | case.options
    if case.raw is not None:
        body, content_type = case.raw
        headers = {"Content-Type": content_type} if content_type else {}
        return client.post(endpoint.path, content=body, headers=headers)
    if case.json is not None:
        payload = dict(case.json)
        if "image" in payload:
            value = payload.pop("image")
            payload[endpoint.fields[0]] = value
            for other in endpoint.fields[1:]:
                payload[other] = base64.b64encode(FILLER).decode()
        return client.post(endpoint.path, json={**payload, **options})
    files = {}
    for index, name in enumerate(endpoint.fields):
        field = case.field_name if (case.field_name and index == 0) else name
        files[field] = ("upload.bin", case.image if index == 0 else FILLER, "application/octet-stream")
    return client.post(endpoint.path, files=files, data=options)


def expected(endpoint: Endpoint, case: Case) -> tuple[int, str | None]:
    if case.status == 200:
        return endpoint.success
    return case.status, case.code


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.path for e in ENDPOINTS])
def test_every_case_gets_its_documented_answer(hard_client: TestClient, endpoint: Endpoint) -> None:
    wrong = []
    for case in CASES:
        response = send(hard_client, endpoint, case)
        status = response.status_code  # type: ignore[attr-defined]
        code = response.json().get("error", {}).get("code") if status != 200 else None  # type: ignore[attr-defined]
        if (status, code) != expected(endpoint, case):
            wrong.append(f"{case.name}: got {status} {code}, expected {expected(endpoint, case)}")
        assert status < 500, f"{case.name} answered {status}"
    assert not wrong, "\n".join(wrong)
    assert hard_client.get("/healthz").status_code == 200
    assert hard_client.get("/readyz").status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.path for e in ENDPOINTS])
def test_out_of_range_options(hard_client: TestClient, endpoint: Endpoint) -> None:
    for key, value in endpoint.out_of_range:
        case = Case(f"{key}={value}", 422, "INVALID_PARAMETER", image=FILLER, options={key: value})
        response = send(hard_client, endpoint, case)
        assert response.status_code == 422, (key, value, response.text)  # type: ignore[attr-defined]
        assert response.json()["error"]["code"] == "INVALID_PARAMETER"  # type: ignore[attr-defined]
