"""Face recognition: detect (MTCNN) -> align on five landmarks -> embed (dlib ResNet) -> compare.

Composes app.pipelines.mtcnn, .align and .verify; numpy only. Faces and embeddings live only in the
returned objects: nothing here stores or logs them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from app.errors import NoFaceFound
from app.pipelines import Runner
from app.pipelines.align import align_faces
from app.pipelines.mtcnn import DetectionParams, Face, MtcnnDetector
from app.pipelines.verify import DEFAULT_THRESHOLD, EMBEDDING_SIZE, best_match, embed


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

    def embed_faces(self, image_rgb: np.ndarray, params: DetectionParams) -> EmbeddedFaces:
        """Every detected face (max_faces largest when set) with its unit embedding; [] when none."""
        start = time.perf_counter()
        faces = self.detector.detect(image_rgb, params)
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
