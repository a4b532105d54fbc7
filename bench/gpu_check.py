"""Provider check and timings on a GPU host: the same pipelines on CPU, CUDA and TensorRT providers.

    python bench/gpu_check.py [--json out.json]

Needs only numpy, OpenCV, Pillow and an onnxruntime build (onnxruntime-gpu for the GPU providers): it uses
app.runtime and app.pipelines directly, no HTTP. For each provider this onnxruntime offers it loads every
model, reports the provider that actually runs each one (onnxruntime-gpu falls back to CPU silently), and
times detection (1080p), style transfer (512 and 1024 px) and embedding, after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.pipelines.mtcnn import DetectionParams, MtcnnDetector  # noqa: E402
from app.pipelines.style import Stylizer, load_catalogue  # noqa: E402
from app.pipelines.verify import embed  # noqa: E402
from app.runtime import GPU_PROVIDERS, ModelRegistry  # noqa: E402

MODELS_DIR = REPO_ROOT / "models"


def timed(call: Any, repeats: int) -> dict[str, float]:
    call()  # warm-up at this shape
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return {"median_ms": round(statistics.median(seconds) * 1000, 2), "best_ms": round(min(seconds) * 1000, 2)}


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic photo-like image (no registry access on GPU hosts)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(xs / 37.0), np.cos(ys / 53.0), np.sin((xs + ys) / 71.0)], axis=2)
    return np.clip((base * 0.5 + 0.5) * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def run(providers: list[str] | None, repeats: int, search: str = "HEURISTIC") -> dict[str, Any]:
    registry = ModelRegistry.load(MODELS_DIR, providers, threads=4, warmup=True, cudnn_conv_algo_search=search)
    report: dict[str, Any] = {"requested": providers or "auto", "cudnn_conv_algo_search": search,
                              "active": registry.active_providers(), "skipped": registry.skipped}
    detector = MtcnnDetector(*(registry.get(m) for m in ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")))
    image_1080 = photo(1080, 1920)
    report["detect_1080p"] = timed(lambda: detector.detect(image_1080, DetectionParams()), repeats)
    style_runners = {k: v for k, v in registry.models.items() if v.entry.get("task") == "style-transfer"}
    gpu = any(p in GPU_PROVIDERS for p in registry.active_providers().values())
    stylizer = Stylizer(style_runners, load_catalogue(MODELS_DIR), prefer_fp16=gpu)
    for side in (512, 1024):
        image = photo(side, side, seed=side)
        report[f"stylize_{side}"] = timed(lambda im=image, s=side: stylizer.stylize(im, "3", max_side=s), repeats)
    chips = photo(150, 150)[None].repeat(8, axis=0)
    report["embed_batch8"] = timed(lambda: embed(registry.get("dlib-face-resnet"), chips), repeats)
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu: load CUDA/cuDNN from the nvidia-* wheels if present
        ort.preload_dlls()
    available = ort.get_available_providers()
    results: dict[str, Any] = {"onnxruntime": ort.__version__, "device": ort.get_device(), "available": available,
                               "runs": []}
    print(json.dumps({"onnxruntime": ort.__version__, "available": available}), flush=True)
    plans: list[tuple[list[str] | None, str]] = [(None, "HEURISTIC")]  # 'auto', as the service runs by default
    plans += [(["CUDAExecutionProvider"], search) for search in ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")
              if "CUDAExecutionProvider" in available]
    plans += [([p], "HEURISTIC") for p in ("TensorrtExecutionProvider", "CPUExecutionProvider") if p in available]
    for providers, search in plans:
        try:
            report = run(providers, args.repeats, search)
        except Exception as exc:  # report and go on to the next plan
            report = {"requested": providers or "auto", "error": f"{type(exc).__name__}: {exc}"}
        results["runs"].append(report)
        print(json.dumps(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
