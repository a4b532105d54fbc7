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


def test_http_options_take_their_defaults_and_bounds_from_the_pipelines() -> None:
    """One source for every detection option: what the OpenAPI document shows is what the pipeline enforces."""
    from app.pipelines.mtcnn import MIN_FACE_SIZE_FLOOR, SCALE_FACTOR_RANGE, DetectionParams
    from app.pipelines.style import DEFAULT_MAX_SIDE, MAX_MAX_SIDE, MIN_MAX_SIDE
    from app.routers.detect import DetectOptions
    from app.routers.stylize import StylizeOptions

    detect = DetectOptions.model_json_schema()["properties"]
    defaults = DetectionParams()
    assert detect["min_face_size"]["default"] == defaults.min_face_size
    assert detect["min_face_size"]["minimum"] == MIN_FACE_SIZE_FLOOR
    assert tuple(detect["thresholds"]["default"]) == defaults.thresholds
    assert (detect["scale_factor"]["minimum"], detect["scale_factor"]["maximum"]) == SCALE_FACTOR_RANGE
    assert detect["scale_factor"]["default"] == defaults.scale_factor
    style = StylizeOptions.model_json_schema()["properties"]["max_side"]
    assert (style["minimum"], style["maximum"], style["default"]) == (MIN_MAX_SIDE, MAX_MAX_SIDE, DEFAULT_MAX_SIDE)
