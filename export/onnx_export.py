"""ONNX export through the public torch.onnx.export, plus the allclose check that gates every write."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.manifest import strip_trace_metadata

log = logging.getLogger(__name__)

OPSET = 18  # the default of torch 2.13's dynamo exporter; onnxruntime >= 1.14 runs it


class ParityError(RuntimeError):
    """The exported graph does not reproduce the source framework within tolerance."""


def export_module(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Any = None,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export `module` in eval mode to a single in-memory ModelProto (weights embedded, no side .data file)."""
    module.eval()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            example_inputs,
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model: onnx.ModelProto = program.model_proto
    strip_trace_metadata(model)  # no checkout paths or line numbers in the graph: exports are reproducible
    onnx.checker.check_model(model)
    return model


def run_onnx(model: onnx.ModelProto | bytes, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, dict(feeds))]


def assert_parity(
    name: str,
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    *,
    atol: float,
    rtol: float = 0.0,
) -> float:
    """Raise ParityError unless every output pair is allclose; return the worst absolute difference."""
    if len(expected) != len(actual):
        raise ParityError(f"{name}: {len(expected)} reference outputs, {len(actual)} exported outputs")
    worst = 0.0
    for index, (ref, got) in enumerate(zip(expected, actual, strict=True)):
        if ref.shape != got.shape:
            raise ParityError(f"{name}: output {index} shape {got.shape} != reference {ref.shape}")
        diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if ref.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(got, ref, atol=atol, rtol=rtol):
            raise ParityError(f"{name}: output {index} differs by up to {diff:.3g} (atol {atol}, rtol {rtol})")
    log.info("%s: parity ok, max |diff| %.3g", name, worst)
    return worst


def check_module_parity(
    name: str,
    module: torch.nn.Module,
    model: onnx.ModelProto,
    inputs: Mapping[str, np.ndarray],
    *,
    atol: float,
    rtol: float = 0.0,
) -> float:
    """Run `module` in torch and `model` in onnxruntime on the same inputs and compare every output."""
    module.eval()
    with torch.no_grad():
        reference = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
    if isinstance(reference, torch.Tensor):
        reference = (reference,)
    expected = [r.detach().cpu().numpy() for r in reference]
    return assert_parity(name, expected, run_onnx(model, inputs), atol=atol, rtol=rtol)
