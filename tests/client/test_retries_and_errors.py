"""Retries and error mapping, deterministic: httpx.MockTransport answers as scripted (no server), plus one refused
loopback port for real connection errors."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import atelier_client as ac
import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.hardening.conftest import free_port

STYLES = {"styles": [{"id": "0", "name": "zero", "kind": "multi-style", "source": "s", "preview_url": None}]}
FAST = ac.Retry(attempts=4, backoff_s=0.01, max_backoff_s=0.02)


def overloaded(retry_after: str = "0.2") -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": retry_after, "X-Request-ID": "r1"},
                          json={"error": {"code": "OVERLOADED", "message": "busy", "request_id": "r1"}})


def mock(handler: Callable[[httpx.Request], httpx.Response], **options: object) -> ac.Client:
    return ac.Client("http://atelier", transport=httpx.MockTransport(handler), **options)  # type: ignore[arg-type]


def scripted(*answers: httpx.Response | Exception) -> tuple[Callable[[httpx.Request], httpx.Response], list[float]]:
    """A handler giving `answers` in turn (the last one again after that), and the times it was called."""
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, calls


def test_503_with_retry_after_is_retried_after_that_long() -> None:
    handler, calls = scripted(overloaded(), overloaded(), httpx.Response(200, json=STYLES))
    with mock(handler, retry=FAST) as client:
        styles = client.styles()
    assert [s.id for s in styles] == ["0"] and len(calls) == 3
    assert all(later - earlier >= 0.19 for earlier, later in zip(calls, calls[1:], strict=False))


def test_async_retries_the_same_way() -> None:
    handler, calls = scripted(overloaded(), httpx.Response(200, json=STYLES))

    async def scenario() -> list[ac.Style]:
        async with ac.AsyncClient("http://atelier", transport=httpx.MockTransport(handler), retry=FAST) as client:
            return await client.styles()

    assert asyncio.run(scenario())[0].name == "zero" and len(calls) == 2 and calls[1] - calls[0] >= 0.19


def test_posts_are_retried_with_their_whole_body() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return overloaded("0") if len(bodies) < 3 else httpx.Response(
            200, json={"width": 4, "height": 3, "faces": [], "model": "m", "timings_ms": {}})

    with mock(handler, retry=FAST) as client:
        assert client.detect(b"image bytes", min_face_size=40).faces == []
    assert len(bodies) == 3 and all(b"image bytes" in body and b"min_face_size" in body for body in bodies)


def test_attempts_are_bounded_and_the_last_answer_raised() -> None:
    handler, calls = scripted(overloaded("0"))
    with mock(handler, retry=FAST) as client, pytest.raises(ac.Overloaded) as raised:
        client.styles()
    assert len(calls) == FAST.attempts and raised.value.retry_after == 0 and raised.value.request_id == "r1"


def test_no_retry_without_retry_after_or_past_its_cap() -> None:
    not_ready = httpx.Response(503, json={"error": {"code": "NOT_READY", "message": "starting", "request_id": "x"}})
    for answer, error in [(not_ready, ac.NotReady), (overloaded("120"), ac.Overloaded)]:
        handler, calls = scripted(answer)
        with mock(handler, retry=FAST) as client, pytest.raises(error):
            client.styles()
        assert len(calls) == 1


def test_rate_limited_is_retried_after_retry_after() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "0.05"},
                             json={"error": {"code": "RATE_LIMITED", "message": "slow down", "request_id": "x"}})
    handler, calls = scripted(limited, httpx.Response(200, json=STYLES))
    with mock(handler, retry=FAST) as client:
        assert client.styles()
    assert len(calls) == 2


def test_connection_errors_are_retried_with_backoff() -> None:
    refused = httpx.ConnectError("refused")
    handler, calls = scripted(refused, httpx.RemoteProtocolError("server disconnected"),
                              httpx.Response(200, json=STYLES))
    with mock(handler, retry=FAST) as client:
        assert client.styles()
    assert len(calls) == 3 and calls[1] - calls[0] >= FAST.backoff_s / 2


def test_read_timeouts_are_not_retried() -> None:
    handler, calls = scripted(httpx.ReadTimeout("slow"))
    with mock(handler, retry=FAST) as client, pytest.raises(ac.TimedOut):
        client.styles()
    assert len(calls) == 1


def test_a_refused_port_ends_in_connection_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with ac.Client(url, retry=FAST) as client, pytest.raises(ac.ConnectionFailed) as raised:
        client.health()
    assert raised.value.status == 0 and "ConnectError" in raised.value.message
    assert time.monotonic() - started < 5

    async def scenario() -> None:
        async with ac.AsyncClient(url, retry=ac.NO_RETRY) as client:
            await client.health()

    with pytest.raises(ac.ConnectionFailed):
        asyncio.run(scenario())


def test_bodies_that_are_not_atelier_errors() -> None:
    for answer, code in [(httpx.Response(502, text="<html>bad gateway</html>"), "HTTP_ERROR"),
                         (httpx.Response(418, json={"error": {"code": "TEAPOT", "message": "m"}}), "TEAPOT")]:
        handler, _ = scripted(answer)
        with mock(handler) as client, pytest.raises(ac.AtelierError) as raised:
            client.styles()
        assert type(raised.value) in (ac.HttpError, ac.AtelierError) and raised.value.code == code
        assert raised.value.status == answer.status_code


def test_readiness_503_is_an_answer() -> None:
    handler, _ = scripted(httpx.Response(503, json={"ready": False, "draining": True, "models": 7, "providers": {}}))
    with mock(handler) as client:
        assert client.ready() == ac.Readiness(ready=False, draining=True, models=7, providers={})


def test_api_key_and_user_agent_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=STYLES)

    with ac.Client("http://atelier/", api_key="secret", transport=httpx.MockTransport(handler)) as client:
        client.styles()
    assert seen[0].headers["x-api-key"] == "secret" and str(seen[0].url) == "http://atelier/v1/styles"
    assert seen[0].headers["user-agent"].startswith("atelier-client/")


def readme_error_codes() -> dict[str, int | None]:
    section = (REPO_ROOT / "README.md").read_text().split("### Errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+|other) \| `([A-Z_]+)` \|", section, flags=re.MULTILINE)
    return {code: (int(status) if status.isdigit() else None) for status, code in rows}


def test_one_exception_class_per_error_code_of_the_readme() -> None:
    documented = readme_error_codes()
    assert len(documented) >= 20
    assert set(ac.ERRORS_BY_CODE) == set(documented)
    for code, status in documented.items():
        cls = ac.ERRORS_BY_CODE[code]
        assert issubclass(cls, ac.AtelierError) and cls.code == code
        assert status is None or cls.status == status


def test_every_code_the_server_raises_has_a_class() -> None:
    import app.errors

    server_codes = {cls.code for cls in vars(app.errors).values()
                    if isinstance(cls, type) and issubclass(cls, app.errors.AtelierError)}
    assert server_codes <= set(ac.ERRORS_BY_CODE)


def test_client_environment_variables_do_not_configure_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import Settings

    monkeypatch.setenv("ATELIER_URL", "http://elsewhere:1")
    monkeypatch.setenv("ATELIER_API_KEY", "client-side")
    with_client_variables = Settings()
    monkeypatch.delenv("ATELIER_URL")
    monkeypatch.delenv("ATELIER_API_KEY")
    assert "url" not in Settings.model_fields and "api_key" not in Settings.model_fields
    assert with_client_variables == Settings()


def test_errors_print_code_status_request_and_message() -> None:
    error = ac.InvalidImage("not an image", status=422, request_id="abc")
    assert str(error) == "INVALID_IMAGE (422, request abc): not an image"
    assert json.loads(json.dumps({"code": error.code}))["code"] == "INVALID_IMAGE"
