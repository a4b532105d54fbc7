"""Ray Serve's overhead: the same load against `atelier serve` and against the Ray application, side by side.

    .venv/bin/python bench/ray_overhead.py [--endpoints detect,embed,stylize] [--clients 8] [--rounds 3]
                                           [--seconds 20] [--json bench/results/ray_overhead.json]

Both run on this machine at once with the same settings (ATELIER_MAX_CONCURRENCY=4, two intra-op threads per
session, batching as by default), the plain server as `atelier serve` and the Ray one as
`python -m deploy.ray.atelier_serve` (a local single-node Ray: ingress + one replica per capability to start
with). Locust (bench/locustfile.py, as in bench/load.py) drives one at a time, alternating plain, Ray, Ray,
plain, ... per round, so that a change in the machine's load hits both alike. Reported per endpoint: requests per
second and p50/p95 of each, medians over the rounds, and Ray's overhead = 1 - Ray's throughput / plain's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from load import USERS, run_locust  # noqa: E402  (the same Locust runs as the load curves)

from tests.conftest import MODELS_DIR  # noqa: E402
from tests.hardening.conftest import free_port, live_server, wait_until_ready  # noqa: E402

log = logging.getLogger("ray_overhead")
SETTINGS = {"max_concurrency": "4", "max_queue": "64", "request_timeout_s": "120", "intra_op_threads": "2"}


@contextmanager
def ray_server() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ATELIER_MODELS_DIR": str(MODELS_DIR), "ATELIER_LOG_LEVEL": "warning",
           "RAY_USAGE_STATS_ENABLED": "0", **{f"ATELIER_{k.upper()}": v for k, v in SETTINGS.items()}}
    process = subprocess.Popen([sys.executable, "-m", "deploy.ray.atelier_serve", "--host", "127.0.0.1",
                                "--port", str(port), "--num-cpus", str(os.cpu_count() or 2)],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, 300, poll_s=1.0)
        yield base
    finally:
        process.terminate()  # its SIGTERM handler shuts Serve and Ray down
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", default="detect,embed,stylize")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "ray_overhead.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    runs: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        servers = {"plain": stack.enter_context(live_server(**SETTINGS))[0], "ray": stack.enter_context(ray_server())}
        for endpoint in endpoints:  # warm each endpoint on both before timing
            for base in servers.values():
                run_locust(base, USERS[endpoint], 1, 3, Path(tmp))
        for endpoint in endpoints:
            for round_ in range(args.rounds):
                for mode in (("plain", "ray") if round_ % 2 == 0 else ("ray", "plain")):
                    result = run_locust(servers[mode], USERS[endpoint], args.clients, args.seconds, Path(tmp))
                    runs.append({"endpoint": endpoint, "mode": mode, "round": round_, **result})
                    log.info("%-8s %-5s %6.2f req/s  p50 %s  p95 %s ms  failures %d", endpoint, mode, result["rps"],
                             result["p50_ms"], result["p95_ms"], result["failures"])
            medians = {mode: {key: statistics.median(r[key] for r in runs if r["endpoint"] == endpoint
                                                     and r["mode"] == mode and r[key] is not None)
                              for key in ("rps", "p50_ms", "p95_ms")} for mode in servers}
            medians["ray_overhead"] = round(1 - medians["ray"]["rps"] / medians["plain"]["rps"], 3)
            summary[endpoint] = medians
            log.info("%s: Ray overhead %.1f %% of throughput", endpoint, 100 * medians["ray_overhead"])
    record = {"command": "bench/ray_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": SETTINGS, "clients": args.clients, "seconds": args.seconds, "summary": summary,
              "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
