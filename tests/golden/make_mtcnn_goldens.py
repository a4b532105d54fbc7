"""Golden MTCNN detections (tests/golden/mtcnn/*.json) from the reference, facenet-pytorch 2.6.0.

Rerun (needs the reference venv, made by `bash bench/make_ref_venv.sh`):

    .venv/bin/python tests/golden/make_mtcnn_goldens.py

The main venv decodes the photos (PIL / scikit-image, optionally resized with OpenCV) into .npy files, then
runs this same file under .cache/ref-mtcnn-venv/bin/python with `--reference DIR`, which loads
facenet-pytorch's MTCNN (its own weights and code) and writes MTCNN.detect's raw outputs. Each golden
records the sha256 of the decoded image so a test can tell a decoder difference from a detector difference.
`case_image` is shared with the tests and bench/bench_detect.py so that all three see the same pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT / "tests" / "golden" / "mtcnn"
REF_PYTHON = REPO_ROOT / ".cache" / "ref-mtcnn-venv" / "bin" / "python"
REF_THREADS = 2

# name -> (photo, output size (width, height) or None for the original, detector parameters)
CASES: dict[str, tuple[str, tuple[int, int] | None, dict[str, Any]]] = {
    "obama": ("obama.jpg", None, {}),
    "obama_small_faces": ("obama.jpg", None, {"min_face_size": 12, "scale_factor": 0.8}),
    "obama_strict": ("obama.jpg", None, {"min_face_size": 40, "thresholds": [0.7, 0.8, 0.9]}),
    "obama_640x480": ("obama.jpg", (640, 480), {}),
    "obama_1920x1080": ("obama.jpg", (1920, 1080), {}),
    "astronaut": ("astronaut", None, {}),
    "astronaut_mirrored": ("astronaut_mirrored", None, {}),
    "astronaut_1920x1080": ("astronaut", (1920, 1080), {}),
    "coffee": ("coffee", None, {}),
    "chelsea": ("chelsea", None, {}),
}
DEFAULTS: dict[str, Any] = {"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7], "scale_factor": 0.709}


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale (OpenCV INTER_AREA down, INTER_LINEAR up) to fit `size` = (width, height), centred on black."""
    import cv2

    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    fit_w, fit_h = min(width, round(image.shape[1] * scale)), min(height, round(image.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - fit_h) // 2, (width - fit_w) // 2
    fitted = cv2.resize(image, (fit_w, fit_h), interpolation=interpolation)
    canvas[top:top + fit_h, left:left + fit_w] = fitted
    return canvas


def photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a face_recognition test photo (PIL decode) or a scikit-image sample."""
    if name.endswith("_mirrored"):
        return np.ascontiguousarray(photo(name.removesuffix("_mirrored"))[:, ::-1])
    if name.endswith((".jpg", ".png")):
        from PIL import Image

        from export.fetch import test_photo

        with Image.open(test_photo(name)) as opened:
            return np.asarray(opened.convert("RGB")).copy()
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def case_image(case: str) -> np.ndarray:
    name, size, _ = CASES[case]
    image = photo(name)
    return letterbox(image, size) if size else image


def case_params(case: str) -> dict[str, Any]:
    return {**DEFAULTS, **CASES[case][2]}


def image_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def run_reference(directory: Path) -> None:
    """In the reference venv: facenet-pytorch's MTCNN.detect on each <case>.npy with its params."""
    import facenet_pytorch
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(REF_THREADS)
    for path in sorted(directory.glob("*.npy")):
        params = json.loads(path.with_suffix(".json").read_text())
        detector = MTCNN(min_face_size=params["min_face_size"], thresholds=params["thresholds"],
                         factor=params["scale_factor"], keep_all=True, device="cpu")
        boxes, probs, points = detector.detect(np.load(path), landmarks=True)
        out = {"boxes": [], "scores": [], "landmarks": []} if boxes is None else {
            "boxes": np.asarray(boxes, dtype=np.float64).tolist(),
            "scores": np.asarray(probs, dtype=np.float64).tolist(),
            "landmarks": np.asarray(points, dtype=np.float64).tolist(),
        }
        out["reference"] = {"facenet_pytorch": getattr(facenet_pytorch, "__version__", "2.6.0"),
                            "torch": torch.__version__}
        path.with_suffix(".out.json").write_text(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path,
                        help="(internal) run facenet-pytorch on the .npy files in DIR")
    args = parser.parse_args(argv)
    if args.reference:
        run_reference(args.reference)
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in CASES:
            np.save(work / f"{case}.npy", case_image(case))
            (work / f"{case}.json").write_text(json.dumps(case_params(case)))
        subprocess.run([str(REF_PYTHON), str(Path(__file__).resolve()), "--reference", str(work)], check=True)
        for case in CASES:
            image = np.load(work / f"{case}.npy")
            out = json.loads((work / f"{case}.out.json").read_text())
            # Highest score first, like our detector (facenet-pytorch orders by area when select_largest).
            order = np.argsort(-np.asarray(out["scores"], dtype=np.float64), kind="stable").tolist()
            golden = {
                "case": case,
                "photo": CASES[case][0],
                "size": list(image.shape[1::-1]),
                "image_sha256": image_sha256(image),
                "params": case_params(case),
                "reference": out["reference"],
                "boxes": [out["boxes"][i] for i in order],
                "scores": [out["scores"][i] for i in order],
                "landmarks": [out["landmarks"][i] for i in order],
            }
            (GOLDEN_DIR / f"{case}.json").write_text(json.dumps(golden, indent=1) + "\n")
            print(f"{case}: {len(order)} face(s)")  # noqa: T201 - a script's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
