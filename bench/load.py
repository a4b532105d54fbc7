"""Load curves: throughput and latency per endpoint at 1-32 concurrent clients, batching on and off.

    .venv/bin/python bench/load.py [--endpoints detect,embed,verify,stylize] [--clients 1,2,4,8,16,32]
                                   [--seconds 15] [--rounds 1] [--concurrency 4] [--json bench/results/load.json]
                                   [--plot docs/load-curves.png]

Two servers run side by side (`atelier serve`, one worker each, the same settings but ATELIER_BATCH_MAX_SIZE=1
for the second), and Locust (bench/locustfile.py, headless, in its own process) drives one at a time over
loopback with N closed-loop clients. The two are measured alternately at every step (on, off, then off, on at
the next), so that a change in the machine's load hits both alike. Per run: requests per second, p50/p95/p99
latency (Locust's), failures, and the mean batch size of each batched model over the run (from /metrics:
calls served per onnxruntime run). Locust is used instead of a home-made client because it already does
closed-loop users, percentiles and CSV output; its own CPU use is part of the machine's load, alike for both.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.hardening.conftest import live_server  # noqa: E402  (a server in a subprocess, as the tests start it)

USERS = {"detect": "DetectUser", "embed": "EmbedUser", "verify": "VerifyUser", "stylize": "StylizeUser"}
# The embedder runs as its int8 variant on the CPU provider (ATELIER_PRECISION=auto), as float32 elsewhere.
BATCHED_MODELS = ("dlib-face-resnet", "dlib-face-resnet-int8", "mtcnn-rnet", "mtcnn-onet", "style-multi26")
log = logging.getLogger("load")


def batch_counters(base: str) -> dict[str, tuple[float, float]]:
    """(calls, runs) so far per batched model, from the server's /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    counters = {}
    for model in BATCHED_MODELS:
        found = [re.search(rf'^atelier_batch_size_{kind}{{model="{model}"}} ([0-9.e+-]+)$', text, re.MULTILINE)
                 for kind in ("sum", "count")]
        counters[model] = (float(found[0].group(1)) if found[0] else 0.0, float(found[1].group(1)) if found[1]
                           else 0.0)
    return counters


def run_locust(base: str, user_class: str, clients: int, seconds: int, workdir: Path) -> dict[str, Any]:
    prefix = workdir / f"{user_class}-{clients}"
    command = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "bench" / "locustfile.py"), "--headless",
               "--only-summary", "-u", str(clients), "-r", str(clients), "-t", f"{seconds}s", "--host", base,
               "--csv", str(prefix), "--stop-timeout", "60", "--exit-code-on-error", "0", "--loglevel", "WARNING",
               user_class]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(f"{prefix}_stats.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")

    def number(column: str) -> float | None:  # Locust writes N/A for percentiles of very few requests
        return None if row[column] in ("", "N/A") else float(row[column])

    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": round(float(row["Requests/s"]), 3), "p50_ms": number("50%"), "p95_ms": number("95%"),
            "p99_ms": number("99%"), "mean_ms": number("Average Response Time")}


