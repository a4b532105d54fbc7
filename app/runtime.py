"""onnxruntime sessions: read the manifest, verify each file, choose providers, warm up.

Sessions are created in the lifespan (after uvicorn forks its workers), once per process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app import metrics
from app.deadline import current_deadline
from app.errors import InferenceFailed, ModelLoadError

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
AUTO_ORDER = (*GPU_PROVIDERS, "CPUExecutionProvider")
# After a run on an input this large, onnxruntime's CPU arena gives its free chunks back. The arena keeps what a
# run needed for later runs of that session, and every session has its own: a 2048x2048 stylisation left 3.0 GB
# behind (560 MB with shrinking, for 1.25x its time), which a later detection would add to, whatever the memory
# budget reserved. Below ~1 MP the arena is kept: small runs are most of the traffic, and reusing it is faster.
SHRINK_ARENA_ABOVE_ELEMENTS = 3 * 1024 * 1024
PRECISIONS = ("auto", "fp32", "int8")  # Settings.precision
_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


def resolve_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """Providers to ask onnxruntime for, most preferred first. CPU is always last as the fallback.

    `requested=None` is 'auto': every GPU provider this onnxruntime build offers, then CPU.
    An explicit list must name providers this build has.
    """
    if requested is None:
        chosen = [p for p in AUTO_ORDER if p in available]
    else:
        unknown = [p for p in requested if p not in available]
        if unknown:
            raise ModelLoadError(
                f"provider(s) {', '.join(unknown)} not available in this onnxruntime build "
                f"(available: {', '.join(available)})"
            )
        chosen = list(requested)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_manifest(models_dir: Path) -> list[dict[str, Any]]:
    path = models_dir / "manifest.json"
    if not path.exists():
        raise ModelLoadError(f"no model manifest at {path}; regenerate models with `make models`")
    try:
        data = json.loads(path.read_text())
        entries: list[dict[str, Any]] = list(data["models"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"model manifest {path} is unreadable: {exc}") from exc
    return entries


def precision_of(entry: Mapping[str, Any]) -> str:
    """float32, float16 or int8: the arithmetic of the entry's graph, as its manifest entry records it."""
    recorded = str(entry.get("precision") or entry.get("quantization") or "float32")
    for precision in ("int8", "float16"):
        if recorded.startswith(precision):
            return precision
    return "float32"


def int8_refusal(entry: Mapping[str, Any], precision: str, has_gpu: bool) -> str | None:
    """Why an int8 variant (an entry with `int8_of`) is not served instead of its float32 model; None when it is.

    int8 runs on the CPU provider only (GPU providers serve float32/float16), only where the export's fidelity
    gate held, and under 'auto' only where the export marked it as measurably faster on the CPU (cpu_default,
    from bench/bench_int8.py); 'int8' serves it wherever its gate held, 'fp32' never.
    """
    if has_gpu:
        return "int8 variant: served on the CPU provider only; GPU providers run float32/float16"
    if precision == "fp32":
        return "int8 variant: not served with ATELIER_PRECISION=fp32"
    if not entry.get("gate", {}).get("held"):
        return "int8 variant: its fidelity gate did not hold at export"
    if precision == "auto" and not entry.get("cpu_default"):
        return ("int8 variant: not faster than float32 on the CPU (bench/bench_int8.py); "
                "ATELIER_PRECISION=int8 serves it")
    return None


@dataclass
class ModelSession:
    """One loaded ONNX model: its manifest entry, session, and the provider that actually runs it."""

    entry: dict[str, Any]
    session: ort.InferenceSession
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    @property
    def threads(self) -> int:
        """onnxruntime intra-op threads of this session, as it was created with."""
        return int(self.session.get_session_options().intra_op_num_threads)

    @property
    def active_provider(self) -> str:
        return str(self.session.get_providers()[0])

    @property
    def precision(self) -> str:
        return precision_of(self.entry)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph; outputs in graph order. Blocking: call it off the event loop (app.gate does).

        Inside a gated job (app.deadline) a run does not start past the job's deadline, and a run in
        progress when the deadline is cancelled is terminated through its RunOptions.
        """
        deadline = current_deadline()
        run_options = ort.RunOptions()
        if deadline is None:
            return self.run_with_options(feeds, run_options)
        deadline.check()
        with deadline.cancelling(lambda: setattr(run_options, "terminate", True)):
            try:
                return self.run_with_options(feeds, run_options)
            except InferenceFailed:
                deadline.check()  # a terminated run surfaces as DeadlineExceeded, not as a failure
                raise

    def run_with_options(self, feeds: Mapping[str, np.ndarray], run_options: ort.RunOptions) -> list[np.ndarray]:
        """Run the graph under the caller's RunOptions, whoever may terminate it (app.batching: a run shared by
        several requests). An onnxruntime failure raises InferenceFailed."""
        start = time.perf_counter()
        if sum(int(np.asarray(v).size) for v in feeds.values()) >= SHRINK_ARENA_ABOVE_ELEMENTS:
            run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            outputs = self.session.run(self.output_names, dict(feeds), run_options)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InferenceFailed(f"model {self.id}: onnxruntime failed: {exc}") from exc
        metrics.INFERENCE_SECONDS.labels(model=self.id).observe(time.perf_counter() - start)
        return [np.asarray(o) for o in outputs]

    def warm_up(self) -> None:
        """One run on zeros so the first real request does not pay for lazy initialisation."""
        shapes = self.entry.get("warmup_shapes", {})
        feeds: dict[str, np.ndarray] = {}
        for spec in self.session.get_inputs():
            contract = next((i for i in self.entry.get("inputs", []) if i["name"] == spec.name), None)
            dtype = _DTYPES.get(contract["dtype"] if contract else "float32", np.float32)
            shape = shapes.get(spec.name) or [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
        self.session.run(None, feeds)


def provider_options(providers: list[str], cudnn_conv_algo_search: str) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) pairs for onnxruntime. cuDNN's algorithm search runs once per new input shape;
    EXHAUSTIVE (onnxruntime's default) is slow for MTCNN's many pyramid shapes, HEURISTIC is near-free."""
    return [(p, {"cudnn_conv_algo_search": cudnn_conv_algo_search} if p == "CUDAExecutionProvider" else {})
            for p in providers]


