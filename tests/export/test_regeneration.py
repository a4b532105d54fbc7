"""The whole toolchain (`python -m export`, i.e. `make models`) regenerates models/ byte for byte.

What is exported must come out identical on any machine: every ONNX file, styles.json, and every manifest
field but the measured parity figures. Two things are measurements rather than exports, because they depend on
the CPU's instruction set and summation order:
- the parity figures (worst |onnxruntime - PyTorch|), held to the tolerance each check enforces;
- the style previews, JPEGs of what the networks render on this CPU: a float that lands on the other side of
  a rounding boundary changes a pixel level, and JPEG spreads it over a block (seen: max 7 levels, mean 0.007,
  between two machines). They must show the same picture: mean |diff| <= 0.5, max <= 32 levels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from export.__main__ import main as export_all
from export.fetch import sha256_file
from export.manifest import MANIFEST_NAME, split_measured
from tests.conftest import MODELS_DIR

PREVIEW_MEAN_LEVELS = 0.5
PREVIEW_MAX_LEVELS = 32


def assert_same_contract_measured_within_tolerance(committed: dict[str, Any], regenerated: dict[str, Any]) -> None:
    assert {k: v for k, v in regenerated.items() if k != "models"} == {
        k: v for k, v in committed.items() if k != "models"}
    assert [e["id"] for e in regenerated["models"]] == [e["id"] for e in committed["models"]]
    for old, new in zip(committed["models"], regenerated["models"], strict=True):
        old_contract, old_measured = split_measured(old)
        new_contract, new_measured = split_measured(new)
        assert new_contract == old_contract, new["id"]
        # The same checks, with the same tolerances, each within its tolerance on both machines.
        assert {check: m["atol"] for check, m in new_measured.items()} == {
            check: m["atol"] for check, m in old_measured.items()}, new["id"]
        for check, measured in [*old_measured.items(), *new_measured.items()]:
            assert 0.0 <= measured["max_abs_diff"] <= measured["atol"], (new["id"], check, measured)


def assert_same_picture(regenerated: Path, committed: Path) -> None:
    with Image.open(regenerated) as a, Image.open(committed) as b:
        new, old = np.asarray(a.convert("RGB"), np.int16), np.asarray(b.convert("RGB"), np.int16)
    assert new.shape == old.shape, regenerated.name
    diff = np.abs(new - old)
    assert diff.mean() <= PREVIEW_MEAN_LEVELS and diff.max() <= PREVIEW_MAX_LEVELS, (
        regenerated.name, float(diff.mean()), int(diff.max()))


def test_contract_comparison_ignores_measured_figures_but_not_the_rest() -> None:
    committed = json.loads((MODELS_DIR / MANIFEST_NAME).read_text())
    regenerated = json.loads(json.dumps(committed))
    measured_entries = [e for e in regenerated["models"] if e.get("parity")]
    assert measured_entries, "no model records its parity figures"
    for entry in measured_entries:
        for measured in entry["parity"].values():
            measured["max_abs_diff"] = measured["atol"] * 0.5  # another machine, another figure
    assert_same_contract_measured_within_tolerance(committed, regenerated)

    over = json.loads(json.dumps(regenerated))
    check = next(e for e in over["models"] if e.get("parity"))["parity"]
    next(iter(check.values()))["max_abs_diff"] = 1.0  # past every tolerance
    with pytest.raises(AssertionError):
        assert_same_contract_measured_within_tolerance(committed, over)

    changed = json.loads((MODELS_DIR / MANIFEST_NAME).read_text())
    changed["models"][0]["sha256"] = "0" * 64
    with pytest.raises(AssertionError):
        assert_same_contract_measured_within_tolerance(committed, changed)


@pytest.mark.slow
def test_make_models_reproduces_every_committed_file(tmp_path: Path) -> None:
    assert export_all(["--models-dir", str(tmp_path)]) == 0
    committed = json.loads((MODELS_DIR / MANIFEST_NAME).read_text())
    regenerated = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert_same_contract_measured_within_tolerance(committed, regenerated)
    for entry in committed["models"]:
        assert sha256_file(tmp_path / entry["file"]) == entry["sha256"] == sha256_file(MODELS_DIR / entry["file"])
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for relative in written:
        if relative == Path(MANIFEST_NAME):  # compared field by field above
            continue
        if relative.suffix == ".jpg":  # a rendered preview
            assert_same_picture(tmp_path / relative, MODELS_DIR / relative)
            continue
        assert (tmp_path / relative).read_bytes() == (MODELS_DIR / relative).read_bytes(), relative
    committed_files = sorted(p.relative_to(MODELS_DIR) for p in MODELS_DIR.rglob("*") if p.is_file())
    assert written == committed_files  # nothing stale left behind in models/ either
