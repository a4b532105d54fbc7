"""bench/load.py works end to end (a tiny sweep): both servers answer, Locust's figures and the batch sizes
are read, the JSON and the plot are written. The real sweep is `make bench-load`, never a test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_a_tiny_load_sweep_writes_its_record_and_plot(tmp_path: Path) -> None:
    record, plot = tmp_path / "load.json", tmp_path / "load.png"
    subprocess.run([sys.executable, "bench/load.py", "--endpoints", "embed", "--clients", "1,2", "--seconds", "3",
                    "--json", str(record), "--plot", str(plot)], cwd=REPO_ROOT, check=True, timeout=600)
    runs = json.loads(record.read_text())["runs"]
    assert sorted((r["clients"], r["batching"]) for r in runs) == [(1, False), (1, True), (2, False), (2, True)]
    assert all(r["requests"] > 0 and r["failures"] == 0 and r["rps"] > 0 for r in runs)
    assert all({"dlib-face-resnet", "dlib-face-resnet-int8"} & set(r["mean_batch_size"]) for r in runs
               if r["batching"])
    assert all(r["mean_batch_size"] == {} for r in runs if not r["batching"])
    assert plot.stat().st_size > 10_000
