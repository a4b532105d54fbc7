"""Soak test: mixed traffic over every endpoint against a real server on loopback.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 2] [--json bench/results/soak.json]

Starts `atelier serve` on a free loopback port (its own process), then drives it from this process with
`--clients` concurrent loops for `--minutes`, cycling through every endpoint (see requests_cycle): detection
(JSON and an annotated PNG, and a 2333x1434 photo), embedding, verification (largest face and best match),
stylisation (a network style, a mix, an OpenCV filter, a style image, a JSON body, a 4000x3000 photo), the style
list, a preview and the model list. Every 10 s it samples the server's resident memory from /proc. Reports
throughput, p50/p99 latency per endpoint overall and per 5-minute window (is p99 steady?), errors, and RSS growth
after warm-up (the first minute). Goals: zero errors, RSS growth under 10 %, p99 steady. Traffic stays on
127.0.0.1 and stops by itself.
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


WINDOW_S = 300  # p99 per window of this many seconds, to see whether it stays steady


def _large_jpeg(png: bytes, width: int, height: int) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").resize((width, height)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def requests_cycle() -> list[tuple[str, dict[str, Any]]]:
    """(name, httpx request arguments) for every endpoint; each name is one latency series."""
    import base64

    obama, obama2 = test_photo("obama.jpg").read_bytes(), test_photo("obama2.jpg").read_bytes()
    obama3 = test_photo("obama3.jpg").read_bytes()  # 2333x1434
    astronaut, coffee = skimage_photo_png("astronaut"), skimage_photo_png("coffee")
    large = _large_jpeg(astronaut, 4000, 3000)  # 12 MP
    pair = {"image_a": ("a.jpg", obama), "image_b": ("b.jpg", obama2)}
    return [
        ("detect", {"method": "POST", "url": "/v1/detect", "files": {"image": ("o.jpg", obama)}}),
        ("detect large", {"method": "POST", "url": "/v1/detect", "files": {"image": ("o3.jpg", obama3)}}),
        ("detect annotate", {"method": "POST", "url": "/v1/detect", "files": {"image": ("o.jpg", obama)},
                             "data": {"annotate": "true"}}),
        ("embed", {"method": "POST", "url": "/v1/embed", "files": {"image": ("o.jpg", obama2)}}),
        ("verify", {"method": "POST", "url": "/v1/verify", "files": pair}),
        ("verify best_match", {"method": "POST", "url": "/v1/verify", "files": pair, "data": {"face": "best_match"}}),
        ("stylize", {"method": "POST", "url": "/v1/stylize", "files": {"image": ("a.png", astronaut)},
                     "data": {"style": "19"}}),
        ("stylize mix jpeg", {"method": "POST", "url": "/v1/stylize", "files": {"image": ("a.png", astronaut)},
                              "data": {"style": "3:0.7,11:0.3", "format": "jpeg"}}),
        ("stylize filter", {"method": "POST", "url": "/v1/stylize", "files": {"image": ("c.png", coffee)},
                            "data": {"style": "pencil-sketch"}}),
        ("stylize style image", {"method": "POST", "url": "/v1/stylize",
                                 "files": {"image": ("a.png", astronaut), "style_image": ("c.png", coffee)}}),
        ("stylize json webp", {"method": "POST", "url": "/v1/stylize",
                               "json": {"image": base64.b64encode(coffee).decode(), "style": "7", "format": "webp"}}),
        ("stylize large", {"method": "POST", "url": "/v1/stylize", "files": {"image": ("l.jpg", large)},
                           "data": {"style": "5", "max_side": "1024", "format": "jpeg"}}),
        ("styles", {"method": "GET", "url": "/v1/styles"}),
        ("preview", {"method": "GET", "url": "/v1/styles/19/preview"}),
        ("models", {"method": "GET", "url": "/v1/models"}),
    ]


def p99(values: list[float]) -> float:
    return round(sorted(values)[max(0, int(len(values) * 0.99) - 1)] * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
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
        by_window: dict[str, dict[int, list[float]]] = {name: {} for name, _ in cycle}
        soak_start = time.monotonic()
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
                        response = session.request(**request)
                        ok = response.status_code == 200
                        detail = f"{name}: {response.status_code} {response.text[:120]}"
                    except httpx.HTTPError as exc:
                        ok, detail = False, f"{name}: {type(exc).__name__}"
                    elapsed = time.perf_counter() - started
                    window = int((time.monotonic() - soak_start) // WINDOW_S)
                    with lock:
                        if ok:
                            latencies[name].append(elapsed)
                            by_window[name].setdefault(window, []).append(elapsed)
                        else:
                            errors.append(detail)

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
                              "p99": p99(v),
                              "p99_by_window": [p99(by_window[name][w]) for w in sorted(by_window[name])]}
                       for name, v in latencies.items() if v},
        "window_s": WINDOW_S,
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
