"""Face recognition: detect (MTCNN) -> align on five landmarks -> embed (dlib ResNet) -> compare.

Composes app.pipelines.mtcnn, .align and .verify; numpy and OpenCV only. Faces and embeddings live only in
the returned objects: nothing here stores or logs them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.errors import NoFaceFound
from app.pipelines import Runner
from app.pipelines.align import align_faces
from app.pipelines.mtcnn import DetectionParams, Face, MtcnnDetector, detection_peak_bytes
from app.pipelines.verify import DEFAULT_THRESHOLD, EMBEDDING_SIZE, best_match, embed

# Faces cut by the image border. MTCNN's P-Net only slides windows over the image, so a face that runs
# off the edge gets its candidate boxes, and then O-Net's box and five landmarks, from windows that do
# not contain it: the landmarks come out shifted and scaled (obama_partial_face.jpg: MTCNN put its
# image-right eye between the two visible eyes, and our descriptor fell to cosine 0.92 of dlib's). When
# a detected box crosses the border we detect again in the image padded on every side by that overflow,
# so the cascade can propose windows centred on the face, and keep the face that overlaps the first box
# most. Measured in tests/golden/dlib/README.md (zero, mean-colour, edge-replicate and mirror padding,
# padding 1x-2x the overflow, min_face_size 20 or 40 all reach >= 0.98 there; zero is what we ship).
BORDER_PAD_VALUE = (0, 0, 0)  # the fill MTCNN's own crops get outside the image (facenet-pytorch detect_face)
BORDER_REDETECT_MIN_IOU = 0.3  # the re-detected face must be the same face: boxes of one face overlap far more


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) x1 y1 x2 y2 boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(float(width), 0.0) * max(float(height), 0.0)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def border_overflow(box: np.ndarray, height: int, width: int) -> int:
    """Pixels (rounded up) by which an x1 y1 x2 y2 box extends past the image on its worst side; 0 inside."""
    overflow = max(-float(box[0]), -float(box[1]), float(box[2]) - width, float(box[3]) - height, 0.0)
    return int(np.ceil(overflow))


def redetect_border_faces(detector: MtcnnDetector, image_rgb: np.ndarray, faces: Sequence[Face],
                          params: DetectionParams) -> list[Face]:
    """`faces` with each one whose box crosses the border replaced by its re-detection, highest score first.

    One detection, whatever the number of border faces: the image zero-padded on every side by the largest
    overflow. Each border face is matched one to one with the re-detected faces, the best overlaps first, and
    keeps its first detection when no unmatched face overlaps it by BORDER_REDETECT_MIN_IOU. Faces inside the
    image are returned as they are, and without border faces nothing is detected again.
    """
    height, width = image_rgb.shape[:2]
    overflows = [border_overflow(face.box, height, width) for face in faces]
    border = [index for index, overflow in enumerate(overflows) if overflow > 0]
    if not border:
        return list(faces)
    pad = max(overflows)
    padded = cv2.copyMakeBorder(image_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=BORDER_PAD_VALUE)
    every_face = DetectionParams(min_face_size=params.min_face_size, thresholds=params.thresholds,
                                 scale_factor=params.scale_factor, max_faces=None)
    candidates = [Face(box=c.box - np.float32(pad), score=c.score, landmarks=c.landmarks - np.float32(pad))
                  for c in detector.detect(padded, every_face)]
    pairs = sorted(((_iou(candidate.box, faces[index].box), index, choice)
                    for index in border for choice, candidate in enumerate(candidates)),
                   key=lambda pair: (-pair[0], pair[1], pair[2]))
    result = list(faces)
    matched_faces: set[int] = set()
    matched_candidates: set[int] = set()
    for overlap, index, choice in pairs:
        if overlap < BORDER_REDETECT_MIN_IOU:
            break
        if index in matched_faces or choice in matched_candidates:
            continue
        result[index] = candidates[choice]
        matched_faces.add(index)
        matched_candidates.add(choice)
    return sorted(result, key=lambda face: face.score, reverse=True)  # stable: ties keep the detector's order


def redetect_border_face(detector: MtcnnDetector, image_rgb: np.ndarray, face: Face,
                         params: DetectionParams) -> Face:
    """One face through redetect_border_faces: `face` itself when it lies inside or nothing matches it."""
    return redetect_border_faces(detector, image_rgb, [face], params)[0]


@dataclass
class EmbeddedFaces:
    faces: list[Face]  # highest detection score first
    embeddings: np.ndarray  # (N, 128) float32, unit length, row i belongs to faces[i]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Verification:
    similarity: float
    distance: float
    threshold: float
    verified: bool
    face_a: Face
    face_b: Face
    timings_ms: dict[str, float] = field(default_factory=dict)


class FaceRecognizer:
    def __init__(self, detector: MtcnnDetector, embedder: Runner, model_name: str,
                 default_threshold: float = DEFAULT_THRESHOLD) -> None:
        self.detector = detector
        self.embedder = embedder
        self.model_name = model_name
        self.default_threshold = default_threshold
        self.dimensions = EMBEDDING_SIZE

    @staticmethod
    def peak_bytes(sizes: Sequence[tuple[int, int]], params: DetectionParams) -> int:
        """Estimated peak memory of embedding (or verifying) images of these (height, width). One image is
        processed at a time; a border re-detection runs on the image padded by the overflow of the faces cut
        by its border, taken here as at most a quarter of the shorter side on each edge (a face box is square,
        no larger than the image, and mostly inside it, or MTCNN would not have found it)."""
        return max((detection_peak_bytes(h + min(h, w) // 2, w + min(h, w) // 2, params) for h, w in sizes),
                   default=0)

    def embed_faces(self, image_rgb: np.ndarray, params: DetectionParams) -> EmbeddedFaces:
        """Every detected face (max_faces largest when set) with its unit embedding; [] when none."""
        start = time.perf_counter()
        faces = redetect_border_faces(self.detector, image_rgb, self.detector.detect(image_rgb, params), params)
        detected = time.perf_counter()
        if faces:
            chips = align_faces(image_rgb, np.stack([face.landmarks for face in faces]))
            vectors = embed(self.embedder, chips)
        else:
            vectors = np.zeros((0, EMBEDDING_SIZE), np.float32)
        done = time.perf_counter()
        return EmbeddedFaces(faces=faces, embeddings=vectors, timings_ms={
            "detect": round((detected - start) * 1000, 3), "embed": round((done - detected) * 1000, 3)})

    def verify(self, image_a: np.ndarray, image_b: np.ndarray, params: DetectionParams, *,
               mode: str = "largest", threshold: float | None = None) -> Verification:
        """Compare the largest face of each image (mode 'largest') or the most similar pair ('best_match')."""
        threshold = self.default_threshold if threshold is None else threshold
        if mode == "largest":
            params = DetectionParams(min_face_size=params.min_face_size, thresholds=params.thresholds,
                                     scale_factor=params.scale_factor, max_faces=1)
        side_a = self.embed_faces(image_a, params)
        if not side_a.faces:
            raise NoFaceFound("no face found in image_a")
        side_b = self.embed_faces(image_b, params)
        if not side_b.faces:
            raise NoFaceFound("no face found in image_b")
        match = best_match(side_a.embeddings, side_b.embeddings, threshold)
        timings = {f"{stage}_{side}": ms for side, result in (("a", side_a), ("b", side_b))
                   for stage, ms in result.timings_ms.items()}
        return Verification(similarity=match.similarity, distance=match.distance, threshold=threshold,
                            verified=match.same, face_a=side_a.faces[match.index_a],
                            face_b=side_b.faces[match.index_b], timings_ms=timings)