def load_model(
    entry: dict[str, Any], models_dir: Path, providers: list[str], threads: int, *, verify_sha256: bool = True,
    cudnn_conv_algo_search: str = "HEURISTIC", spinning: bool = False,
) -> ModelSession:
    path = models_dir / entry["file"]
    if not path.is_file():
        raise ModelLoadError(f"model {entry['id']}: file {path} is missing")
    if verify_sha256:
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ModelLoadError(
                f"model {entry['id']}: {path.name} has sha256 {actual} but the manifest says {entry['sha256']}; "
                "the file is corrupt or was changed without regenerating the manifest"
            )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    candidates = list(providers)
    while True:
        try:
            session = ort.InferenceSession(str(path), options,
                                           providers=provider_options(candidates, cudnn_conv_algo_search))
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ModelLoadError(f"model {entry['id']}: onnxruntime cannot load {path.name}: {exc}") from exc
        active = session.get_providers()[0]
        if active == candidates[0] or candidates[0] == "CPUExecutionProvider":
            break
        # The preferred provider failed to start (TensorRT without libnvinfer, say) and onnxruntime fell back on
        # its own, dropping the options of the rest. Retry without it so the next provider gets its options.
        log.warning("model %s: %s did not start (onnxruntime chose %s); trying %s", entry["id"], candidates[0],
                    active, ", ".join(candidates[1:]))
        candidates = candidates[1:]
    return ModelSession(entry=entry, session=session)


@dataclass(frozen=True)
class ModelStatus:
    """What /v1/models and /readyz tell of one loaded model (picklable: no session)."""

    active_provider: str
    precision: str


@dataclass
class RegistryStatus:
    """The read-only face of a ModelRegistry, without sessions: what the Ray ingress holds, merged from the
    deployments' own registries (each loads only its capability's models)."""

    entries: list[dict[str, Any]]
    models: dict[str, ModelStatus]
    skipped: dict[str, str] = field(default_factory=dict)
    ready: bool = True

    def precision(self, model_id: str) -> str | None:
        model = self.models.get(model_id)
        return model.precision if model is not None else None

    def uses_gpu(self) -> bool:
        """Whether a GPU provider runs any loaded model."""
        return any(model.active_provider in GPU_PROVIDERS for model in self.models.values())

    def active_providers(self) -> dict[str, str]:
        return {model_id: model.active_provider for model_id, model in self.models.items()}

    @classmethod
    def merged(cls, parts: Sequence[RegistryStatus]) -> RegistryStatus:
        """One view of several registries over the same manifest: a model is loaded where any part loaded it;
        a note is kept only for models no part loaded (a model left to another part has none)."""
        models: dict[str, ModelStatus] = {}
        skipped: dict[str, str] = {}
        for part in parts:
            models.update(part.models)
            skipped.update(part.skipped)
        return cls(entries=parts[0].entries if parts else [], models=models,
                   skipped={k: v for k, v in skipped.items() if k not in models},
                   ready=all(part.ready for part in parts))


