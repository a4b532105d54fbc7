"""export/quantize.py and the int8 step of export/convert_dlib.py: the int8 file is a pure function of the
float32 file and the committed calibration table; a stale table or a failing gate stops the export."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export import convert_dlib, quantize
from export.fetch import sha256_bytes
from tests.conftest import MODELS_DIR


def _entry(model_id: str) -> dict:
    return next(e for e in json.loads((MODELS_DIR / "manifest.json").read_text())["models"] if e["id"] == model_id)


def _fp32() -> onnx.ModelProto:
    return onnx.load(str(MODELS_DIR / convert_dlib.FILE_NAME))


def test_quantizing_from_the_committed_table_gives_the_committed_bytes() -> None:
    """No calibration run is involved: what another CPU computes for the activations cannot change the file."""
    fp32, entry = _fp32(), _entry(convert_dlib.INT8_MODEL_ID)
    table = quantize.read_table(quantize.table_path(convert_dlib.INT8_MODEL_ID), _entry("dlib-face-resnet")["sha256"])
    int8 = quantize.quantize(fp32, table, convert_dlib.INT8_SPEC)
    # write_model adds the atelier.* metadata; the committed file is the same graph with it
    committed = onnx.load(str(MODELS_DIR / entry["file"]))
    theirs = {p.key: p.value for p in committed.metadata_props}
    from export.manifest import set_metadata, strip_trace_metadata

    strip_trace_metadata(int8)
    set_metadata(int8, {k: theirs[k] for k in ("atelier.id", "atelier.version", "atelier.licence")})
    assert sha256_bytes(int8.SerializeToString()) == entry["sha256"]


def test_table_belongs_to_the_committed_float32_file() -> None:
    path = quantize.table_path(convert_dlib.INT8_MODEL_ID)
    with pytest.raises(quantize.CalibrationTableError, match="another float32 graph"):
        quantize.read_table(path, "0" * 64)
    assert quantize.read_table(path, _entry("dlib-face-resnet")["sha256"])


def test_a_stale_table_is_refused_and_noise_is_not() -> None:
    table = {"a": (-1.0, 3.0), "b": (0.0, 10.0)}
    assert quantize.table_deviation(table, {"a": (-1.0, 3.0), "b": (0.0, 10.0)}) == 0.0
    assert quantize.table_deviation(table, {"a": (-1.0, 3.0 + 4e-3), "b": (0.0, 10.0)}) == pytest.approx(1e-3)
    with pytest.raises(quantize.CalibrationTableError, match="differs"):
        quantize.table_deviation(table, {"a": (-1.0, 3.2), "b": (0.0, 10.0)})
    with pytest.raises(quantize.CalibrationTableError, match="other tensors"):
        quantize.table_deviation(table, {"a": (-1.0, 3.0)})


def test_ranges_round_outward() -> None:
    low, high = quantize._round_outward(-13.7349, 13.0651)
    assert (low, high) == (-13.74, 13.07) and low <= -13.7349 and high >= 13.0651
    assert quantize._round_outward(0.0, 0.000123456) == (0.0, 0.0001235)


def test_the_gate_refuses_a_degraded_int8_graph() -> None:
    """Ranges shrunk to a fifth clip most activations: the gate must raise (the export then writes nothing)."""
    fp32 = _fp32()
    table = quantize.read_table(quantize.table_path(convert_dlib.INT8_MODEL_ID), _entry("dlib-face-resnet")["sha256"])
    clipped = quantize.quantize(fp32, {k: (lo / 5, hi / 5) for k, (lo, hi) in table.items()}, convert_dlib.INT8_SPEC)
    chips, labels = convert_dlib.gate_chips(MODELS_DIR)
    with pytest.raises(quantize.FidelityGateError):
        convert_dlib.check_int8_gate(fp32, clipped, chips, labels)
    good = onnx.load(str(MODELS_DIR / convert_dlib.INT8_FILE_NAME))
    figures = convert_dlib.check_int8_gate(fp32, good, chips, labels)
    assert figures["decision_flips"] == 0 and figures["one_minus_cosine"] <= 1 - convert_dlib.INT8_MIN_COSINE
    assert np.isfinite(figures["one_minus_cosine"])
