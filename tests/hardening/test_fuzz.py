"""Property-based fuzzing of every endpoint from the service's own OpenAPI document (schemathesis).

Bounded: a fixed number of examples per operation, derandomised so a run is repeatable. Checks: no 5xx, and
every response conforms to the schema the service declares for it (status code, content type, body).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from app.config import Settings
from app.main import create_app
from tests.conftest import MODELS_DIR

EXAMPLES_PER_OPERATION = 25
# What the service promises for any request: no 5xx, and answers as its OpenAPI document declares them.
# (positive_data_acceptance is not among them: a schema cannot say "a decodable photo with a face in it",
# so schema-valid random bytes rightly get 422 INVALID_IMAGE or NO_FACE.)
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.negative_data_rejection]

# The schema is read from the app itself; the fixture below starts the same app's lifespan for the calls.
APP = create_app(Settings(models_dir=MODELS_DIR, max_upload_bytes=2_000_000, warmup=False))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    with TestClient(APP):
        yield


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_errors_and_responses_match_schema(operation: schemathesis.APIOperation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz()