class ModelRegistry:
    """Every model of the manifest, loaded once per process."""

    def __init__(
        self, entries: list[dict[str, Any]], models: dict[str, ModelSession], skipped: dict[str, str] | None = None,
        served: dict[str, str] | None = None,
    ) -> None:
        self.entries = entries  # the manifest as read at start-up, loaded or not
        self.models = models
        self.skipped = skipped or {}  # model id -> why it was not loaded (e.g. fp16 variants on CPU)
        self.served = served or {}  # model id -> id of the int8 variant loaded in its place
        self.ready = False

    def status(self) -> RegistryStatus:
        return RegistryStatus(entries=self.entries, ready=self.ready, skipped=dict(self.skipped),
                              models={model_id: ModelStatus(model.active_provider, model.precision)
                                      for model_id, model in self.models.items()})

    def __contains__(self, model_id: str) -> bool:
        return self.served.get(model_id, model_id) in self.models

    def get(self, model_id: str) -> ModelSession:
        """The session serving `model_id`: its int8 variant where that was chosen, else its own."""
        try:
            return self.models[self.served.get(model_id, model_id)]
        except KeyError:
            raise ModelLoadError(f"model {model_id} is not in the manifest") from None

    def served_models(self) -> dict[str, ModelSession]:
        """Loaded sessions keyed by the model id the pipelines ask for (an int8 variant under its model's id)."""
        return {str(model.entry.get("int8_of", model_id)): model for model_id, model in self.models.items()}

    def precision(self, model_id: str) -> str | None:
        """The precision running for this manifest entry; None when it is not loaded."""
        model = self.models.get(model_id)
        return model.precision if model is not None else None

    @classmethod
    def load(
        cls,
        models_dir: Path,
        requested: list[str] | None,
        threads: int,
        *,
        require_gpu: bool = False,
        warmup: bool = True,
        cudnn_conv_algo_search: str = "HEURISTIC",
        spinning: bool = False,
        threads_by_model: Mapping[str, int] | None = None,
        precision: str = "auto",
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> ModelRegistry:
        """Load every model of the manifest with `threads` intra-op threads, or threads_by_model[id] for the
        models named there (those whose pipeline runs them from several threads at once). An int8 variant
        (int8_refusal) is loaded instead of its float32 model where it is chosen, never beside it.
        only: load just the entries it accepts (a Ray deployment's capability); the others are neither loaded
        nor noted as skipped, since another process serves them."""
        if precision not in PRECISIONS:
            raise ModelLoadError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        providers = resolve_providers(requested, ort.get_available_providers())
        if require_gpu and not any(p in GPU_PROVIDERS for p in providers):
            raise ModelLoadError(
                "ATELIER_REQUIRE_GPU is set but this onnxruntime build offers no GPU provider "
                f"(available: {', '.join(ort.get_available_providers())}); install the `gpu` extra on a CUDA host"
            )
        models: dict[str, ModelSession] = {}
        skipped: dict[str, str] = {}
        has_gpu = any(p in GPU_PROVIDERS for p in providers)
        entries = read_manifest(models_dir)
        served: dict[str, str] = {}
        entries_here = [entry for entry in entries if only is None or only(entry)]
        for entry in entries_here:
            if "int8_of" in entry:
                refusal = int8_refusal(entry, precision, has_gpu)
                if refusal is None:
                    served[str(entry["int8_of"])] = str(entry["id"])
                else:
                    skipped[entry["id"]] = refusal
        for entry in entries_here:
            if entry["id"] in skipped:
                log.info("model %s skipped: %s", entry["id"], skipped[entry["id"]])
                continue
            if entry["id"] in served:
                skipped[entry["id"]] = f"served by its int8 variant {served[entry['id']]}"
                log.info("model %s skipped: %s", entry["id"], skipped[entry["id"]])
                continue
            if entry.get("providers_hint") == "gpu" and not has_gpu:
                skipped[entry["id"]] = "GPU-only variant; no GPU provider available"
                log.info("model %s skipped: %s", entry["id"], skipped[entry["id"]])
                continue
            model_threads = (threads_by_model or {}).get(entry["id"], threads)
            model = load_model(entry, models_dir, providers, model_threads,
                               cudnn_conv_algo_search=cudnn_conv_algo_search, spinning=spinning)
            if require_gpu and model.active_provider not in GPU_PROVIDERS:
                raise ModelLoadError(
                    f"ATELIER_REQUIRE_GPU is set but model {model.id} fell back to {model.active_provider} "
                    "(onnxruntime-gpu without a usable CUDA runtime falls back silently)"
                )
            log.info("model %s loaded on %s (%s, %d threads)", model.id, model.active_provider, model.precision,
                     model_threads)
            metrics.ACTIVE_PROVIDER.labels(model=model.id, provider=model.active_provider).set(1)
            models[model.id] = model
        registry = cls(entries, models, skipped, served)
        if warmup:
            for model in models.values():
                model.warm_up()
        registry.ready = True
        return registry

    def uses_gpu(self) -> bool:
        """Whether a GPU provider runs any loaded model."""
        return any(model.active_provider in GPU_PROVIDERS for model in self.models.values())

    def active_providers(self) -> dict[str, str]:
        return {model_id: model.active_provider for model_id, model in self.models.items()}
