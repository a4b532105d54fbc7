"""Batching in a real server: concurrent /v1/embed requests share embedder runs and get the answers that a
server without batching gives, and /metrics shows the batches."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import photo_bytes
from tests.hardening.conftest import live_server

PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "astronaut")


def embed_all_at_once(base: str) -> list[dict[str, Any]]:
    def embed(name: str) -> dict[str, Any]:
        response = httpx.post(f"{base}/v1/embed", files={"image": (name, photo_bytes(name))}, timeout=120)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        body.pop("timings_ms", None)
        return body

    with ThreadPoolExecutor(len(PHOTOS)) as pool:
        return list(pool.map(embed, PHOTOS))


def metric(text: str, name: str, model: str) -> float | None:
    """The sample of `name` for `model`, or for its int8 variant where that serves it (app.runtime)."""
    found = re.search(rf'^{name}{{model="{model}(?:-int8)?"}} ([0-9.e+-]+)$', text, flags=re.MULTILINE)
    return float(found.group(1)) if found else None


def test_concurrent_embeds_batched_equal_unbatched_and_share_runs() -> None:
    # A long timeout so that the four requests' embeddings meet however the machine's load staggers them;
    # the collector stops waiting as soon as every running job has its chips queued.
    with live_server(max_concurrency="4", batch_max_size="16", batch_timeout_ms="5000") as (base, _):
        batched = embed_all_at_once(base)
        metrics = httpx.get(f"{base}/metrics").text
    with live_server(max_concurrency="4", batch_max_size="1") as (base, _):
        unbatched = embed_all_at_once(base)
        metrics_off = httpx.get(f"{base}/metrics").text
    assert batched == unbatched  # every box, landmark, score and embedding, to the last digit
    assert all(body["faces"] for body in batched)
    calls = metric(metrics, "atelier_batch_size_sum", "dlib-face-resnet")
    runs = metric(metrics, "atelier_batch_size_count", "dlib-face-resnet")
    assert calls is not None and runs is not None
    assert calls >= len(PHOTOS) and runs < calls  # at least two requests' chips shared a run
    assert metric(metrics, "atelier_batch_wait_seconds_count", "dlib-face-resnet") == calls
    assert metric(metrics_off, "atelier_batch_size_count", "dlib-face-resnet") is None  # off: no batcher
