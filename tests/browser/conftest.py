"""Browser fixtures: a real uvicorn server on loopback serving the committed models, and headless Chromium.

Chromium is Debian's package (/usr/bin/chromium) driven by Playwright for Python; Playwright's own browser
download is not used. The tests skip, saying why, when either is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODELS_DIR, REPO_ROOT, photo_bytes

CHROMIUM = Path(os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SERVER_START_TIMEOUT_S = 120.0
DESKTOP = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@contextmanager
def running_server(log_dir: Path, **settings: str) -> Iterator[str]:
    """`uvicorn app.main:create_app --factory` in a subprocess on a free loopback port; yields its URL once ready.

    settings: extra ATELIER_* environment variables (the caller's own ATELIER_* variables are not passed on).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_MODELS_DIR": str(MODELS_DIR), "ATELIER_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    env.update({f"ATELIER_{name.upper()}": value for name, value in settings.items()})
    log_path = log_dir / f"uvicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                status, _ = _get(f"{url}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log_tail = log_path.read_text()[-4000:]
                pytest.fail(f"the server was not ready within {SERVER_START_TIMEOUT_S} s:\n{log_tail}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server the page tests use, serving the committed models.

    ATELIER_TEST_SERVER=http://host:port runs the tests against a server that is already running instead.
    """
    external = os.environ.get("ATELIER_TEST_SERVER")
    if external:
        yield external.rstrip("/")
        return
    with running_server(tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="package")  # Playwright's loop runs while the browser lives: stop it after these tests
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """A fresh browser tab on the demo page; fails the test on any JavaScript error or request off the server."""
    context = browser.new_context(viewport=DESKTOP, base_url=server_url, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    foreign: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: foreign.append(request.url)
            if not request.url.startswith((server_url, "blob:", "data:")) else None)
    page.goto("/")
    page.wait_for_selector("html[data-ready=true]")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not foreign, f"the page requested resources outside Atelier: {foreign}"


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of real photos (Playwright uploads files by path) and of a text file posing as a photo."""
    folder = tmp_path_factory.mktemp("photos")
    paths: dict[str, Path] = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut", "coffee", "chelsea"):
        path = folder / (name if "." in name else f"{name}.png")
        path.write_bytes(photo_bytes(name))
        paths[name] = path
    not_an_image = folder / "holiday.jpg"
    not_an_image.write_text("These are my holiday notes, not a photo.\n")
    paths["not-an-image"] = not_an_image
    return paths


@pytest.fixture(scope="session")
def screenshot_dir() -> Path | None:
    """Where to save the README's screenshots: set ATELIER_SCREENSHOTS=docs to regenerate them."""
    target = os.environ.get("ATELIER_SCREENSHOTS")
    if not target:
        return None
    path = Path(target)
    path = path if path.is_absolute() else REPO_ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path
