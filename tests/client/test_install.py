"""Packaging: `pip install ./client` alone gives atelier_client with httpx and nothing of the server's; the root
distribution's wheel carries atelier_client and the `atelier` command beside app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PIP_ENV = {**os.environ, "PIP_CACHE_DIR": str(REPO_ROOT / ".cache" / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONPATH": ""}


def copy_sources(target: Path, *names: str) -> Path:
    """A copy to build from, so that the build's egg-info and build/ land outside the checkout."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy(source, target / name)
    return target


@pytest.mark.slow
def test_the_client_installs_alone_with_httpx_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    source = copy_sources(tmp_path / "src", "client") / "client"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], check=True, env=PIP_ENV, timeout=300,
                   cwd=tmp_path)
    probe = (
        "import importlib.util, atelier_client, httpx\n"
        "from atelier_client import Client, AsyncClient, InvalidImage\n"
        f"assert atelier_client.__file__.startswith({str(venv)!r}), atelier_client.__file__\n"
        "missing = [m for m in ('fastapi', 'onnxruntime', 'numpy', 'PIL', 'pydantic', 'app', 'tqdm')\n"
        "           if importlib.util.find_spec(m) is not None]\n"
        "assert not missing, missing\n"
        "print('ok')\n"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=PIP_ENV, cwd=tmp_path,
                          timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
    # the batch commands run there too (no progress bar without tqdm); --local says what it needs
    done = subprocess.run([str(python), "-m", "atelier_client", "detect", "--local", str(tmp_path)],
                          capture_output=True, text=True, env=PIP_ENV, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "no images found" in done.stderr
    (tmp_path / "a.png").write_bytes(b"x")
    done = subprocess.run([str(python), "-m", "atelier_client", "detect", "--local", str(tmp_path / "a.png")],
                          capture_output=True, text=True, env=PIP_ENV, cwd=tmp_path, timeout=60)
    assert done.returncode != 0 and "needs the server package" in done.stderr


def test_the_server_wheel_carries_the_client_and_the_command(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "src", "pyproject.toml", "README.md", "app", "export", "client")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, env=PIP_ENV, timeout=300, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("atelier-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"atelier_client/__init__.py", "atelier_client/cli.py", "atelier_client/py.typed",
            "app/cli.py"} <= names
    assert "atelier = app.cli:main" in entry_points
    assert "Requires-Dist: httpx" in metadata and "Requires-Dist: tqdm" in metadata
