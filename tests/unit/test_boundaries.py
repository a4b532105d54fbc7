"""Layering rules of shared/STYLE.md: the service never loads torch; pipelines know nothing of HTTP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_starting_the_service_never_imports_torch() -> None:
    probe = ("import sys; from app.main import create_app; create_app(); "
             "import app.pipelines.mtcnn, app.pipelines.style, app.pipelines.recognition; "
             "sys.exit(1 if 'torch' in sys.modules or 'onnx' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT).returncode == 0


def test_pipelines_import_no_web_framework() -> None:
    for path in (REPO_ROOT / "app" / "pipelines").glob("*.py"):
        assert not _imported_modules(path) & {"fastapi", "starlette", "pydantic", "torch"}, path.name
