"""Images, faces, embeddings, boxes and upload file names never reach the logs (text or JSON) or the disk."""

from __future__ import annotations

import base64
import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.logs import JsonFormatter, RequestIdFilter, TextFormatter
from app.main import create_app
from tests.conftest import MODELS_DIR, REPO_ROOT, encode, photo_bytes


def _files_under(*roots: Path) -> set[Path]:
    found: set[Path] = set()
    for root in roots:
        if root.exists():
            found |= {p for p in root.rglob("*") if p.is_file() and ".pytest_cache" not in p.parts
                      and "__pycache__" not in p.parts}
    return found


def test_verify_and_embed_leave_nothing_in_logs_or_on_disk(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A large upload (over Starlette's default 1 MB spool) must stay in memory too: any temporary file fails.
    def no_temporary_files(*args: object, **kwargs: object) -> object:
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temporary_files)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_temporary_files)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # anything the service writes would land here
    big_photo = encode(np.asarray(Image.open(io.BytesIO(photo_bytes("obama3.jpg"))).convert("RGB")), "PNG")
    assert len(big_photo) > 1_048_576  # above Starlette's default in-memory spool
    watched = (REPO_ROOT / "app", MODELS_DIR, scratch, REPO_ROOT)
    before = _files_under(*watched)
    caplog.set_level(logging.DEBUG)
    # The service's own handlers too (app/logs.py), in both formats, beside caplog's.
    outputs = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [logging.StreamHandler(outputs["text"]), logging.StreamHandler(outputs["json"])]
    for handler, formatter in zip(handlers, (TextFormatter(), JsonFormatter()), strict=True):
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        logging.getLogger().addHandler(handler)
    settings = Settings(models_dir=MODELS_DIR, log_level="debug", warmup=False)
    try:
        with TestClient(create_app(settings)) as client:
            embedded = client.post("/v1/embed", files={"image": ("private-name-1.jpg", photo_bytes("obama.jpg"))},
                                   headers={"X-Request-ID": "privacy-1"}).json()
            verified = client.post("/v1/verify", files={"image_a": ("private-name-2.png", big_photo),
                                                        "image_b": ("private-name-3.jpg", photo_bytes("obama2.jpg"))})
            assert verified.status_code == 200
            json_verify = client.post("/v1/verify", json={
                "image_a": base64.b64encode(photo_bytes("obama.jpg")).decode(),
                "image_b": base64.b64encode(photo_bytes("biden.jpg")).decode()})
            assert json_verify.status_code == 200
            refused = client.post("/v1/detect", files={"image": ("private-name-4.jpg", b"not an image")})
            assert refused.status_code == 422
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
    json_lines = [json.loads(line) for line in outputs["json"].getvalue().splitlines()]
    assert json_lines and all(set(line) <= {"time", "level", "logger", "message", "request_id", "exception"}
                              for line in json_lines)  # fixed fields only: no arguments, extras or bodies
    assert any(line["request_id"] == "privacy-1" for line in json_lines)
    logged = "\n".join([caplog.text, outputs["text"].getvalue(), outputs["json"].getvalue()])
    assert caplog.text, "debug logging captured nothing: the test would prove nothing"
    assert "private-name" not in logged
    for face in embedded["faces"]:
        for value in face["embedding"][:16]:
            assert f"{value:.6f}"[:8] not in logged
        assert f"{face['box'][0]:.4f}" not in logged
    assert f"{verified.json()['similarity']:.6f}" not in logged
    image_b64 = base64.b64encode(photo_bytes("obama.jpg")).decode()
    for start in range(0, 4000, 500):
        assert image_b64[start:start + 40] not in logged
    assert "\\xff\\xd8" not in logged and "JFIF" not in logged
    created = _files_under(*watched) - before
    assert not created, created


def test_creating_the_app_leaves_starlettes_process_wide_spool_size_alone() -> None:
    """The in-memory spool is set on the service's own parser per request (app/intake.py), not on Starlette's
    class for every app in the process; the test above shows large uploads still never reach the disk."""
    from starlette.formparsers import MultiPartParser

    default = MultiPartParser.spool_max_size
    create_app(Settings(models_dir=MODELS_DIR, max_upload_bytes=50_000_000))
    assert MultiPartParser.spool_max_size == default
