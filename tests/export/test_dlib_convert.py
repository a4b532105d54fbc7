"""export/convert_dlib.py: the PyTorch rebuild equals dlib on dlib's chips; a full conversion writes a file
and a manifest entry whose graph equals the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export import convert_dlib
from export.fetch import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden" / "dlib" / "chips_dlib.npz"


def test_torch_module_equals_dlib_on_dlibs_chips() -> None:
    golden = np.load(GOLDEN)
    module = convert_dlib.load_module()
    with torch.no_grad():
        ours = module(torch.from_numpy(golden["chips"].transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    assert np.abs(ours - golden["descriptors"]).max() <= 1e-4


@pytest.mark.slow
def test_convert_writes_model_and_manifest(tmp_path: Path) -> None:
    entries = convert_dlib.convert(tmp_path, int8=False)  # the int8 variant: tests/export/test_quantize.py
    assert [e["id"] for e in entries] == ["dlib-face-resnet"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["models"][0]
    assert entry["task"] == "face-embedding" and entry["licence"] == "CC0-1.0"
    assert entry["sources"][0]["sha256"] == convert_dlib.DAT_SHA256
    # regenerates byte for byte: the committed file and manifest entry are what this code makes
    committed = next(
        e
        for e in json.loads((REPO_ROOT / "models" / "manifest.json").read_text())["models"]
        if e["id"] == "dlib-face-resnet"
    )
    assert entry["sha256"] == committed["sha256"]
    session = ort.InferenceSession(str(tmp_path / entry["file"]), providers=["CPUExecutionProvider"])
    golden = np.load(GOLDEN)
    out = session.run(None, {"image": golden["chips"].transpose(0, 3, 1, 2).astype(np.float32)})[0]
    assert np.abs(out - golden["descriptors"]).max() <= 1e-4
