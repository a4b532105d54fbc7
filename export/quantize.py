"""Static int8 quantisation (onnxruntime QDQ, per-channel weights) of an exported float32 graph.

    ranges = calibrate(fp32_model, feeds, spec)          # MinMax over real photos, on this CPU
    check_table(read_table(path, fp32_sha256), ranges)   # the committed table still describes this net
    int8 = quantize(fp32_model, table_ranges, spec)      # a pure function of the fp32 bytes and the table

Why the ranges come from a committed table (export/calibration/<model>.json) rather than straight from the
calibration run: the int8 file depends on every range through its scales and zero points, and the ranges are
maxima of activations that this CPU computes (its instruction set and summation order decide the last bits).
Rounding them to a few digits would still flip a digit now and then on another machine, and with it the
file's bytes. So the ranges are an input of the export, like the weights: written once by `--recalibrate`,
committed, and on every export recomputed and compared with the table (within TABLE_TOLERANCE of each
range's span; the worst deviation is recorded as a measured figure). The int8 file is then quantised from
the table alone and comes out byte-identical on any machine whose fp32 file does; a table that no longer
matches the network or the photos stops the export.

Weights: symmetric int8 per output channel, with reduce_range (7-bit weights): without VNNI, onnxruntime's
x86 kernels multiply uint8 activations by int8 weights with VPMADDUBSW, whose int16 pair sums saturate for
large weights (onnxruntime's quantisation docs); 7-bit weights cannot saturate. Activations: asymmetric uint8.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export.fetch import REPO_ROOT, sha256_bytes

CALIBRATION_DIR = REPO_ROOT / "export" / "calibration"
TABLE_VERSION = 1
TABLE_TOLERANCE = 0.01  # a range may move by 1 % of its span before the table counts as stale
RANGE_DIGITS = 4  # significant digits kept in the table, rounded outward: the range still covers the data


class FidelityGateError(RuntimeError):
    """The int8 graph is not close enough to the float32 one: nothing is written."""


class CalibrationTableError(RuntimeError):
    """The committed calibration table is missing or no longer matches the network and photos."""


@dataclass(frozen=True)
class QuantSpec:
    """What to quantise: node types (everything else stays float32) and nodes left out by name."""

    op_types: tuple[str, ...]
    exclude_nodes: tuple[str, ...] = ()
    reduce_range: bool = True

    def describe(self) -> dict[str, Any]:
        return {"format": "QDQ (onnxruntime.quantization.quantize_static)", "op_types": list(self.op_types),
                "excluded_nodes": list(self.exclude_nodes),
                "weights": "int8 symmetric per output channel" + (", 7-bit (reduce_range)" if self.reduce_range
                                                                  else ""),
                "activations": "uint8 asymmetric, MinMax ranges from the calibration table"}


Ranges = dict[str, tuple[float, float]]


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over an iterable of feed dicts."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._feeds: Iterator[Mapping[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        return None if feed is None else dict(feed)


def _round_outward(low: float, high: float) -> tuple[float, float]:
    def digits(value: float, up: bool) -> float:
        if value == 0.0 or not math.isfinite(value):
            return value
        step = 10.0 ** (math.floor(math.log10(abs(value))) - RANGE_DIGITS + 1)
        return float(f"{(math.ceil(value / step) if up else math.floor(value / step)) * step:.{RANGE_DIGITS}g}")
    return digits(low, up=False), digits(high, up=True)


def calibrate(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], spec: QuantSpec) -> Ranges:
    """MinMax range of every tensor the quantiser needs, over `feeds`, run by onnxruntime on this CPU."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory(prefix="atelier-calib-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        calibrator = create_calibrator(path, list(spec.op_types), augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax,
                                       providers=["CPUExecutionProvider"])
        calibrator.collect_data(_Feeds(feeds))
        data = calibrator.compute_data()
    ranges: Ranges = {}
    for name, value in data.data.items():
        low, high = value.range_value
        ranges[name] = _round_outward(float(np.min(low)), float(np.max(high)))
    return dict(sorted(ranges.items()))


def table_path(model_id: str, directory: Path = CALIBRATION_DIR) -> Path:
    return directory / f"{model_id}.json"


def write_table(path: Path, ranges: Ranges, *, fp32_sha256: str, calibration: str) -> None:
    table = {"table_version": TABLE_VERSION, "method": "MinMax", "fp32_sha256": fp32_sha256,
             "calibration": calibration, "ranges": {k: list(v) for k, v in sorted(ranges.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")


def read_table(path: Path, fp32_sha256: str) -> Ranges:
    """The committed ranges, refused when they were calibrated on another float32 file."""
    if not path.is_file():
        raise CalibrationTableError(f"no calibration table {path}; write it with --recalibrate and commit it")
    table = json.loads(path.read_text())
    if table.get("fp32_sha256") != fp32_sha256:
        raise CalibrationTableError(f"{path.name} was calibrated on another float32 graph (sha256 "
                                    f"{table.get('fp32_sha256')}, now {fp32_sha256}); rerun with --recalibrate")
    return {name: (float(low), float(high)) for name, (low, high) in table["ranges"].items()}


def table_deviation(table: Ranges, fresh: Ranges) -> float:
    """Worst |table - fresh| of any range end, as a fraction of that range's span; raises when stale."""
    if set(table) != set(fresh):
        raise CalibrationTableError(f"calibration table names other tensors than the graph has "
                                    f"({sorted(set(table) ^ set(fresh))[:5]}...); rerun with --recalibrate")
    worst = 0.0
    for name, (low, high) in table.items():
        span = max(high - low, 1e-12)
        worst = max(worst, abs(low - fresh[name][0]) / span, abs(high - fresh[name][1]) / span)
    if worst > TABLE_TOLERANCE:
        raise CalibrationTableError(f"calibration table differs from this calibration by {worst:.3g} of a range "
                                    f"(tolerance {TABLE_TOLERANCE}); the net or the photos changed: "
                                    "rerun with --recalibrate")
    return worst


def quantize(model: onnx.ModelProto, ranges: Ranges, spec: QuantSpec) -> onnx.ModelProto:
    """The QDQ int8 graph of `model` with activation ranges `ranges`: no calibration run, so no CPU arithmetic
    on activations enters the result (weights are quantised by numpy's IEEE operations)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="atelier-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
            name: (np.float32(low), np.float32(high)) for name, (low, high) in ranges.items()}), cache)
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model.SerializeToString())
        quantize_static(str(source), str(target), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(spec.op_types), per_channel=True, reduce_range=spec.reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(spec.exclude_nodes), calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=cache, extra_options={"ActivationSymmetric": False})
        quantized = onnx.load(str(target))
    onnx.checker.check_model(quantized)
    return quantized


def model_sha256(model: onnx.ModelProto) -> str:
    return sha256_bytes(model.SerializeToString())