def measure(base: str, endpoint: str, clients: int, seconds: int, workdir: Path) -> dict[str, Any]:
    before = batch_counters(base)
    result = run_locust(base, USERS[endpoint], clients, seconds, workdir)
    after = batch_counters(base)
    result["mean_batch_size"] = {
        model: round((after[model][0] - before[model][0]) / (after[model][1] - before[model][1]), 3)
        for model in BATCHED_MODELS if after[model][1] > before[model][1]}
    return result


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per client count, the median of each figure over the rounds; sorted by clients."""
    levels = sorted({r["clients"] for r in runs})

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return [{"clients": c, **{key: median([r[key] for r in runs if r["clients"] == c and r[key] is not None])
                              for key in ("rps", "p50_ms", "p95_ms")}} for c in levels]


def plot(runs: list[dict[str, Any]], endpoints: list[str], levels: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(endpoints), figsize=(4.2 * len(endpoints), 7), squeeze=False)
    for column, endpoint in enumerate(endpoints):
        for batching, style, colour in ((True, "-o", "C0"), (False, "--s", "C1")):
            chosen = medians([r for r in runs if r["endpoint"] == endpoint and r["batching"] == batching])
            label = "batching on" if batching else "batching off"
            clients = [r["clients"] for r in chosen]
            axes[0][column].plot(clients, [r["rps"] for r in chosen], style, color=colour, label=label)
            axes[1][column].plot(clients, [r["p95_ms"] for r in chosen], style, color=colour, label=f"{label}, p95")
            axes[1][column].plot(clients, [r["p50_ms"] for r in chosen], style, color=colour, alpha=0.35,
                                 label=f"{label}, p50")
        axes[0][column].set_title(f"POST /v1/{endpoint}")
        axes[0][column].set_ylabel("requests / s")
        axes[1][column].set_ylabel("latency, ms")
        for row in (0, 1):
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].set_xticks(levels, [str(c) for c in levels])
            axes[row][column].set_xlabel("concurrent clients")
            axes[row][column].grid(True, alpha=0.3)
        axes[1][column].set_yscale("log")
    axes[0][0].legend()
    axes[1][0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", default="detect,embed,verify,stylize")
    parser.add_argument("--clients", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=int, default=15, help="length of each run")
    parser.add_argument("--rounds", type=int, default=1, help="(on, off) pairs per step; the plot shows medians")
    parser.add_argument("--concurrency", type=int, default=4, help="ATELIER_MAX_CONCURRENCY of both servers")
    parser.add_argument("--batch-max-size", default="8", help="ATELIER_BATCH_MAX_SIZE when on (the service's "
                        "default, auto, is off on the CPU provider)")
    parser.add_argument("--batch-timeout-ms", default="", help="ATELIER_BATCH_TIMEOUT_MS when on")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "load.json")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "load-curves.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    levels = [int(c) for c in args.clients.split(",")]
    common = {"max_concurrency": str(args.concurrency), "max_queue": str(max(64, 2 * max(levels))),
              "request_timeout_s": "120", "rate_limit": ""}
    batching_on = {**common, **({"batch_max_size": args.batch_max_size} if args.batch_max_size else {}),
                   **({"batch_timeout_ms": args.batch_timeout_ms} if args.batch_timeout_ms else {})}
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        servers = {True: stack.enter_context(live_server(**batching_on))[0],
                   False: stack.enter_context(live_server(**common, batch_max_size="1"))[0]}
        for endpoint in endpoints:  # warm each endpoint's shapes on both servers before timing anything
            for base in servers.values():
                run_locust(base, USERS[endpoint], 1, 2, Path(tmp))
        step = 0
        for endpoint in endpoints:
            for clients in levels:
                for round_ in range(args.rounds):
                    order = (True, False) if step % 2 == 0 else (False, True)
                    step += 1
                    for batching in order:
                        result = measure(servers[batching], endpoint, clients, args.seconds, Path(tmp))
                        runs.append({"endpoint": endpoint, "clients": clients, "batching": batching,
                                     "round": round_, **result})
                        log.info("%-8s %2d clients batching %-3s %7.2f req/s  p50 %6s  p95 %6s  p99 %6s ms  "
                                 "failures %d  batch %s", endpoint, clients, "on" if batching else "off",
                                 result["rps"], result["p50_ms"], result["p95_ms"], result["p99_ms"],
                                 result["failures"], result["mean_batch_size"])
    record = {"command": "bench/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": {"on": batching_on, "off": {**common, "batch_max_size": "1"}, "seconds": args.seconds},
              "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    plot(runs, endpoints, levels, args.plot, f"Atelier on {os.cpu_count()} CPU cores, one worker, "
         f"ATELIER_MAX_CONCURRENCY={args.concurrency} (bench/load.py)")
    log.info("wrote %s and %s", args.json, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
