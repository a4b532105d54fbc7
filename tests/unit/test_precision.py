"""Which precision serves a model: int8 variants (manifest entries with `int8_of`) on the CPU provider only,
where the export's gate held, and under 'auto' only where the export marked them faster (cpu_default)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelLoadError
from app.main import create_app
from app.runtime import GPU_PROVIDERS, ModelRegistry, int8_refusal, precision_of

VARIANT = "test-affine-int8"


def add_int8_variant(models: Path, *, held: bool = True, cpu_default: bool = True) -> Path:
    """The tiny fixture's graph again, registered as the int8 variant of test-affine (a stand-in: the runtime
    decides from the manifest entry, never from the graph)."""
    manifest = json.loads((models / "manifest.json").read_text())
    base = manifest["models"][0]
    shutil.copy(models / base["file"], models / "affine_int8.onnx")
    variant = {**base, "id": VARIANT, "file": "affine_int8.onnx", "precision": "int8", "int8_of": base["id"],
               "providers_hint": "cpu", "cpu_default": cpu_default, "gate": {"held": held}}
    manifest["models"].append(variant)
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


@pytest.fixture
def cpu_only() -> None:
    import onnxruntime as ort

    if any(p in GPU_PROVIDERS for p in ort.get_available_providers()):
        pytest.skip("this machine has a GPU provider: 'auto' would not choose int8")


def test_precision_of_reads_the_entry() -> None:
    assert precision_of({}) == "float32"
    assert precision_of({"precision": "int8"}) == "int8"
    assert precision_of({"precision": "float16 inside, float32 in and out"}) == "float16"
    assert precision_of({"quantization": "int8 QDQ as shipped (tf2onnx 1.17)"}) == "int8"


@pytest.mark.parametrize(("precision", "has_gpu", "held", "faster", "served"), [
    ("auto", False, True, True, True),
    ("auto", False, True, False, False),  # not measurably faster: float32 under auto
    ("int8", False, True, False, True),  # asked for: served although not faster
    ("int8", False, False, True, False),  # a gate that did not hold is never overridden
    ("auto", False, False, True, False),
    ("fp32", False, True, True, False),
    ("auto", True, True, True, False),  # GPU providers run float32/float16
    ("int8", True, True, True, False),
])
def test_int8_refusal(precision: str, has_gpu: bool, held: bool, faster: bool, served: bool) -> None:
    entry = {"int8_of": "m", "gate": {"held": held}, "cpu_default": faster}
    assert (int8_refusal(entry, precision, has_gpu) is None) == served


def test_auto_serves_the_int8_variant_under_the_models_id(tiny_models: Path, cpu_only: None) -> None:
    registry = ModelRegistry.load(add_int8_variant(tiny_models), None, 1)
    assert set(registry.models) == {VARIANT}  # loaded instead of the float32 file, not beside it
    assert "test-affine" in registry and registry.get("test-affine").id == VARIANT
    assert set(registry.served_models()) == {"test-affine"}
    assert registry.precision(VARIANT) == "int8" and registry.precision("test-affine") is None
    assert registry.skipped["test-affine"] == f"served by its int8 variant {VARIANT}"


@pytest.mark.parametrize(("precision", "cpu_default", "held", "expected"), [
    ("fp32", True, True, "test-affine"),
    ("auto", False, True, "test-affine"),
    ("int8", False, True, VARIANT),
    ("int8", True, False, "test-affine"),
])
def test_setting_and_manifest_choose(tiny_models: Path, cpu_only: None, precision: str, cpu_default: bool,
                                     held: bool, expected: str) -> None:
    registry = ModelRegistry.load(add_int8_variant(tiny_models, held=held, cpu_default=cpu_default), None, 1,
                                  precision=precision)
    assert set(registry.models) == {expected} and registry.get("test-affine").id == expected
    assert (VARIANT in registry.skipped) == (expected != VARIANT)


def test_unknown_precision_is_refused(tiny_models: Path) -> None:
    with pytest.raises(ModelLoadError, match="precision"):
        ModelRegistry.load(tiny_models, None, 1, precision="int4")


def test_models_endpoint_says_which_precision_runs(tiny_models: Path, cpu_only: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    add_int8_variant(tiny_models)
    for precision, runs in (("auto", VARIANT), ("fp32", "test-affine")):
        monkeypatch.setenv("ATELIER_PRECISION", precision)
        settings = Settings(models_dir=tiny_models, intra_op_threads=1)
        assert settings.precision == precision
        with TestClient(create_app(settings)) as client:
            models = {m["id"]: m for m in client.get("/v1/models").json()["models"]}
        assert models[runs]["loaded"] and models[runs]["precision"] == ("int8" if runs == VARIANT else "float32")
        other = models[VARIANT if runs != VARIANT else "test-affine"]
        assert not other["loaded"] and other["precision"] is None and other["note"]
