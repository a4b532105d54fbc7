"""int8 against float32 on the CPU provider, side by side: is the int8 variant measurably faster here?

    PYTHONPATH=. .venv/bin/python bench/bench_int8.py [--net dlib style] [--threads 2] [--calls 40] [--rounds 3]
        [--style-sizes 256 512] [--style-variant convs|ends|res]

dlib: models/dlib_face_resnet.onnx vs models/dlib_face_resnet_int8.onnx on dlib's own chips
(tests/golden/dlib/chips_dlib.npz), batches of 1 and 4. style: models/style_multi26.onnx vs an int8 candidate
quantised in memory by export/convert_style.py's int8_candidate (no int8 style file is exported: its gate fails),
scikit-image's astronaut at each size, style 7; the candidate's worst PSNR per style on the gate photos is
reported too. Sessions are created as app/runtime.py creates them (load_model: ENABLE_ALL, spinning off).
Calls are interleaved one by one (fp32, int8, int8, fp32, ...) so a change in the machine's load hits both
alike; each round starts with one untimed call of each. Medians per round and over all calls, written to
bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench_int8")
REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = REPO_ROOT / "models"
RESULTS = REPO_ROOT / "bench" / "results" / "int8.json"
STYLE_INDEX = 7


def interleaved(calls: dict[str, Callable[[], object]], count: int, rounds: int) -> dict[str, Any]:
    """Median milliseconds per call of each contender, the contenders alternating call by call (ABBA order)."""
    names = list(calls)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            calls[name]()
            times[name].append([])
        for i in range(count):
            for name in names if i % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                calls[name]()
                times[name][-1].append((time.perf_counter() - start) * 1000.0)
    return {name: {"median_ms": round(statistics.median(t for r in runs for t in r), 3),
                   "round_medians_ms": [round(statistics.median(r), 3) for r in runs]} for name, runs in times.items()}


def _session(entry: dict[str, Any], models_dir: Path, threads: int) -> Any:
    from app.runtime import load_model

    return load_model(entry, models_dir, ["CPUExecutionProvider"], threads)


def _speedup(result: dict[str, Any]) -> float:
    return round(result["fp32"]["median_ms"] / result["int8"]["median_ms"], 3)


def bench_dlib(args: argparse.Namespace) -> dict[str, Any]:
    from app.runtime import read_manifest

    entries = {e["id"]: e for e in read_manifest(MODELS)}
    fp32 = _session(entries["dlib-face-resnet"], MODELS, args.threads)
    int8 = _session(entries["dlib-face-resnet-int8"], MODELS, args.threads)
    chips = np.load(REPO_ROOT / "tests" / "golden" / "dlib" / "chips_dlib.npz")["chips"]
    out: dict[str, Any] = {}
    for batch in (1, 4):
        feeds = {"image": np.ascontiguousarray(chips[:batch].transpose(0, 3, 1, 2), dtype=np.float32)}
        result = interleaved({"fp32": lambda f=feeds: fp32.run(f), "int8": lambda f=feeds: int8.run(f)},
                             args.calls, args.rounds)
        result["speedup"] = _speedup(result)
        out[f"batch {batch}"] = result
        log.info("dlib batch %d: fp32 %.2f ms, int8 %.2f ms, %.2fx", batch, result["fp32"]["median_ms"],
                 result["int8"]["median_ms"], result["speedup"])
    return out


def bench_style(args: argparse.Namespace) -> dict[str, Any]:
    import cv2
    import onnx

    from app.runtime import read_manifest
    from export import convert_style, quantize
    from export.fetch import skimage_photo_png

    entry = next(e for e in read_manifest(MODELS) if e["id"] == "style-multi26")
    fp32_model = onnx.load(str(MODELS / entry["file"]))
    convs = [n.name for n in fp32_model.graph.node if n.op_type == "Conv"]
    excluded = {"convs": [], "ends": [convs[0], convs[-1]], "res": convs[:3] + convs[-2:]}[args.style_variant]
    spec = quantize.QuantSpec(op_types=("Conv",), exclude_nodes=tuple(excluded), reduce_range=True)
    int8_model = convert_style.int8_candidate(fp32_model, spec)
    psnr = convert_style.int8_psnr(fp32_model, int8_model)
    log.info("style int8 (%s): worst PSNR %.1f dB (gate %.0f), per style %s", args.style_variant,
             min(psnr.values()), convert_style.INT8_MIN_PSNR_DB, {k: round(v, 1) for k, v in psnr.items()})
    with tempfile.TemporaryDirectory() as tmp:
        data = int8_model.SerializeToString()
        (Path(tmp) / "int8.onnx").write_bytes(data)
        from export.fetch import sha256_bytes

        int8 = _session({**entry, "id": "style-multi26-int8-candidate", "file": "int8.onnx",
                         "sha256": sha256_bytes(data)}, Path(tmp), args.threads)
        fp32 = _session(entry, MODELS, args.threads)
        photo = convert_style._decode(skimage_photo_png("astronaut"))
        style = convert_style.one_hot(STYLE_INDEX)[None]
        out: dict[str, Any] = {"variant": args.style_variant, "excluded_nodes": excluded,
                               "worst_psnr_db": round(min(psnr.values()), 2),
                               "psnr_db_by_style": {k: round(v, 2) for k, v in psnr.items()}}
        for side in args.style_sizes:
            image = convert_style.to_nchw(cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA))
            feeds = {"image": image, "style": style}
            result = interleaved({"fp32": lambda f=feeds: fp32.run(f), "int8": lambda f=feeds: int8.run(f)},
                                 max(4, args.calls // 4), args.rounds)
            result["speedup"] = _speedup(result)
            out[f"{side}x{side}"] = result
            log.info("style %d px: fp32 %.1f ms, int8 %.1f ms, %.2fx", side, result["fp32"]["median_ms"],
                     result["int8"]["median_ms"], result["speedup"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", nargs="+", choices=["dlib", "style"], default=["dlib", "style"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=40, help="timed calls per contender per round (style: /4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--style-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--style-variant", choices=["convs", "ends", "res"], default="convs",
                        help="style candidate: every conv int8, first and last left float32, or residual convs only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # quantize_static's pre-processing advice, logged on the root
        handler.addFilter(lambda record: record.name != "root")
    import onnxruntime as ort

    results: dict[str, Any] = {"onnxruntime": ort.__version__, "threads": args.threads, "calls": args.calls,
                               "rounds": args.rounds}
    if "dlib" in args.net:
        results["dlib"] = bench_dlib(args)
    if "style" in args.net:
        results[f"style ({args.style_variant})"] = bench_style(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**previous, **results}, indent=1) + "\n")
    log.info("wrote %s", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
