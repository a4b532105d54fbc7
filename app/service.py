"""What a worker process holds for its lifetime: settings, loaded models, the inference gate, pipelines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.batching import BatchingRunner, BatchPolicy, batchable
from app.config import Settings
from app.errors import NotReady
from app.gate import InferenceGate
from app.pipelines import Runner
from app.pipelines.mtcnn import MtcnnDetector
from app.pipelines.recognition import FaceRecognizer
from app.pipelines.style import Stylizer, load_catalogue
from app.runtime import GPU_PROVIDERS, ModelRegistry, RegistryStatus
from app.work import Capability, Executor, Work

PipelineT = TypeVar("PipelineT")
T = TypeVar("T")

MTCNN_MODELS = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")
EMBEDDING_MODEL = "dlib-face-resnet"
STYLE_TASK = "style-transfer"


def serves(capability: Capability, entry: Mapping[str, Any]) -> bool:
    """Whether a manifest entry is one of the models `capability` needs (a Ray deployment loads only those)."""
    model_id = str(entry.get("int8_of", entry["id"]))
    if capability == "detect":
        return model_id in MTCNN_MODELS
    if capability == "embed":
        return model_id in MTCNN_MODELS or model_id == EMBEDDING_MODEL
    return entry.get("task") == STYLE_TASK


def load_registry(settings: Settings, capability: Capability | None = None, threads: int | None = None
                  ) -> ModelRegistry:
    """Every model of the manifest, with the thread split the pipelines below expect.

    MTCNN's nets get one intra-op thread each: the detector runs them from threads_per_session() workers at
    once (whole pyramid levels, chunks of crops), which keeps the cores busier than onnxruntime's own
    parallel loops over MTCNN's many small runs (bench/bench_detect.py).
    """
    return ModelRegistry.load(
        settings.models_dir,
        settings.provider_list(),
        threads or settings.threads_per_session(),
        require_gpu=settings.require_gpu,
        warmup=settings.warmup,
        cudnn_conv_algo_search=settings.cudnn_conv_algo_search,
        spinning=settings.ort_spinning,
        threads_by_model=dict.fromkeys(MTCNN_MODELS, 1),
        precision=settings.precision,
        only=None if capability is None else (lambda entry: serves(capability, entry)),
    )


@dataclass(frozen=True)
class Pipelines:
    """One pipeline object per capability, None where this deployment lacks its models."""

    detector: MtcnnDetector | None = None
    detector_model: str = ""  # "mtcnn (<version>)", as /v1/detect reports it
    recognizer: FaceRecognizer | None = None
    stylizer: Stylizer | None = None

    def close(self) -> None:
        """Stop what keeps threads (the detector's worker pool, shared with the recognizer)."""
        if self.detector is not None:
            self.detector.close()

    def capabilities(self) -> frozenset[Capability]:
        offered = {"detect": self.detector, "embed": self.recognizer, "stylize": self.stylizer}
        return frozenset(name for name, pipeline in offered.items() if pipeline is not None)  # type: ignore[misc]

    # The pipeline a job needs; NotReady (503) when this process lacks its models.
    def need_detector(self) -> MtcnnDetector:
        return _required(self.detector, "detect")

    def need_recognizer(self) -> FaceRecognizer:
        return _required(self.recognizer, "verify")

    def need_stylizer(self) -> Stylizer:
        return _required(self.stylizer, "stylize")


def runners_of(registry: ModelRegistry, batching: BatchPolicy, company: Callable[[], int] | None = None
               ) -> dict[str, Runner]:
    """What the pipelines run each model through: its session, or a batcher in front of it for the nets that
    take a batch (app.batching) when batching is on. company: how many jobs are running (the gate's count)."""
    return {model_id: (BatchingRunner(model, batching, company) if batching.enabled and batchable(model.entry)
                       else model)
            for model_id, model in registry.served_models().items()}


def build_pipelines(registry: ModelRegistry, models_dir: Path, threads: int = 1,
                    batching: BatchPolicy | None = None, company: Callable[[], int] | None = None,
                    only: Capability | None = None) -> Pipelines:
    """The pipelines whose models are loaded (filters need none); only: just this capability's (a Ray replica).

    threads: the threads one worker process may keep busy (Settings.threads_per_session()): the size of
    MTCNN's worker pool, which every request shares. batching/company: see runners_of (default: off).
    """
    runners = runners_of(registry, batching or BatchPolicy(), company)
    detector = recognizer = stylizer = None
    detector_model = ""
    if all(model_id in registry for model_id in MTCNN_MODELS):
        pnet, rnet, onet = (runners[model_id] for model_id in MTCNN_MODELS)
        pnet_session = registry.get(MTCNN_MODELS[0])
        # P-Net per pyramid level (the default packing): on this CPU the packed canvas is slower
        # (bench/pnet_packing.py; MtcnnDetector's docstring).
        detector = MtcnnDetector(pnet, rnet, onet, workers=max(1, threads // pnet_session.threads))
        detector_model = f"mtcnn ({pnet_session.entry['version']})"
        if EMBEDDING_MODEL in registry:
            embedder = registry.get(EMBEDDING_MODEL)
            # "dlib-face-resnet (1)", or "dlib-face-resnet (1, int8)" where its int8 variant serves it
            label = ", ".join([str(embedder.entry["version"]),
                               *([embedder.precision] if embedder.precision != "float32" else [])])
            recognizer = FaceRecognizer(detector, runners[EMBEDDING_MODEL], f"{EMBEDDING_MODEL} ({label})")
    style_runners = {model_id: runners[model_id] for model_id, model in registry.served_models().items()
                     if model.entry.get("task") == STYLE_TASK}
    if only in (None, "stylize") and (models_dir / "styles.json").exists():
        gpu = any(registry.get(model_id).active_provider in GPU_PROVIDERS for model_id in style_runners)
        stylizer = Stylizer(style_runners, load_catalogue(models_dir), prefer_fp16=gpu)
    return Pipelines(detector=detector, detector_model=detector_model, recognizer=recognizer, stylizer=stylizer)


def _required(pipeline: PipelineT | None, capability: str) -> PipelineT:
    if pipeline is None:
        raise NotReady(f"the models for '{capability}' are not loaded in this deployment")
    return pipeline


@dataclass
class Service:
    """What routers use. In the plain service everything is local; on Ray (deploy/ray) `registry` is the
    deployments' merged status, `pipelines` holds only what the ingress needs without models (the style
    catalogue), `executor` sends each Work to its deployment and `probe` asks every deployment if it is ready."""

    settings: Settings
    registry: ModelRegistry | RegistryStatus
    gate: InferenceGate
    pipelines: Pipelines = field(default_factory=Pipelines)
    draining: bool = False
    executor: Executor | None = None  # None: run each Work here, on `pipelines`
    offered: frozenset[Capability] | None = None  # None: what `pipelines` has
    probe: Callable[[], Awaitable[bool]] | None = None  # None: only the local registry counts

    def start_draining(self) -> None:
        self.draining = True

    @property
    def ready(self) -> bool:
        return self.registry.ready and not self.draining

    async def check_ready(self) -> bool:
        """ready, and (on Ray) every deployment answering that its models are loaded."""
        if not self.ready:
            return False
        return await self.probe() if self.probe is not None else True

    def require(self, capability: Capability) -> None:
        """NotReady (503) when this deployment cannot run `capability`, before anything is decoded."""
        offered = self.offered if self.offered is not None else self.pipelines.capabilities()
        if capability not in offered:
            name = "verify" if capability == "embed" else capability
            raise NotReady(f"the models for '{name}' are not loaded in this deployment")

    def job(self, work: Work[T]) -> Callable[[], T]:
        """The callable the gate runs (Admission.run): `work` on this process's pipelines, or remotely."""
        executor = self.executor
        if executor is not None:
            return lambda: executor(work)
        return lambda: work.run(self.pipelines, self.settings)

    @property
    def stylizer(self) -> Stylizer:
        return self.pipelines.need_stylizer()
