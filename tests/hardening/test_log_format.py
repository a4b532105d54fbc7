"""`atelier serve` logs as ATELIER_LOG_FORMAT says, uvicorn's own lines included, and each line of a request
carries its id: read from a live server's output."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import make_tiny_model_dir
from tests.hardening.conftest import live_server


def _serve_and_collect(models: Path, log_format: str) -> tuple[list[str], dict[str, str]]:
    """Output lines of a server that answered a few requests and shut down, and the ids the answers carried."""
    ids: dict[str, str] = {}
    with live_server(models_dir=str(models), log_level="info", log_format=log_format) as (base, process):
        ids["health"] = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "live-health"}).headers["x-request-id"]
        missing = httpx.get(f"{base}/no/such/path")
        assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
        ids["missing"] = missing.headers["x-request-id"]
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    return [line for line in output.decode().splitlines() if line.strip()], ids


def test_json_logs_are_one_object_per_line_with_the_request_id(tmp_path: Path) -> None:
    lines, ids = _serve_and_collect(make_tiny_model_dir(tmp_path / "models"), "json")
    records = [json.loads(line) for line in lines]  # every line, uvicorn's too, is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    loggers = {r["logger"] for r in records}
    assert {"app", "uvicorn.error", "uvicorn.access"} <= loggers, loggers
    ready = next(r for r in records if r["message"].startswith("ready:"))
    assert ready["request_id"] is None  # start-up belongs to no request
    access = {r["request_id"]: r["message"] for r in records if r["logger"] == "uvicorn.access"}
    assert ids["health"] == "live-health"
    assert '"GET /healthz HTTP/1.1" 200' in access["live-health"]
    assert '"GET /no/such/path HTTP/1.1" 404' in access[ids["missing"]]


def test_text_logs_keep_their_format_with_the_request_id(tmp_path: Path) -> None:
    lines, ids = _serve_and_collect(make_tiny_model_dir(tmp_path / "models"), "text")
    assert any(" INFO app [-]: ready:" in line for line in lines), lines
    assert any(" INFO uvicorn.access [live-health]: " in line and "/healthz" in line for line in lines), lines
    assert any(f"[{ids['missing']}]: " in line and "404" in line for line in lines), lines
    assert not any(line.startswith("{") for line in lines)


def test_a_bad_log_format_stops_start_up(tmp_path: Path) -> None:
    import os
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run([sys.executable, "-m", "app.cli", "serve"], cwd=REPO_ROOT, capture_output=True,
                            env={**os.environ, "ATELIER_LOG_FORMAT": "xml"}, timeout=60)
    assert result.returncode != 0 and b"log_format" in result.stderr
