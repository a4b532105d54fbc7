"""Side-by-side MTCNN benchmark: Atelier's pipeline (onnxruntime, numpy) vs facenet-pytorch 2.6.0's MTCNN.

    bash bench/make_ref_venv.sh                      # once: the reference venv in .cache/ref-mtcnn-venv
    .venv/bin/python bench/bench_detect.py [--threads 2] [--repeats 7] [--json bench/results/detect.json]
                                           [--ort-spinning off] [--pause-ms 100]

Both sides use the same weights (ours are converted from facenet-pytorch's), the same parameters (MTCNN's
defaults), the same photos letterboxed to 640x480 and 1920x1080 (tests/golden/make_mtcnn_goldens.py), and the
same thread count (onnxruntime intra-op threads; torch.set_num_threads). The reference runs in its own process
(its torch cannot live in our venv); the two sides are timed alternately, one call each in turn, so that a
change in machine load hits both alike. Reported: median and best wall time per image, the ratios
reference / ours, the median CPU time per call of each side's process (all its threads: a side using more
cores than the other would show here), and whether the detections agree (same count, box IoU >= 0.99,
scores within 1e-3, landmarks within 1 px).
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
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
REF_PYTHON = REPO_ROOT / ".cache" / "ref-mtcnn-venv" / "bin" / "python"
PHOTOS = ("obama.jpg", "astronaut")
SIZES = ((640, 480), (1920, 1080))
MIN_IOU, SCORE_ATOL, LANDMARK_ATOL_PX = 0.99, 1e-3, 1.0

log = logging.getLogger("bench_detect")


def reference_worker(threads: int) -> None:
    """Runs in the reference venv: answer one JSON line per request read from stdin."""
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(threads)
    detector = MTCNN(keep_all=True, device="cpu")
    images: dict[str, np.ndarray] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "load":
            images[request["name"]] = np.load(request["path"])
            reply: dict[str, Any] = {"ok": True}
        else:
            start, start_cpu = time.perf_counter(), time.process_time()
            boxes, probs, points = detector.detect(images[request["name"]], landmarks=True)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            reply = {"seconds": seconds, "cpu_seconds": cpu_seconds, "boxes": [], "scores": [], "landmarks": []
                     } if boxes is None else {
                "seconds": seconds, "cpu_seconds": cpu_seconds, "boxes": np.asarray(boxes, np.float64).tolist(),
                "scores": np.asarray(probs, np.float64).tolist(),
                "landmarks": np.asarray(points, np.float64).tolist()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Reference:
    """The reference worker process, driven one request at a time."""

    def __init__(self, threads: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            [str(REF_PYTHON), str(Path(__file__).resolve()), "--worker", "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.process.stdin is None or self.process.stdout is None:
            raise RuntimeError("the reference worker has no pipes")
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the reference worker stopped; is .cache/ref-mtcnn-venv complete?")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def agreement(ours: list[Any], ref: dict[str, Any]) -> tuple[bool, str]:
    """Whether our faces match the reference's (both put in score order)."""
    order = np.argsort(-np.asarray(ref["scores"], np.float64), kind="stable")
    if len(ours) != len(order):
        return False, f"{len(ours)} faces vs {len(order)}"
    worst_iou, worst_score, worst_lm = 1.0, 0.0, 0.0
    for face, k in zip(ours, order, strict=True):
        a, b = face.box.astype(np.float64), np.asarray(ref["boxes"][k])
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        worst_iou = min(worst_iou, inter / union)
        worst_score = max(worst_score, abs(face.score - ref["scores"][k]))
        worst_lm = max(worst_lm, float(np.abs(face.landmarks - np.asarray(ref["landmarks"][k])).max()))
    same = worst_iou >= MIN_IOU and worst_score <= SCORE_ATOL and worst_lm <= LANDMARK_ATOL_PX
    return same, f"{len(ours)} faces, IoU>={worst_iou:.4f}, dscore<={worst_score:.1e}, dlm<={worst_lm:.2f}px"


