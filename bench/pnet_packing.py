"""P-Net per pyramid level vs once over a packed canvas (MtcnnDetector packing='per_level' / 'packed').

    PYTHONPATH=. .venv/bin/python bench/pnet_packing.py [--repeats 9] [--workers 2] [--band-rows 32 ...]
                                                        [--json bench/results/pnet_packing.json]

One process, the same onnxruntime sessions (one intra-op thread each, as the service) under both detectors,
calls interleaved (per-level, packed, per-level, ...) so that a change in the shared machine's load hits both
alike. Images: obama.jpg letterboxed to 1920x1080 and 640x480 (tests/golden/make_mtcnn_goldens.py) and the
group photo obama3.jpg (2333x1434) as it is; MTCNN's default parameters. Reported per image and band height:
median whole-detection and P-Net-stage wall times, the ratio packed / per-level (< 1: packed is faster), the
canvas's share of level pixels, and whether the detections are identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.pipelines import mtcnn  # noqa: E402
from app.pipelines.mtcnn import DetectionParams, MtcnnDetector, pack_pyramid, pyramid_scales, scaled_size  # noqa: E402
from tests.golden.make_mtcnn_goldens import case_image  # noqa: E402
from tests.helpers import MODELS_DIR, OnnxRunner  # noqa: E402


def images() -> dict[str, np.ndarray]:
    from PIL import Image

    from export.fetch import test_photo

    group = np.asarray(Image.open(test_photo("obama3.jpg")).convert("RGB"))
    return {"1920x1080": case_image("obama_1920x1080"), "640x480": case_image("obama_640x480"),
            f"obama3.jpg {group.shape[1]}x{group.shape[0]}": group}


def same(a: list[mtcnn.Face], b: list[mtcnn.Face]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.box, y.box) and x.score == y.score and np.array_equal(x.landmarks, y.landmarks)
        for x, y in zip(a, b, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--band-rows", type=int, nargs="+", default=[mtcnn.PNET_BAND_OUTPUT_ROWS])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    nets = [OnnxRunner(MODELS_DIR / f"mtcnn_{net}.onnx", threads=1) for net in ("pnet", "rnet", "onet")]
    per_level = MtcnnDetector(*nets, workers=args.workers, packing="per_level")
    packed = MtcnnDetector(*nets, workers=args.workers, packing="packed")
    params = DetectionParams()
    rows: list[dict[str, Any]] = []
    for name, image in images().items():
        sizes = [scaled_size(*image.shape[:2], s) for s in pyramid_scales(*image.shape[:2], params.min_face_size,
                                                                           params.scale_factor)]
        layout = pack_pyramid(sizes)
        share = sum(h * w for h, w in sizes) / (layout.height * layout.width)
        for band_rows in args.band_rows:
            mtcnn.PNET_BAND_OUTPUT_ROWS = band_rows  # read by pnet_jobs at each call
            times: dict[str, list[float]] = {"per_level": [], "packed": []}
            pnet_ms: dict[str, list[float]] = {"per_level": [], "packed": []}
            faces: dict[str, list[mtcnn.Face]] = {}
            for detector in (per_level, packed):  # warm-up: onnxruntime's first run of each shape
                detector.run(image, params)
            for _ in range(args.repeats):
                for key, detector in (("per_level", per_level), ("packed", packed)):
                    start = time.perf_counter()
                    result = detector.run(image, params)
                    times[key].append((time.perf_counter() - start) * 1000.0)
                    pnet_ms[key].append(result.timings_ms["pnet"])
                    faces[key] = result.faces
            row = {
                "image": name, "band_rows": band_rows, "levels": len(sizes), "canvas_share": round(share, 3),
                **{f"{key}_ms": round(statistics.median(v), 2) for key, v in times.items()},
                **{f"{key}_pnet_ms": round(statistics.median(v), 2) for key, v in pnet_ms.items()},
                "identical": same(faces["per_level"], faces["packed"]), "faces": len(faces["packed"]),
            }
            row["ratio"] = round(row["packed_ms"] / row["per_level_ms"], 3)
            row["pnet_ratio"] = round(row["packed_pnet_ms"] / row["per_level_pnet_ms"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"workers": args.workers, "repeats": args.repeats, "rows": rows}, indent=1))
    for detector in (per_level, packed):
        detector.close()
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
