"""Provider selection, manifest checks and session loading, on the CPU provider that CI has."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.config import Settings
from app.errors import ModelLoadError
from app.runtime import GPU_PROVIDERS, ModelRegistry, resolve_providers

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert resolve_providers(None, ALL) == ALL
    assert resolve_providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_explicit_list_keeps_order_and_appends_cpu_fallback() -> None:
    assert resolve_providers(["CUDAExecutionProvider"], ALL) == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_explicit_provider_missing_from_build_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="CUDAExecutionProvider"):
        resolve_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"])


def test_settings_parse_provider_list() -> None:
    assert Settings(providers="auto").provider_list() is None
    assert Settings(providers=" CUDAExecutionProvider , CPUExecutionProvider").provider_list() == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_threads_default_to_cores_over_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert Settings(workers=2).threads_per_session() == 4
    assert Settings(workers=16).threads_per_session() == 1
    assert Settings(intra_op_threads=3).threads_per_session() == 3


def test_settings_come_from_atelier_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("ATELIER_REQUIRE_GPU", "true")
    settings = Settings()
    assert settings.max_upload_bytes == 1234 and settings.require_gpu is True


def test_registry_loads_runs_and_reports_cpu(tiny_models: Path) -> None:
    registry = ModelRegistry.load(tiny_models, None, 1)
    assert registry.ready
    model = registry.get("test-affine")
    assert model.active_provider == "CPUExecutionProvider"
    assert model.input_names == ["x"] and model.output_names == ["y"]
    (out,) = model.run({"x": np.arange(8, dtype=np.float32).reshape(2, 4)})
    np.testing.assert_allclose(out, np.arange(8).reshape(2, 4) * 2 + 1)


def test_require_gpu_refuses_to_start_without_gpu(tiny_models: Path) -> None:
    if any(p in GPU_PROVIDERS for p in ort.get_available_providers()):
        pytest.skip("this machine has a GPU provider")
    with pytest.raises(ModelLoadError, match="REQUIRE_GPU"):
        ModelRegistry.load(tiny_models, None, 1, require_gpu=True)


def test_sha256_mismatch_stops_start_up(tiny_models: Path) -> None:
    path = tiny_models / "affine.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        ModelRegistry.load(tiny_models, None, 1)


def test_missing_file_and_missing_manifest(tiny_models: Path, tmp_path: Path) -> None:
    (tiny_models / "affine.onnx").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        ModelRegistry.load(tiny_models, None, 1)
    with pytest.raises(ModelLoadError, match="manifest"):
        ModelRegistry.load(tmp_path / "nowhere", None, 1)


def test_corrupt_file_with_matching_hash_is_a_clear_error(tiny_models: Path) -> None:
    import hashlib

    garbage = b"not an onnx file"
    (tiny_models / "affine.onnx").write_bytes(garbage)
    manifest = json.loads((tiny_models / "manifest.json").read_text())
    manifest["models"][0]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (tiny_models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="cannot load"):
        ModelRegistry.load(tiny_models, None, 1)


def test_gpu_only_variants_are_skipped_on_cpu(tiny_models: Path) -> None:
    if any(p in GPU_PROVIDERS for p in ort.get_available_providers()):
        pytest.skip("this machine has a GPU provider")
    manifest = json.loads((tiny_models / "manifest.json").read_text())
    manifest["models"][0]["providers_hint"] = "gpu"
    (tiny_models / "manifest.json").write_text(json.dumps(manifest))
    registry = ModelRegistry.load(tiny_models, None, 1)
    assert "test-affine" not in registry and "test-affine" in registry.skipped


def test_a_provider_that_fails_to_start_is_dropped_and_the_next_keeps_its_options(
        tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu without TensorRT's libraries falls back by itself, losing the CUDA options: we retry."""
    calls: list[list[tuple[str, dict[str, str]]]] = []
    real_session = ort.InferenceSession

    class FakeGpuSession:
        def __init__(self, path: str, options: ort.SessionOptions, providers: list[tuple[str, dict[str, str]]]):
            calls.append(providers)
            self._real = real_session(path, options, providers=["CPUExecutionProvider"])
            names = [name for name, _ in providers]
            # TensorRT never starts here; CUDA does when asked first.
            self._active = "CUDAExecutionProvider" if names[0] == "CUDAExecutionProvider" or (
                "TensorrtExecutionProvider" in names and "CUDAExecutionProvider" in names) else "CPUExecutionProvider"

        def get_providers(self) -> list[str]:
            return [self._active, "CPUExecutionProvider"]

        def __getattr__(self, name: str) -> object:
            return getattr(self._real, name)

    monkeypatch.setattr(ort, "InferenceSession", FakeGpuSession)
    from app.runtime import load_model, read_manifest

    entry = read_manifest(tiny_models)[0]
    model = load_model(entry, tiny_models, ALL, 1, cudnn_conv_algo_search="HEURISTIC")
    assert model.active_provider == "CUDAExecutionProvider"
    assert [[name for name, _ in attempt] for attempt in calls] == [
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ["CUDAExecutionProvider", "CPUExecutionProvider"]]
    assert calls[1][0] == ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})


def test_idle_threads_do_not_spin_unless_asked(tiny_models: Path) -> None:
    key = "session.intra_op.allow_spinning"
    quiet = ModelRegistry.load(tiny_models, None, 2).get("test-affine").session.get_session_options()
    busy = ModelRegistry.load(tiny_models, None, 2, spinning=True).get("test-affine").session.get_session_options()
    assert quiet.get_session_config_entry(key) == "0"
    assert busy.get_session_config_entry(key) == "1"


def test_threads_by_model_overrides_the_default(tiny_models: Path) -> None:
    default = ModelRegistry.load(tiny_models, None, 2).get("test-affine")
    single = ModelRegistry.load(tiny_models, None, 2, threads_by_model={"test-affine": 1}).get("test-affine")
    assert (default.threads, single.threads) == (2, 1)
    assert default.session.get_session_options().intra_op_num_threads == 2
    assert single.session.get_session_options().intra_op_num_threads == 1
