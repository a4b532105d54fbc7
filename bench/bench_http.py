"""What HTTP costs on top of inference: POST /v1/stylize end to end vs the bare network call, side by side.

    .venv/bin/python bench/bench_http.py [--size 512] [--repeats 20] [--format png] [--json out.json]

Starts `atelier serve` (uvicorn with uvloop/httptools) on a free loopback port, then alternates, block by block:
(a) the whole request from a keep-alive client — upload, decode, inference, encode, download — for a photo of
--size px (scikit-image's astronaut) and one network style; (b) in this process, the bare onnxruntime call of
the same network on the same image with the same thread count as the server's sessions. Reports medians and
(a) / (b). The issue's goal: the whole request costs at most 15 % more than the bare inference at 512 px.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.config import Settings  # noqa: E402
from app.pipelines.style import load_catalogue, multi_style_weights, to_unit_nchw  # noqa: E402
from app.service import load_registry  # noqa: E402
from export.fetch import skimage_photo_png  # noqa: E402

STYLE = "19"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--format", default="png", choices=["png", "jpeg", "webp"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    photo = Image.open(io.BytesIO(skimage_photo_png("astronaut"))).convert("RGB").resize((args.size, args.size))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=92)
    upload = buffer.getvalue()
    rgb = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB"))

    settings = Settings()
    registry = load_registry(settings)
    network = registry.get("style-multi26")
    index = next(s["index"] for s in load_catalogue(settings.models_dir)["styles"] if s["id"] == STYLE)
    weights = multi_style_weights([(index, 1.0)])[None]  # (1, 26): one style
    feeds = {network.input_names[0]: to_unit_nchw(rgb), network.input_names[1]: weights}

    port = free_port()
    env = {**os.environ, "ATELIER_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    http_s: list[float] = []
    bare_s: list[float] = []
    server_inference_ms: list[float] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)

            def request() -> httpx.Response:
                return client.post("/v1/stylize", files={"image": ("photo.jpg", upload, "image/jpeg")},
                                   data={"style": STYLE, "format": args.format})

            rounds = 4
            per_block = max(1, args.repeats // rounds)
            for _ in range(rounds):  # blocks in turn: a load change hits both sides, and neither side's idle
                request()            # (spinning) threads land inside the other's timed calls
                for _ in range(per_block):
                    start = time.perf_counter()
                    response = request()
                    http_s.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
                    server_inference_ms.append(float(timing["inference"]))
                network.run(feeds)
                for _ in range(per_block):
                    start = time.perf_counter()
                    network.run(feeds)
                    bare_s.append(time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(timeout=30)
    http_ms, bare_ms = statistics.median(http_s) * 1000, statistics.median(bare_s) * 1000
    report = {"size": args.size, "format": args.format, "repeats": args.repeats,
              "http_request_ms": round(http_ms, 1), "bare_inference_ms": round(bare_ms, 1),
              "server_pipeline_ms": round(statistics.median(server_inference_ms), 1),
              "http_over_bare": round(http_ms / bare_ms, 3)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
