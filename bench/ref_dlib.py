"""Reference side of the dlib checks: runs INSIDE .cache/ref-dlib-venv (dlib + face_recognition), never in
the service's venv. Called as a subprocess by tests/models/test_dlib_parity.py,
tests/golden/dlib/make_goldens.py and bench/bench_verify.py; exchanges arrays through .npz files.

  python bench/ref_dlib.py describe IN.npz OUT.npz   IN: chips (N,150,150,3) uint8 -> OUT: descriptors (N,128)
  python bench/ref_dlib.py photos OUT.npz PHOTO...     face_recognition's own pipeline on each photo (and its
        mirror image): HOG detector (1 upsample), 5-point landmarks, dlib's 150x150 chip (padding 0.25),
        descriptor; OUT holds chips, descriptors, boxes, 5-point landmarks, photo index, mirrored flag
        and dlib's image->chip affine transform.
  python bench/ref_dlib.py serve
        reads one JSON [photo_a, photo_b] per stdin line, answers one JSON line {"seconds", "same",
        "distance"}: face_recognition's end-to-end comparison (load both, locate, encode, compare with
        tolerance 0.6), timed inside this process. Lets bench/bench_verify.py interleave the two sides.
"""

from __future__ import annotations

import json
import math
import sys
import time

import dlib
import face_recognition
import face_recognition_models
import numpy as np

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # face_recognition/dlib defaults (face_recognition_model_v1)


def _encoder() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def image_to_chip(details: dlib.chip_details) -> np.ndarray:
    """(2, 3) affine taking image pixels into the chip dlib cuts for `details`.

    dlib's extraction maps the rect's corners, rotated by `angle` about its centre, to the chip's corners
    (0, 0), (cols - 1, 0), (cols - 1, rows - 1). Checked by warping: reproduces dlib's chip up to its
    anti-aliasing blur (mean |diff| about 1 grey level after a 1-pixel blur).
    """
    rect = details.rect
    left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    ca, sa = math.cos(details.angle), math.sin(details.angle)

    def rotate(x: float, y: float) -> list[float]:
        return [cx + ca * (x - cx) - sa * (y - cy), cy + sa * (x - cx) + ca * (y - cy)]

    src = np.array([rotate(left, top), rotate(right, top), rotate(right, bottom)], dtype=np.float64)
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float64)
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def describe(src: str, dst: str) -> None:
    chips = np.load(src)["chips"]
    encoder = _encoder()
    out = np.array(
        [np.array(encoder.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips], dtype=np.float64
    ).reshape(len(chips), 128)
    np.savez(dst, descriptors=out)


def photos(dst: str, paths: list[str]) -> None:
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    encoder = _encoder()
    chips, descs, boxes, points, photo_index, mirrored, transforms = [], [], [], [], [], [], []
    for index, path in enumerate(paths):
        image = face_recognition.load_image_file(path)
        for flip in (False, True):
            img = np.ascontiguousarray(image[:, ::-1]) if flip else image
            for top, right, bottom, left in face_recognition.face_locations(img):  # HOG, 1 upsample
                shape = predictor(img, dlib.rectangle(left, top, right, bottom))
                chip = dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
                transforms.append(image_to_chip(dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)))
                chips.append(chip)
                # Same call face_recognition.face_encodings makes (num_jitters=1 there = no jitter).
                descs.append(np.array(encoder.compute_face_descriptor(img, shape, 1)))
                boxes.append([left, top, right, bottom])
                points.append([[p.x, p.y] for p in shape.parts()])
                photo_index.append(index)
                mirrored.append(flip)
    np.savez(
        dst,
        chips=np.array(chips, dtype=np.uint8),
        descriptors=np.array(descs, dtype=np.float64),
        boxes=np.array(boxes, dtype=np.float64),
        dlib_landmarks=np.array(points, dtype=np.float64),
        photo_index=np.array(photo_index),
        mirrored=np.array(mirrored),
        image_to_chip=np.array(transforms, dtype=np.float64),
    )


def compare_pair(path_a: str, path_b: str) -> tuple[bool, float]:
    """face_recognition's documented recipe: load, face_locations (HOG), face_encodings, face_distance."""
    encodings = []
    for path in (path_a, path_b):
        image = face_recognition.load_image_file(path)
        encodings.append(face_recognition.face_encodings(image, face_recognition.face_locations(image)))
    if not encodings[0] or not encodings[1]:
        return False, float("inf")
    best = min(float(face_recognition.face_distance(encodings[1], e).min()) for e in encodings[0])
    return best <= 0.6, best


def serve() -> None:
    face_recognition.face_encodings(np.zeros((200, 200, 3), dtype=np.uint8))  # load the models first
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path_a, path_b = json.loads(line)
        start = time.perf_counter()
        same, distance = compare_pair(path_a, path_b)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "same": same, "distance": distance}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "describe":
        describe(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "photos":
        photos(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)
