"""How many P-Net candidates real photos produce, per pyramid level and after each level's NMS.

The caps in app/pipelines/mtcnn.py (PNET_MAX_CELLS_PER_LEVEL, PNET_MAX_PROPOSALS) must sit above what the
default thresholds produce, so that capping never changes a result there. This prints, for every test photo
(plus a 1080p astronaut and a noise image) and three pyramid settings, the most cells above P-Net's threshold
at one level and the sum over levels of the boxes that survive that level's NMS.

    PYTHONPATH=. .venv/bin/python bench/pnet_candidates.py [--threshold 0.6]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from app.pipelines import mtcnn
from app.runtime import load_model, read_manifest
from export.fetch import TEST_PHOTOS, skimage_photo_png, test_photo

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SETTINGS = ((20, 0.709), (12, 0.8), (12, 0.95))  # (min_face_size, scale_factor): default, fine, finest


def photos() -> dict[str, np.ndarray]:
    found = {name: np.asarray(Image.open(test_photo(name)).convert("RGB")) for name in TEST_PHOTOS}
    for name in ("astronaut", "coffee", "chelsea"):
        found[name] = np.asarray(Image.open(io.BytesIO(skimage_photo_png(name))).convert("RGB"))
    found["astronaut 1920x1080"] = cv2.resize(found["astronaut"], (1920, 1080), interpolation=cv2.INTER_AREA)
    found["noise 720x540"] = np.random.default_rng(0).integers(0, 255, (540, 720, 3), dtype=np.uint8)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=mtcnn.DetectionParams().thresholds[0])
    args = parser.parse_args()
    entries = {e["id"]: e for e in read_manifest(MODELS_DIR)}
    pnet = load_model(entries["mtcnn-pnet"], MODELS_DIR, ["CPUExecutionProvider"], 2)
    worst_level = worst_sum = 0
    for name, image in photos().items():
        height, width = image.shape[:2]
        resampler = mtcnn.AreaResampler(image)
        for min_face_size, scale_factor in SETTINGS:
            per_level, survivors = [], 0
            for scale in mtcnn.pyramid_scales(height, width, min_face_size, scale_factor):
                level = mtcnn.normalise(resampler.level(*mtcnn.scaled_size(height, width, scale)))[None]
                offsets, prob = pnet.run({"image": level})
                boxes = mtcnn.generate_boxes(offsets[0], prob[0], scale, args.threshold)
                per_level.append(len(boxes))
                survivors += len(mtcnn.nms(boxes[:, :4], boxes[:, 4], mtcnn.PNET_SCALE_NMS_IOU))
            worst_level, worst_sum = max(worst_level, max(per_level)), max(worst_sum, survivors)
            print(f"{name:24} {width}x{height} min_face_size {min_face_size:2} scale_factor {scale_factor:<5} "
                  f"most cells at a level {max(per_level):6}  after per-level NMS, summed {survivors:6}")
    print(f"most cells at one level {worst_level} (cap {mtcnn.PNET_MAX_CELLS_PER_LEVEL}); most summed "
          f"survivors {worst_sum} (cap {mtcnn.PNET_MAX_PROPOSALS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