def make_runner(path: Path, threads: int, spinning: str) -> Any:
    """tests.helpers.OnnxRunner over `path`; with spinning 'off', its session lets idle intra-op threads sleep
    (session.intra_op.allow_spinning = 0) instead of busy-waiting, onnxruntime's default."""
    import onnxruntime as ort

    from tests.helpers import OnnxRunner

    runner = OnnxRunner(path, threads=threads)
    if spinning == "off":
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        runner.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--ort-spinning", choices=("on", "off"), default="off",
                        help="onnxruntime's session.intra_op.allow_spinning for our three sessions (its default: "
                             "on); 'off' lets idle pool threads sleep instead of busy-waiting")
    parser.add_argument("--pause-ms", type=float, default=100.0,
                        help="sleep this long before each timed call on either side, so that the thread pool "
                             "of the side that just ran (onnxruntime's or OpenMP's, busy-waiting for a while "
                             "after each call) does not steal the 2 cores from the other; 100 is enough here")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads our detector runs its nets from (default: --threads, as the service does); "
                             "each net's session then gets threads // workers intra-op threads")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        reference_worker(args.threads)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(REPO_ROOT))
    from app.pipelines.mtcnn import MtcnnDetector
    from tests.golden.make_mtcnn_goldens import letterbox, photo
    from tests.helpers import MODELS_DIR

    if not REF_PYTHON.exists():
        log.error("no reference venv at %s: run `bash bench/make_ref_venv.sh` first", REF_PYTHON)
        return 2
    workers = args.workers or args.threads
    pnet, rnet, onet = (make_runner(MODELS_DIR / f"mtcnn_{n}.onnx", max(1, args.threads // workers),
                                    args.ort_spinning) for n in ("pnet", "rnet", "onet"))
    ours = MtcnnDetector(pnet, rnet, onet, workers=workers)
    reference = Reference(args.threads)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for photo_name in PHOTOS:
                original = photo(photo_name)
                for size in SIZES:
                    name = f"{photo_name}@{size[0]}x{size[1]}"
                    image = letterbox(original, size)
                    np.save(Path(tmp) / "image.npy", image)
                    reference.ask({"op": "load", "name": name, "path": str(Path(tmp) / "image.npy")})
                    ours.run(image)  # warm-up: first-run allocations of each shape
                    ref_reply = reference.ask({"op": "run", "name": name})
                    our_times: list[float] = []
                    ref_times: list[float] = []
                    our_cpu: list[float] = []  # process CPU time per call: all threads of each side
                    ref_cpu: list[float] = []
                    stage_ms: list[dict[str, float]] = []
                    for _ in range(args.repeats):
                        time.sleep(args.pause_ms / 1000)  # let the other side's idle threads stop spinning
                        start, start_cpu = time.perf_counter(), time.process_time()
                        result = ours.run(image)
                        our_times.append(time.perf_counter() - start)
                        our_cpu.append(time.process_time() - start_cpu)
                        stage_ms.append(result.timings_ms)
                        time.sleep(args.pause_ms / 1000)
                        ref_reply = reference.ask({"op": "run", "name": name})
                        ref_times.append(ref_reply["seconds"])
                        ref_cpu.append(ref_reply["cpu_seconds"])
                    same, detail = agreement(result.faces, ref_reply)
                    ours_ms = 1000 * statistics.median(our_times)
                    ref_ms = 1000 * statistics.median(ref_times)
                    stages = {k: round(statistics.median(s[k] for s in stage_ms), 1) for k in stage_ms[0]}
                    best_ratio = min(ref_times) / min(our_times)
                    rows.append({"image": name, "ours_ms": round(ours_ms, 1),
                                 "facenet_pytorch_ms": round(ref_ms, 1), "ratio": round(ref_ms / ours_ms, 2),
                                 "ours_best_ms": round(1000 * min(our_times), 1),
                                 "facenet_pytorch_best_ms": round(1000 * min(ref_times), 1),
                                 "best_ratio": round(best_ratio, 2),
                                 "ours_cpu_ms": round(1000 * statistics.median(our_cpu), 1),
                                 "facenet_pytorch_cpu_ms": round(1000 * statistics.median(ref_cpu), 1),
                                 "identical": same, "detail": detail, "our_stages_ms": stages})
                    log.info("%-24s ours %7.1f ms  facenet-pytorch %7.1f ms  ratio %.2fx "
                             "(best-of %.2fx)  CPU time %.1f vs %.1f ms  %s (%s) stages %s", name, ours_ms, ref_ms,
                             ref_ms / ours_ms, best_ratio, rows[-1]["ours_cpu_ms"], rows[-1]["facenet_pytorch_cpu_ms"],
                             "same" if same else "DIFFERENT", detail, stages)
    finally:
        reference.close()
    for size in SIZES:
        label = f"{size[0]}x{size[1]}"
        picked = [r for r in rows if r["image"].endswith(label)]
        total_ref = sum(r["facenet_pytorch_ms"] for r in picked)
        total_ours = sum(r["ours_ms"] for r in picked)
        best_ref = sum(r["facenet_pytorch_best_ms"] for r in picked)
        best_ours = sum(r["ours_best_ms"] for r in picked)
        log.info("%s: facenet-pytorch / ours = %.2fx on medians, %.2fx on best times, over %d photos "
                 "(threads %d, workers %d, %d runs each, onnxruntime spinning %s, pause %g ms)", label,
                 total_ref / total_ours, best_ref / best_ours, len(picked), args.threads, workers,
                 args.repeats, args.ort_spinning, args.pause_ms)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"threads": args.threads, "workers": workers, "repeats": args.repeats,
                   "ort_spinning": args.ort_spinning,
                   "pause_ms": args.pause_ms,
                   "rows": rows}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
