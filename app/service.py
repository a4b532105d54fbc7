"""What a worker process holds for its lifetime: settings, loaded models, the inference gate, pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.config import Settings
from app.errors import NotReady
from app.gate import InferenceGate
from app.pipelines.mtcnn import MtcnnDetector
from app.pipelines.recognition import FaceRecognizer
from app.pipelines.style import Stylizer, load_catalogue
from app.runtime import GPU_PROVIDERS, ModelRegistry

PipelineT = TypeVar("PipelineT")

MTCNN_MODELS = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")
EMBEDDING_MODEL = "dlib-face-resnet"


def load_registry(settings: Settings) -> ModelRegistry:
    """Every model of the manifest, with the thread split the pipelines below expect.

    MTCNN's nets get one intra-op thread each: the detector runs them from threads_per_session() workers at
    once (whole pyramid levels, chunks of crops), which keeps the cores busier than onnxruntime's own
    parallel loops over MTCNN's many small runs (bench/bench_detect.py).
    """
    return ModelRegistry.load(
        settings.models_dir,
        settings.provider_list(),
        settings.threads_per_session(),
        require_gpu=settings.require_gpu,
        warmup=settings.warmup,
        cudnn_conv_algo_search=settings.cudnn_conv_algo_search,
        spinning=settings.ort_spinning,
        threads_by_model=dict.fromkeys(MTCNN_MODELS, 1),
    )


def build_pipelines(registry: ModelRegistry, models_dir: Path, threads: int = 1) -> dict[str, Any]:
    """One pipeline object per capability whose models are loaded (filters need none).

    threads: the threads one request may keep busy (Settings.threads_per_session()).
    """
    pipelines: dict[str, Any] = {}
    if all(model_id in registry for model_id in MTCNN_MODELS):
        pnet, rnet, onet = (registry.get(model_id) for model_id in MTCNN_MODELS)
        detector = MtcnnDetector(pnet, rnet, onet, workers=max(1, threads // pnet.threads))
        pipelines["detect"] = detector
        pipelines["detect_model"] = f"mtcnn ({pnet.entry['version']})"
        if EMBEDDING_MODEL in registry:
            embedder = registry.get(EMBEDDING_MODEL)
            pipelines["verify"] = FaceRecognizer(detector, embedder, f"{EMBEDDING_MODEL} ({embedder.entry['version']})")
    style_runners = {model_id: model for model_id, model in registry.models.items()
                     if model.entry.get("task") == "style-transfer"}
    if (models_dir / "styles.json").exists():
        gpu = any(model.active_provider in GPU_PROVIDERS for model in style_runners.values())
        pipelines["stylize"] = Stylizer(style_runners, load_catalogue(models_dir), prefer_fp16=gpu)
    return pipelines


@dataclass
class Service:
    settings: Settings
    registry: ModelRegistry
    gate: InferenceGate
    pipelines: dict[str, Any] = field(default_factory=dict)  # capability name -> pipeline object
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.registry.ready and not self.draining

    def pipeline(self, name: str, kind: type[PipelineT]) -> PipelineT:
        """The pipeline serving capability `name`; NotReady when this deployment lacks its models."""
        found = self.pipelines.get(name)
        if not isinstance(found, kind):
            raise NotReady(f"the models for '{name}' are not loaded in this deployment")
        return found
