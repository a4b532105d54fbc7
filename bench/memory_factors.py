"""Peak memory of one job, measured, against the estimate the memory budget admits it by.

    .venv/bin/python bench/memory_factors.py [--json bench/results/memory.json]

Each case runs in a fresh process (the service's registry and pipelines, 2 threads, warmed up) and measures
the peak resident memory the job adds over what the loaded models hold (VmHWM after resetting it through
/proc/self/clear_refs, minus VmRSS before). The estimates are the pipelines' own (Stylizer.peak_bytes,
detection_peak_bytes, FaceRecognizer.peak_bytes, app.imaging.DECODE_BYTES_PER_PIXEL). Every estimate must
be at least the measurement (ratio >= 1), or the budget could let jobs past a memory limit; this exits 1
when one is not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

# (what, height, width, option): option is max_side for styles, min_face_size for faces.
CASES = [
    ("style:7", 512, 512, 4096), ("style:7", 1024, 1024, 4096), ("style:7", 2048, 2048, 4096),
    ("style:7", 2731, 4096, 4096), ("style:7", 4000, 6000, 1024), ("style:3:0.5,7:0.5", 1024, 1024, 4096),
    ("style:stylization", 2048, 2048, 4096), ("style:arbitrary", 2048, 2048, 4096),
    ("detect", 1080, 1920, 12), ("detect", 1080, 1920, 20), ("detect", 2160, 3840, 12), ("detect", 4000, 6000, 20),
    ("embed", 4000, 6000, 20), ("decode", 4000, 6000, 0),
]


def measure(what: str, height: int, width: int, option: int) -> dict[str, Any]:
    """Run in this process: the job's measured peak and its estimate, in MiB."""
    import io

    import numpy as np
    from PIL import Image

    from app.config import Settings
    from app.imaging import DECODE_BYTES_PER_PIXEL, decode_image
    from app.pipelines.mtcnn import DetectionParams, detection_peak_bytes
    from app.service import build_pipelines, load_registry

    settings = Settings(intra_op_threads=2)
    pipelines = build_pipelines(load_registry(settings), settings.models_dir, 2)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    encoded = b""
    if what == "decode":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        encoded, image = buffer.getvalue(), image[:1, :1]

    def status(key: str) -> float:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key))
        return int(line.split()[1]) / 1024

    before = status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    if what.startswith("style:"):
        assert pipelines.stylizer is not None
        style = what.split(":", 1)[1]
        if style == "arbitrary":
            style_image = np.ascontiguousarray(image[:300, :300])
            pipelines.stylizer.stylize(image, None, style_image=style_image, max_side=option)
            estimate = pipelines.stylizer.peak_bytes(height, width, None, option, (300, 300))
        else:
            pipelines.stylizer.stylize(image, style, max_side=option)
            estimate = pipelines.stylizer.peak_bytes(height, width, style, option)
    elif what == "detect":
        assert pipelines.detector is not None
        params = DetectionParams(min_face_size=option)
        pipelines.detector.detect(image, params)
        estimate = detection_peak_bytes(height, width, params)
    elif what == "embed":
        assert pipelines.recognizer is not None
        params = DetectionParams(min_face_size=option)
        pipelines.recognizer.embed_faces(image, params)
        estimate = pipelines.recognizer.peak_bytes([(height, width)], params)
    else:
        decode_image(encoded, max_pixels=10**9)
        estimate = DECODE_BYTES_PER_PIXEL * height * width
    peak = status("VmHWM:") - before
    return {"case": what, "height": height, "width": width, "option": option, "measured_mib": round(peak, 1),
            "estimate_mib": round(estimate / 2**20, 1), "ratio": round(estimate / 2**20 / max(peak, 1.0), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=4, metavar=("WHAT", "H", "W", "OPTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        what, height, width, option = args.one
        print(json.dumps(measure(what, int(height), int(width), int(option))))
        return 0
    rows = []
    for what, height, width, option in CASES:
        out = subprocess.run([sys.executable, __file__, "--one", what, str(height), str(width), str(option)],
                             capture_output=True, text=True, check=True, cwd=REPO_ROOT)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['case']:22} {width}x{height} option {option:5}: measured {row['measured_mib']:8.1f} MiB, "
              f"estimate {row['estimate_mib']:8.1f} MiB, ratio {row['ratio']:.2f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    short = [row for row in rows if row["ratio"] < 1.0]
    for row in short:
        print(f"estimate below the measurement: {row}", file=sys.stderr)
    return 1 if short else 0


if __name__ == "__main__":
    raise SystemExit(main())
