"""Drawing detections onto a copy of the image (for `Accept: image/png` answers and the demo page)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

BOX_COLOUR = (46, 204, 113)  # RGB green
LANDMARK_COLOURS = ((52, 152, 219), (52, 152, 219), (241, 196, 15), (231, 76, 60), (231, 76, 60))  # eyes, nose, mouth


def draw_detections(
    image_rgb: np.ndarray, boxes: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]
) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> a copy with each box (x1, y1, x2, y2) and its five landmarks (5, 2) drawn."""
    canvas = np.ascontiguousarray(image_rgb.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for box, points in zip(boxes, landmarks, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, thickness, lineType=cv2.LINE_AA)
        for (x, y), colour in zip(np.asarray(points).reshape(-1, 2), LANDMARK_COLOURS, strict=False):
            cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), thickness + 1, colour, -1,
                       lineType=cv2.LINE_AA)
    return canvas
