"""MTCNN landmarks from the reference implementation, facenet-pytorch 2.6.0, for the dlib alignment goldens.

Runs INSIDE .cache/ref-mtcnn-venv (torch 2.14.1 + torchvision 0.29.1 + facenet-pytorch; made by the MTCNN
work's reference-venv script), never in the service's venv. Called by tests/golden/dlib/make_goldens.py.

  python bench/ref_mtcnn_landmarks.py OUT.npz PHOTO...
Each photo and its mirror image; facenet-pytorch defaults (min_face_size 20, thresholds 0.6/0.7/0.7,
factor 0.709). OUT: boxes (K, 4) x1 y1 x2 y2, probs (K,), landmarks (K, 5, 2) x y in facenet-pytorch's
order (image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner),
photo_index (K,), mirrored (K,).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image


def main(dst: str, paths: list[str]) -> None:
    torch.set_num_threads(2)
    detector = MTCNN(keep_all=True, device="cpu")
    boxes, probs, points, photo_index, mirrored = [], [], [], [], []
    for index, path in enumerate(paths):
        image = np.asarray(Image.open(path).convert("RGB"))
        for flip in (False, True):
            img = np.ascontiguousarray(image[:, ::-1]) if flip else image
            b, p, lm = detector.detect(Image.fromarray(img), landmarks=True)
            if b is None:
                continue
            for k in range(len(b)):
                boxes.append(b[k])
                probs.append(p[k])
                points.append(lm[k])
                photo_index.append(index)
                mirrored.append(flip)
    np.savez(
        dst,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        probs=np.array(probs, dtype=np.float64),
        landmarks=np.array(points, dtype=np.float64).reshape(-1, 5, 2),
        photo_index=np.array(photo_index),
        mirrored=np.array(mirrored),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
