"""Side-by-side speed of the 26-style network: our served ONNX, the same network in PyTorch eager, the shipped ONNX.

    PYTHONPATH=. .venv/bin/python bench/bench_style.py [--sizes 256 512 1024] [--threads 2] [--repeats 5]
        [--baseline OLD.onnx]

PyTorch eager runs export/nets/multistyle.py's MultiStyleNet (the network as rebuilt from the shipped file); the
served ONNX is its export (ExportMultiStyleNet: the same function with regrouped decoder convs). --baseline adds
another export of the same network (e.g. the served file of an earlier commit: `git show REV:models/style_multi26.onnx
> old.onnx`) as a fourth contender, to measure a graph change side by side.
All three run one photo (scikit-image's astronaut, resized to a square of each size) with one style, on the same
number of threads: onnxruntime intra-op threads as app/runtime.py sets them (graph optimisation ENABLE_ALL, spinning
off), and
torch.set_num_threads for PyTorch. Times are medians of --repeats runs after one warm-up; only the network call
is timed; the three take turns in blocks. Results are printed as a table and written to bench/results/style.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_style")
REPO_ROOT = Path(__file__).resolve().parent.parent
STYLE_INDEX = 7


def block_medians(calls: dict[str, Callable[[], object]], repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds per call. Each round runs every contender in turn, a block of `repeats` timed calls after
    one untimed call: a change in machine load hits all contenders alike, and one runtime's idle threads
    (onnxruntime spins after a run, OpenMP too) do not land inside another's timed calls."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def session(path_or_bytes: str | bytes, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as app/runtime.py load_model
    return ort.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--baseline", type=Path, help="another ONNX export of the network (same I/O) to compare")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import cv2
    import torch

    from export.convert_style import (
        MULTI26_MEMBER,
        MULTI26_SHA256,
        _decode,
        multistyle_from_onnx,
        one_hot,
        shipped_onnx,
    )
    from export.fetch import skimage_photo_png

    torch.set_num_threads(args.threads)
    shipped = shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256)
    net = multistyle_from_onnx(shipped)
    ours = session(str(args.models_dir / "style_multi26.onnx"), args.threads)
    theirs = session(shipped.SerializeToString(), args.threads)
    baseline = session(str(args.baseline), args.threads) if args.baseline else None
    photo = _decode(skimage_photo_png("astronaut"))
    weights = one_hot(STYLE_INDEX)

    rows = []
    for size in args.sizes:
        image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA if size < 512 else cv2.INTER_CUBIC)
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        tx, tw = torch.from_numpy(x), torch.from_numpy(weights[None])

        def eager(tx: torch.Tensor = tx, tw: torch.Tensor = tw) -> object:
            with torch.inference_mode():
                return net(tx, tw)

        calls: dict[str, Callable[[], object]] = {
            "served_onnx_s": lambda x=x: ours.run(None, {"image": x, "style": weights[None]}),
            "torch_eager_s": eager,
            "shipped_onnx_s": lambda x=x: theirs.run(None, {"image": x, "style_weights": weights}),
        }
        if baseline is not None:
            calls["baseline_onnx_s"] = lambda x=x: baseline.run(None, {"image": x, "style": weights[None]})
        medians = block_medians(calls, args.repeats)
        row: dict[str, float] = {"size": size, **medians}
        row["eager_over_served"] = row["torch_eager_s"] / row["served_onnx_s"]
        row["shipped_over_served"] = row["shipped_onnx_s"] / row["served_onnx_s"]
        if baseline is not None:
            row["baseline_over_served"] = row["baseline_onnx_s"] / row["served_onnx_s"]
            row["eager_over_baseline"] = row["torch_eager_s"] / row["baseline_onnx_s"]
        rows.append(row)

    log.info("threads=%d repeats=%d (median seconds per image, style %d)", args.threads, args.repeats, STYLE_INDEX)
    log.info("%6s %12s %12s %12s %16s %18s", "size", "served ONNX", "torch eager", "shipped ONNX",
             "eager/served", "shipped/served")
    for r in rows:
        log.info("%6d %12.4f %12.4f %12.4f %15.2fx %17.2fx", r["size"], r["served_onnx_s"], r["torch_eager_s"],
                 r["shipped_onnx_s"], r["eager_over_served"], r["shipped_over_served"])
        if "baseline_onnx_s" in r:
            log.info("%6s baseline %s: %.4f s, baseline/served %.2fx, eager/baseline %.2fx", "", args.baseline,
                     r["baseline_onnx_s"], r["baseline_over_served"], r["eager_over_baseline"])
    out = REPO_ROOT / "bench" / "results" / "style.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"threads": args.threads, "repeats": args.repeats,
              "baseline": str(args.baseline) if args.baseline else None, "rows": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
