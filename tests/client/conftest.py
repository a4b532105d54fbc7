"""One live server per test module (tests/hardening/conftest.py's live_server), with an API key and a small upload
limit, and the photos the client tests send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.conftest import live_server

API_KEY = "client-test-key"
MAX_UPLOAD_BYTES = 5_000_000  # above every photo sent here, so PAYLOAD_TOO_LARGE needs a bigger body


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with live_server(api_keys=API_KEY, max_upload_bytes=str(MAX_UPLOAD_BYTES)) as (base, _):
        yield base


@pytest.fixture(scope="module")
def photos() -> dict[str, Path]:
    from export.fetch import test_photo

    return {name: test_photo(name) for name in ("obama.jpg", "obama2.jpg", "biden.jpg")}
