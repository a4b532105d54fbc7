"""Where the 26-style network's time goes in onnxruntime's CPU provider: the optimised graph and a per-op profile.

    PYTHONPATH=. .venv/bin/python bench/profile_style.py [--model models/style_multi26.onnx] [--size 512]
        [--threads 2] [--runs 10] [--top 25]

The session is built as app/runtime.py load_model builds it (graph optimisation ENABLE_ALL, spinning off, the given
intra-op threads). Prints the optimised graph's node count per op type (how many ReorderInput/ReorderOutput layout
round-trips onnxruntime inserted around ops it cannot run in its blocked NCHWc layout), then the profile of --runs
runs on a random image (first run left out): total time per op type and the slowest nodes with their shapes.
Writes bench/results/profile_style.json (per op type and per node, microseconds per run).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("profile_style")
REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_STYLES = 26  # export/nets/multistyle.py NUM_STYLES (bench/ does not import torch modules here)


def options(threads: int, profile_prefix: str | None = None, optimized_path: str | None = None,
            config: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """SessionOptions as app/runtime.py load_model sets them, plus profiling / optimised-graph output."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    return opts


def optimised_op_counts(model: Path, threads: int) -> collections.Counter[str]:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(model), options(threads, optimized_path=out), providers=["CPUExecutionProvider"])
        graph = onnx.load(out).graph
    return collections.Counter(node.op_type for node in graph.node)


def profile(model: Path, size: int, threads: int, runs: int) -> list[dict[str, Any]]:
    """Node events of runs 2..runs+1 (the first run warms up)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        sess = ort.InferenceSession(str(model), options(threads, profile_prefix=str(Path(tmp) / "p")),
                                    providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {"image": rng.random((1, 3, size, size), dtype=np.float32),
                 "style": np.eye(NUM_STYLES, dtype=np.float32)[7:8]}
        for _ in range(runs + 1):
            sess.run(None, feeds)
        events: list[dict[str, Any]] = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = [e for e in events if e.get("name") == "model_run"]
    start = model_runs[1]["ts"] if len(model_runs) > 1 else 0
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "style_multi26.onnx")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    counts = optimised_op_counts(args.model, args.threads)
    log.info("optimised graph (%d nodes): %s", sum(counts.values()),
             ", ".join(f"{op} {n}" for op, n in counts.most_common()))

    events = profile(args.model, args.size, args.threads, args.runs)
    by_op: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    shapes: dict[str, str] = {}
    for e in events:
        op = e["args"].get("op_name", "?")
        by_op[op] += e["dur"] / args.runs
        by_node[e["name"].removesuffix("_kernel_time")] += e["dur"] / args.runs
        shapes[e["name"].removesuffix("_kernel_time")] = (
            f"{op} {e['args'].get('input_type_shape', '')} -> {e['args'].get('output_type_shape', '')}")
    total = sum(by_op.values())
    log.info("\n%s px, %d threads: %.1f ms of node time per run", args.size, args.threads, total / 1000)
    for op, us in by_op.most_common():
        log.info("  %-24s %8.2f ms  %5.1f %%", op, us / 1000, 100 * us / total)
    log.info("\nslowest %d nodes:", args.top)
    for name, us in by_node.most_common(args.top):
        log.info("  %8.2f ms  %-40s %s", us / 1000, name[:40], shapes[name][:150])
    out = REPO_ROOT / "bench" / "results" / "profile_style.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(args.model), "size": args.size, "threads": args.threads,
                               "optimised_op_counts": dict(counts), "by_op_us": dict(by_op),
                               "by_node_us": dict(by_node)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
