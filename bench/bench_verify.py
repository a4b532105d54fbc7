"""Benchmark: Atelier's face verification vs face_recognition 1.3.0 end to end, on the same photo pairs.

Both sides do the whole comparison for each pair: read and decode both photos, find the faces, compute
descriptors, compare. Ours: MTCNN (app.pipelines.mtcnn on the MTCNN ONNX models, smallest face
VERIFY_MIN_FACE_SIZE) -> align_faces -> embed (models/dlib_face_resnet.onnx) -> best_match. Theirs:
face_recognition.load_image_file -> face_locations (HOG, 1 upsample) -> face_encodings (dlib 5-point
chip + the same ResNet in dlib) -> face_distance <= 0.6. face_recognition runs in .cache/ref-dlib-venv
(bash bench/make_ref_dlib_venv.sh) as a server process (bench/ref_dlib.py serve) that times each pair
itself; the two sides alternate pair by pair, never overlapping, so background load hits both alike.
Models are loaded once before timing on both sides; one untimed warm-up round; then `--repeat` rounds;
the median per pair is compared.

  PYTHONPATH=. .venv/bin/python bench/bench_verify.py [--repeat 5] [--threads 2]

Our sessions are split as the service splits them (app.service.load_registry): MTCNN's nets one intra-op
thread each, run from --threads workers; the embedding net --threads intra-op threads.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from app.pipelines.align import align_faces
from app.pipelines.mtcnn import DetectionParams, MtcnnDetector
from app.pipelines.verify import VERIFY_MIN_FACE_SIZE, best_match, embed
from app.runtime import ModelSession, load_model, read_manifest
from export.fetch import REPO_ROOT, skimage_photo_png, test_photo

log = logging.getLogger("bench_verify")
REF_PYTHON = REPO_ROOT / ".cache" / "ref-dlib-venv" / "bin" / "python"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut"]


def _session(models_dir: Path, model_id: str, threads: int) -> ModelSession:
    entry = next(e for e in read_manifest(models_dir) if e["id"] == model_id)
    return load_model(entry, models_dir, ["CPUExecutionProvider"], threads)


def _decode(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--min-face-size",
        type=int,
        default=VERIFY_MIN_FACE_SIZE,
        help="MTCNN's smallest face (20 = MTCNN's published default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not REF_PYTHON.exists():
        raise SystemExit("needs .cache/ref-dlib-venv: bash bench/make_ref_dlib_venv.sh")

    pnet, rnet, onet = (_session(REPO_ROOT / "models", f"mtcnn-{n}", 1) for n in ("pnet", "rnet", "onet"))
    detector = MtcnnDetector(pnet, rnet, onet, workers=args.threads)
    embedder = _session(REPO_ROOT / "models", "dlib-face-resnet", args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name in PHOTOS:
            path = Path(tmp) / (name if "." in name else name + ".png")
            path.write_bytes(skimage_photo_png(name) if "." not in name else test_photo(name).read_bytes())
            paths.append(path)
        pairs = list(itertools.combinations(range(len(paths)), 2))
        server = subprocess.Popen(
            [str(REF_PYTHON), str(REPO_ROOT / "bench" / "ref_dlib.py"), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        if server.stdin is None or server.stdout is None:
            raise SystemExit("could not start the face_recognition server")
        json.loads(server.stdout.readline())  # {"ready": true}: models loaded

        def reference(a: Path, b: Path) -> dict[str, Any]:
            server.stdin.write(json.dumps([str(a), str(b)]) + "\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            return dict(json.loads(server.stdout.readline()))  # type: ignore[union-attr]

        params = DetectionParams(min_face_size=args.min_face_size)

        def verify(a: Path, b: Path) -> tuple[bool, float]:
            images = [_decode(a), _decode(b)]
            landmarks = [
                np.array([f.landmarks for f in detector.detect(im, params)]).reshape(-1, 5, 2)
                for im in images
            ]
            chips = [align_faces(im, lm) for im, lm in zip(images, landmarks, strict=True)]
            descriptors = embed(embedder, np.concatenate(chips))
            match = best_match(descriptors[: len(chips[0])], descriptors[len(chips[0]) :])
            return match.same, match.similarity

        log.info(
            "%d pairs x %d rounds, alternating face_recognition and atelier ...", len(pairs), args.repeat
        )
        for a, b in pairs:  # warm-up on both sides
            reference(paths[a], paths[b])
            verify(paths[a], paths[b])
        ours_seconds: list[list[float]] = []  # per round, per pair
        ours_same: list[bool] = []
        ours_sim: list[float] = []
        ref: dict[str, list[Any]] = {"seconds": [], "same": [], "distance": []}
        for _ in range(args.repeat):
            row: list[float] = []
            ref_row: list[float] = []
            for a, b in pairs:
                answer = reference(paths[a], paths[b])
                ref_row.append(answer["seconds"])
                start = time.perf_counter()
                same, sim = verify(paths[a], paths[b])
                row.append(time.perf_counter() - start)
                if len(ours_same) < len(pairs):
                    ours_same.append(same)
                    ours_sim.append(sim)
                    ref["same"].append(answer["same"])
                    ref["distance"].append(answer["distance"])
            ours_seconds.append(row)
            ref["seconds"].append(ref_row)
        server.stdin.close()
        server.wait(timeout=60)

    ours_median = [statistics.median(col) for col in zip(*ours_seconds, strict=True)]
    ref_median = [statistics.median(col) for col in zip(*ref["seconds"], strict=True)]
    rows: list[dict[str, Any]] = []
    print(f"{'pair':34s} {'face_recognition':>17s} {'atelier':>9s} {'ratio':>6s}  decisions (fr / ours)")  # noqa: T201
    for k, (a, b) in enumerate(pairs):
        label = f"{PHOTOS[a]} vs {PHOTOS[b]}"
        ratio = ref_median[k] / ours_median[k]
        rows.append(
            {
                "pair": label,
                "face_recognition_s": ref_median[k],
                "atelier_s": ours_median[k],
                "ratio": ratio,
                "fr_same": ref["same"][k],
                "fr_distance": ref["distance"][k],
                "ours_same": ours_same[k],
                "ours_cosine": ours_sim[k],
            }
        )
        print(
            f"{label:34s} {ref_median[k] * 1000:14.1f} ms {ours_median[k] * 1000:6.1f} ms {ratio:5.2f}x"  # noqa: T201
            f"  {ref['same'][k]!s:5s} / {ours_same[k]!s:5s}"
            f"  (L2 {ref['distance'][k]:.3f}, cos {ours_sim[k]:.3f})"
        )
    total_ref, total_ours = sum(ref_median), sum(ours_median)
    agree = sum(r["fr_same"] == r["ours_same"] for r in rows)
    summary = {
        "pairs": len(pairs),
        "repeat": args.repeat,
        "threads": args.threads,
        "min_face_size": args.min_face_size,
        "face_recognition_total_s": total_ref,
        "atelier_total_s": total_ours,
        "speedup": total_ref / total_ours,
        "decisions_agree": agree,
        "cpu": platform.processor() or platform.machine(),
        "onnxruntime": ort.__version__,
        "rows": rows,
    }
    print(
        f"total (median per pair, summed): face_recognition {total_ref:.3f} s, atelier {total_ours:.3f} s, "  # noqa: T201
        f"speed-up {total_ref / total_ours:.2f}x; decisions agree on {agree}/{len(pairs)} pairs"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
