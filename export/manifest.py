"""models/manifest.json: one entry per ONNX file the service serves.

Each entry records where the weights came from (registry package, version, member, sha256), the licence,
the ONNX file's own sha256 and opset, and its input/output contract read from the graph. The service
(app/runtime.py) refuses to start when a file's sha256 differs from its entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from export.fetch import REPO_ROOT, RegistryPackage, sha256_bytes

MODELS_DIR = REPO_ROOT / "models"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
}


def _tensor_contract(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape: list[int | str] = [dim.dim_param if dim.dim_param else int(dim.dim_value) for dim in tensor.shape.dim]
    return {"name": value.name, "dtype": _DTYPES.get(tensor.elem_type, str(tensor.elem_type)), "shape": shape}


def describe_onnx(model: onnx.ModelProto) -> dict[str, Any]:
    """Opset and I/O contract as read from the graph itself (never guessed from the file name)."""
    initializers = {init.name for init in model.graph.initializer}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {
        "opset": opset,
        "inputs": [_tensor_contract(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_tensor_contract(v) for v in model.graph.output],
    }


# Each entry's measured figures live under this one key: {check: {"max_abs_diff": …, "atol": …}}. They vary
# with the CPU's instruction set and summation order, so a regeneration is compared against each check's
# tolerance there, while everything else in the entry (files, sha256, contract) must come out identical.
MEASURED_KEY = "parity"


def parity_record(max_abs_diff: float, atol: float) -> dict[str, float]:
    """One parity check's measured worst difference beside the tolerance the export enforced."""
    return {"max_abs_diff": float(f"{max_abs_diff:.3g}"), "atol": atol}


def split_measured(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(the entry without its measured figures, the measured figures): the first must regenerate identically."""
    contract = {key: value for key, value in entry.items() if key != MEASURED_KEY}
    return contract, dict(entry.get(MEASURED_KEY, {}))


def source_entry(package: RegistryPackage, member: str, sha256: str) -> dict[str, str]:
    return {"registry": package.registry, "package": package.name, "version": package.version,
            "file": member, "sha256": sha256}


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Write key/value pairs into metadata_props, replacing keys already present."""
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key in sorted(metadata):
        model.metadata_props.add(key=key, value=str(metadata[key]))


def strip_trace_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (stack traces with absolute paths and line numbers, FX node
    dumps): it would make a file depend on where, and from which revision of the code, it was exported."""
    nodes = list(model.graph.node) + [node for function in model.functions for node in function.node]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""


def load_manifest(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    path = models_dir / MANIFEST_NAME
    if not path.exists():
        return {"manifest_version": MANIFEST_VERSION, "models": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save_manifest(manifest: dict[str, Any], models_dir: Path = MODELS_DIR) -> None:
    manifest["models"] = sorted(manifest["models"], key=lambda entry: entry["id"])
    path = models_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def write_model(
    model: onnx.ModelProto,
    *,
    model_id: str,
    task: str,
    file_name: str,
    version: str,
    licence: str,
    sources: list[dict[str, str]],
    description: str,
    extra: dict[str, Any] | None = None,
    models_dir: Path = MODELS_DIR,
) -> dict[str, Any]:
    """Serialise `model` to models_dir/file_name and upsert its manifest entry. Call only after parity passed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    strip_trace_metadata(model)  # every file written is independent of the checkout path
    set_metadata(model, {"atelier.id": model_id, "atelier.version": version, "atelier.licence": licence})
    data = model.SerializeToString()
    target = models_dir / file_name
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    entry: dict[str, Any] = {
        "id": model_id,
        "task": task,
        "file": file_name,
        "version": version,
        "sha256": sha256_bytes(data),
        "bytes": len(data),
        "licence": licence,
        "sources": sources,
        "description": description,
        **describe_onnx(model),
        **(extra or {}),
    }
    manifest = load_manifest(models_dir)
    manifest["models"] = [e for e in manifest["models"] if e["id"] != model_id] + [entry]
    save_manifest(manifest, models_dir)
    return entry
