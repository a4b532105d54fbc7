"""Soak test: mixed detect / stylize / verify traffic against a real server on loopback.

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 2] [--json bench/results/soak.json]

Starts `atelier serve` on a free loopback port (its own process), then drives it from this process with
`--clients` concurrent loops for `--minutes`, cycling through detect (obama.jpg), stylize (astronaut at 512 px,
one of the network styles) and verify (obama.jpg vs obama2.jpg). Every 10 s it samples the server's resident memory
from /proc. Reports throughput, p50/p99 latency per endpoint, errors, and RSS growth after warm-up (the first
minute). Goals: zero errors and RSS growth under 10 %. Traffic stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from export.fetch import skimage_photo_png, test_photo  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests_cycle() -> list[tuple[str, dict[str, Any]]]:
    obama, obama2 = test_photo("obama.jpg").read_bytes(), test_photo("obama2.jpg").read_bytes()
    astronaut = skimage_photo_png("astronaut")
    return [
        ("detect", {"url": "/v1/detect", "files": {"image": ("o.jpg", obama)}}),
        ("stylize", {"url": "/v1/stylize", "files": {"image": ("a.png", astronaut)}, "data": {"style": "19"}}),
        ("verify", {"url": "/v1/verify", "files": {"image_a": ("a.jpg", obama), "image_b": ("b.jpg", obama2)}}),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "ATELIER_LOG_LEVEL": "warning", "ATELIER_MAX_QUEUE": str(4 * args.clients)}
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        cycle = requests_cycle()
        latencies: dict[str, list[float]] = {name: [] for name, _ in cycle}
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.minutes * 60

        def client(offset: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as session:
                index = offset
                while time.monotonic() < stop_at:
                    name, request = cycle[index % len(cycle)]
                    index += 1
                    started = time.perf_counter()
                    try:
                        response = session.post(**request)
                        ok = response.status_code == 200
                        detail = f"{name}: {response.status_code} {response.text[:120]}"
                    except httpx.HTTPError as exc:
                        ok, detail = False, f"{name}: {type(exc).__name__}"
                    elapsed = time.perf_counter() - started
                    with lock:
                        (latencies[name].append(elapsed) if ok else errors.append(detail))

        samples: list[tuple[float, float]] = []
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - started, rss_mib(server.pid)))
            time.sleep(10)
        for thread in threads:
            thread.join()
        duration = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=60)

    warm = [rss for t, rss in samples if t >= 60] or [rss for _, rss in samples]
    growth = (warm[-1] - warm[0]) / warm[0] * 100 if warm else float("nan")
    total = sum(len(v) for v in latencies.values())
    report: dict[str, Any] = {
        "minutes": args.minutes, "clients": args.clients, "requests_ok": total, "errors": len(errors),
        "error_samples": errors[:5], "throughput_rps": round(total / duration, 3),
        "latency_ms": {name: {"n": len(v), "p50": round(statistics.median(v) * 1000, 1),
                              "p99": round(sorted(v)[max(0, int(len(v) * 0.99) - 1)] * 1000, 1)}
                       for name, v in latencies.items() if v},
        "rss_mib": {"after_warmup": round(warm[0], 1), "end": round(warm[-1], 1), "max": round(max(warm), 1),
                    "growth_percent": round(growth, 2)},
        "rss_samples": [(round(t), round(r, 1)) for t, r in samples],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if not errors and growth < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
