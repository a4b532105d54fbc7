"""Shared fixtures: settings pointing at a models folder, a TestClient running the real lifespan."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image

from app.config import Settings
from app.main import create_app

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"


def make_tiny_model_dir(directory: Path) -> Path:
    """A models folder holding one two-op test graph (y = x * 2 + 1) and a manifest for it.

    It exercises the runtime's loading, hashing and provider logic; it is a fixture, never served as a model.
    """
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine", [x], [y], initializer=[two, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    data = model.SerializeToString()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "affine.onnx").write_bytes(data)
    import hashlib

    entry = {
        "id": "test-affine", "task": "test", "file": "affine.onnx", "version": "1",
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "licence": "CC0-1.0",
        "sources": [], "description": "test fixture", "opset": 18,
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 4]}],
    }
    (directory / "manifest.json").write_text(json.dumps({"manifest_version": 1, "models": [entry]}))
    onnx.checker.check_model(model)
    return directory


@pytest.fixture
def tiny_models(tmp_path: Path) -> Path:
    return make_tiny_model_dir(tmp_path / "models")


@pytest.fixture
def tiny_settings(tiny_models: Path) -> Settings:
    return Settings(models_dir=tiny_models, intra_op_threads=1)


@pytest.fixture
def tiny_client(tiny_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings)) as client:
        yield client


def encode(array: np.ndarray, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def gradient_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 with distinct rows, columns and channels, so flips and rotations are detectable."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                     (xs + ys) % 256], axis=2).astype(np.uint8)


@pytest.fixture(scope="session")
def served_settings() -> Settings:
    """The committed models, as `make run` serves them."""
    return Settings(models_dir=MODELS_DIR)


@pytest.fixture(scope="session")
def client(served_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(served_settings)) as test_client:
        yield test_client


def photo_bytes(name: str) -> bytes:
    """A real photograph from a registry package (see export/fetch.py's TEST_PHOTOS), or a scikit-image sample."""
    from export.fetch import TEST_PHOTOS, skimage_photo_png, test_photo

    if name in TEST_PHOTOS:
        return test_photo(name).read_bytes()
    return skimage_photo_png(name)
