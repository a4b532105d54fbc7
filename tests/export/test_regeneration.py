"""The whole toolchain (`python -m export`, i.e. `make models`) regenerates models/ byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.__main__ import main as export_all
from export.fetch import sha256_file
from tests.conftest import MODELS_DIR


@pytest.mark.slow
def test_make_models_reproduces_every_committed_file(tmp_path: Path) -> None:
    assert export_all(["--models-dir", str(tmp_path)]) == 0
    committed = json.loads((MODELS_DIR / "manifest.json").read_text())
    regenerated = json.loads((tmp_path / "manifest.json").read_text())
    assert regenerated == committed
    for entry in committed["models"]:
        assert sha256_file(tmp_path / entry["file"]) == entry["sha256"] == sha256_file(MODELS_DIR / entry["file"])
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for relative in written:
        assert (tmp_path / relative).read_bytes() == (MODELS_DIR / relative).read_bytes(), relative
    committed_files = sorted(p.relative_to(MODELS_DIR) for p in MODELS_DIR.rglob("*") if p.is_file())
    assert written == committed_files  # nothing stale left behind in models/ either
