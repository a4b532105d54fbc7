"""Make tests/golden/dlib/: dlib's own descriptors and chips, MTCNN landmarks, and the alignment measurement.

Needs the two reference venvs (never the service's):
  bash bench/make_ref_dlib_venv.sh       -> .cache/ref-dlib-venv   (dlib-bin + face_recognition 1.3.0)
  .cache/ref-mtcnn-venv                   (facenet-pytorch 2.6.0 on torch 2.14.1, from the MTCNN work)
and models/dlib_face_resnet.onnx (python -m export.convert_dlib) and models/mtcnn_*.onnx. Rerun from the repo root:
  PYTHONPATH=. .venv/bin/python tests/golden/dlib/make_goldens.py

What it does, on every test photo and its mirror image (obama, obama2, obama3, biden, astronaut):
1. face_recognition's end-to-end pipeline (bench/ref_dlib.py: HOG detector, dlib 5-point landmarks,
   150x150 chip with padding 0.25, descriptor) -> reference descriptors, dlib's chips and dlib's
   image->chip transform per face;
   (each dlib face is one face; a dlib false positive without an MTCNN face is left out)
2. facenet-pytorch MTCNN (bench/ref_mtcnn_landmarks.py) -> five landmarks per face, matched to dlib's
   faces by box overlap; a face whose box crosses the image border is then detected again in the padded
   image (app.pipelines.recognition.redetect_border_face, with our MTCNN ONNX models) as the service does:
   those are the landmarks our pipeline aligns ("aligned_landmarks");
3. the template: MTCNN's points mapped through dlib's image->chip transform, averaged over faces;
   measured leave-one-photo-out (the template from the other photos), and for the constant in
   app/pipelines/align.py (WEIGHTS.md's 30-face template);
4. our descriptor (align_face + the ONNX model) against face_recognition's on every face, and the
   same/different decision on every pair of faces.
Writes faces.json (inputs and reference outputs), chips_dlib.npz (dlib's chips, for the chip parity
test) and measurement.json (the numbers quoted in README.md).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from app.pipelines.align import (
    CHIP_SIZE,
    DLIB_CHIP_TEMPLATE,
    LANDMARK_WEIGHTS,
    align_face,
    similarity_transform,
)
from app.pipelines.mtcnn import DetectionParams, Face, MtcnnDetector
from app.pipelines.recognition import border_overflow, redetect_border_face
from app.pipelines.verify import DEFAULT_THRESHOLD, DLIB_L2_THRESHOLD, VERIFY_MIN_FACE_SIZE, l2_normalise
from app.runtime import load_model, read_manifest
from export.fetch import FACE_RECOGNITION, REPO_ROOT, extract_checked, skimage_photo_png

log = logging.getLogger("make_goldens")
HERE = Path(__file__).resolve().parent
DLIB_PY = REPO_ROOT / ".cache" / "ref-dlib-venv" / "bin" / "python"
MTCNN_PY = REPO_ROOT / ".cache" / "ref-mtcnn-venv" / "bin" / "python"
MODEL = REPO_ROOT / "models" / "dlib_face_resnet.onnx"
# Every distinct photo with a face that dlib finds among those the registry packages ship: the
# face_recognition 1.3.0 sdist's test images and scikit-image's astronaut. Left out: 32bit.png (obama2.jpg
# again, as RGBA: same face, same box), obama_partial_face2.jpg and skimage's camera (dlib finds no face).
# obama_partial_face.jpg is a face cut by the image's left border: kept, as the known hard case.
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg", "astronaut"]
IDENTITY = {
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "biden.jpg": "biden",
    "obama_partial_face.jpg": "obama",
    "astronaut": "astronaut",
}
PARTIAL = {"obama_partial_face.jpg"}  # faces cut by the image border, summarised separately
MIN_IOU = 0.3  # an MTCNN box and a dlib HOG box of the same face overlap far more than this
# Other fills for the border re-detection, measured for comparison only (the service pads with zeros).
BORDER_FILL_VARIANTS = {
    "edge_replicate": cv2.BORDER_REPLICATE,
    "mirror": cv2.BORDER_REFLECT_101,
    "mean_colour": -1,  # constant: the photo's mean colour
}


def photo_bytes(name: str) -> bytes:
    """The encoded photo: a face_recognition test image (file name) or a scikit-image sample (no suffix)."""
    if "." not in name:
        return skimage_photo_png(name)
    return extract_checked(FACE_RECOGNITION, f"tests/test_images/{name}", None).read_bytes()


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB, decoded as face_recognition decodes (PIL, convert RGB)."""
    return np.asarray(Image.open(io.BytesIO(photo_bytes(name))).convert("RGB"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def run_references(workdir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    paths = []
    for name in PHOTOS:
        path = workdir / (name if "." in name else name + ".png")
        path.write_bytes(photo_bytes(name))
        paths.append(str(path))
    subprocess.run(
        [str(DLIB_PY), str(REPO_ROOT / "bench" / "ref_dlib.py"), "photos", str(workdir / "dlib.npz"), *paths],
        check=True,
    )
    subprocess.run(
        [
            str(MTCNN_PY),
            str(REPO_ROOT / "bench" / "ref_mtcnn_landmarks.py"),
            str(workdir / "mtcnn.npz"),
            *paths,
        ],
        check=True,
    )
    return dict(np.load(workdir / "dlib.npz")), dict(np.load(workdir / "mtcnn.npz"))


def match_faces(dlib_ref: dict[str, np.ndarray], mtcnn: dict[str, np.ndarray]) -> list[dict]:
    faces = []
    for k in range(len(dlib_ref["descriptors"])):
        same_image = [
            j
            for j in range(len(mtcnn["probs"]))
            if mtcnn["photo_index"][j] == dlib_ref["photo_index"][k]
            and mtcnn["mirrored"][j] == dlib_ref["mirrored"][k]
        ]
        scored = sorted(((iou(dlib_ref["boxes"][k], mtcnn["boxes"][j]), j) for j in same_image), reverse=True)
        if not scored or scored[0][0] < MIN_IOU:
            log.warning(
                "dlib face %d on %s has no MTCNN face; left out", k, PHOTOS[dlib_ref["photo_index"][k]]
            )
            continue
        j = scored[0][1]
        photo = PHOTOS[int(dlib_ref["photo_index"][k])]
        faces.append(
            {
                "photo": photo,
                "identity": IDENTITY[photo],
                "mirrored": bool(dlib_ref["mirrored"][k]),
                "mtcnn_landmarks": mtcnn["landmarks"][j].tolist(),
                "mtcnn_box": mtcnn["boxes"][j].tolist(),
                "mtcnn_prob": float(mtcnn["probs"][j]),
                "dlib_box": dlib_ref["boxes"][k].tolist(),
                "dlib_landmarks": dlib_ref["dlib_landmarks"][k].tolist(),
                "dlib_image_to_chip": dlib_ref["image_to_chip"][k].tolist(),
                "dlib_descriptor": dlib_ref["descriptors"][k].tolist(),
                "_ref_index": k,
            }
        )
    return faces


def mtcnn_detector() -> MtcnnDetector:
    entries = {e["id"]: e for e in read_manifest(REPO_ROOT / "models")}
    nets = [load_model(entries[f"mtcnn-{n}"], REPO_ROOT / "models", ["CPUExecutionProvider"], threads=2)
            for n in ("pnet", "rnet", "onet")]
    return MtcnnDetector(*nets)


def reference_face(face: dict) -> Face:
    return Face(box=np.asarray(face["mtcnn_box"], np.float32), score=face["mtcnn_prob"],
                landmarks=np.asarray(face["mtcnn_landmarks"], np.float32))


def redetect_with_fill(detector: MtcnnDetector, image: np.ndarray, face: dict, fill: int) -> np.ndarray:
    """Landmarks of the border re-detection with another padding (a comparison; the service pads zeros)."""
    pad = border_overflow(np.asarray(face["mtcnn_box"]), *image.shape[:2])
    if fill == -1:
        mean = [int(v) for v in image.reshape(-1, 3).mean(axis=0)]
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
    else:
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, fill)
    found = detector.detect(padded, DetectionParams())
    box = np.asarray(face["mtcnn_box"])
    best = max(found, key=lambda c: iou(c.box - pad, box))
    return np.asarray(best.landmarks, np.float64) - pad


def chip_points(face: dict) -> np.ndarray:
    """MTCNN's five points in dlib's chip coordinates for this face."""
    m = np.asarray(face["dlib_image_to_chip"])
    pts = np.asarray(face["mtcnn_landmarks"])
    return pts @ m[:, :2].T + m[:, 2]


def embed_with(session: ort.InferenceSession, chips: np.ndarray) -> np.ndarray:
    batch = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    return np.asarray(session.run(None, {session.get_inputs()[0].name: batch})[0])


def face_image(images: dict[str, np.ndarray], face: dict) -> np.ndarray:
    image = images[face["photo"]]
    return np.ascontiguousarray(image[:, ::-1]) if face["mirrored"] else image


def cosines(
    session: ort.InferenceSession,
    images: dict[str, np.ndarray],
    faces: list[dict],
    template: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Cosine between dlib's descriptor and ours when MTCNN's points are fitted to `template`."""
    chips = []
    for face in faces:
        matrix = similarity_transform(np.asarray(face["aligned_landmarks"]), template, weights)
        chips.append(
            cv2.warpAffine(face_image(images, face), matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
        )
    ours = l2_normalise(embed_with(session, np.array(chips)))
    ref = l2_normalise(np.array([f["dlib_descriptor"] for f in faces]))
    return np.sum(ours.astype(np.float64) * ref, axis=1)


def summarise(values: np.ndarray) -> dict[str, float]:
    return {
        "worst": round(float(values.min()), 4),
        "median": round(float(np.median(values)), 4),
        "mean": round(float(values.mean()), 4),
    }


def embed_aligned(
    session: ort.InferenceSession, images: dict[str, np.ndarray], faces: list[dict], key: str
) -> np.ndarray:
    """Our pipeline exactly as the service runs it (align_face + ONNX) on the landmarks under `key`."""
    chips = [align_face(face_image(images, face), np.asarray(face[key])) for face in faces]
    return l2_normalise(embed_with(session, np.array(chips)))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        dlib_ref, mtcnn = run_references(Path(tmp))
    faces = match_faces(dlib_ref, mtcnn)
    images = {name: load_photo(name) for name in PHOTOS}
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    detector = mtcnn_detector()
    # The border rule of the service (facenet-pytorch's defaults, as the reference landmarks), and the
    # same rule at the verify endpoint's min_face_size and with other fills, for comparison.
    variants: dict[str, list[list[list[float]]]] = {f"min_face_size_{VERIFY_MIN_FACE_SIZE}": []}
    variants.update({name: [] for name in BORDER_FILL_VARIANTS})
    for face in faces:
        image = face_image(images, face)
        first = reference_face(face)
        found = redetect_border_face(detector, image, first, DetectionParams())
        face["border_redetected"] = found is not first
        face["aligned_landmarks"] = np.asarray(found.landmarks, np.float64).tolist()
        face["aligned_box"] = np.asarray(found.box, np.float64).tolist()
        if not face["border_redetected"]:
            continue
        verify_params = DetectionParams(min_face_size=VERIFY_MIN_FACE_SIZE)
        variants[f"min_face_size_{VERIFY_MIN_FACE_SIZE}"].append(np.asarray(
            redetect_border_face(detector, image, reference_face(face), verify_params).landmarks,
            np.float64).tolist())
        for name, fill in BORDER_FILL_VARIANTS.items():
            variants[name].append(redetect_with_fill(detector, image, face, fill).tolist())
    all_points = np.array([chip_points(f) for f in faces])
    whole = np.array([f["photo"] not in PARTIAL for f in faces])

    # The template is derived from whole faces only. Leave-one-photo-out: the template from the other
    # photos' whole faces, evaluated on this photo's faces (partial faces: the all-whole-faces template).
    derived = all_points[whole].mean(axis=0)
    lopo_weighted = np.zeros(len(faces))
    lopo_unweighted5 = np.zeros(len(faces))
    for photo in PHOTOS:
        held = [i for i, f in enumerate(faces) if f["photo"] == photo]
        if not held:
            continue
        template = all_points[[i for i, f in enumerate(faces) if f["photo"] != photo and whole[i]]].mean(
            axis=0
        )
        held_faces = [faces[i] for i in held]
        lopo_weighted[held] = cosines(session, images, held_faces, template, LANDMARK_WEIGHTS)
        lopo_unweighted5[held] = cosines(session, images, held_faces, template, np.ones(5))
    shipped = cosines(session, images, faces, DLIB_CHIP_TEMPLATE, LANDMARK_WEIGHTS)
    shipped_unweighted5 = cosines(session, images, faces, DLIB_CHIP_TEMPLATE, np.ones(5))

    # Our pipeline exactly as the service runs it (align_face + ONNX) for the per-face golden and the pairs.
    ours_unit = embed_aligned(session, images, faces, "aligned_landmarks")
    ref_raw = np.array([f["dlib_descriptor"] for f in faces])
    ref_unit = l2_normalise(ref_raw)
    unit_without = embed_aligned(session, images, faces, "mtcnn_landmarks").astype(np.float64)
    without_rule = np.sum(unit_without * ref_unit, axis=1)
    border = [f for f in faces if f["border_redetected"]]
    border_variants = {}
    for name, landmarks in variants.items():
        for face, points in zip(border, landmarks, strict=True):
            face["_variant"] = points
        border_variants[name] = [
            round(float(c), 4)
            for c in np.sum(embed_aligned(session, images, border, "_variant") * l2_normalise(
                np.array([f["dlib_descriptor"] for f in border])), axis=1)
        ]
    for face in border:
        face.pop("_variant")
    pairs, agree = [], 0
    for i, j in itertools.combinations(range(len(faces)), 2):
        dlib_l2 = float(np.linalg.norm(ref_raw[i] - ref_raw[j]))
        sim = float(ours_unit[i].astype(np.float64) @ ours_unit[j])
        same_dlib, same_ours = dlib_l2 <= DLIB_L2_THRESHOLD, sim >= DEFAULT_THRESHOLD
        agree += same_dlib == same_ours
        pairs.append(
            {
                "a": i,
                "b": j,
                "same_person": faces[i]["identity"] == faces[j]["identity"],
                "dlib_l2_raw": round(dlib_l2, 5),
                "ours_cosine": round(sim, 5),
                "dlib_same": same_dlib,
                "ours_same": same_ours,
            }
        )
    norms = np.linalg.norm(ref_raw, axis=1)
    whole_pairs = [p for p in pairs if whole[p["a"]] and whole[p["b"]]]
    measurement = {
        "faces": len(faces),
        "photos": PHOTOS,
        "cosine_ours_vs_face_recognition": summarise(shipped),
        "cosine_ours_vs_face_recognition_whole_faces": summarise(shipped[whole]),
        "cosine_ours_vs_face_recognition_partial_faces": [round(float(c), 4) for c in shipped[~whole]],
        "cosine_partial_faces_without_border_redetect": [round(float(c), 4) for c in without_rule[~whole]],
        "cosine_whole_faces_without_border_redetect": summarise(without_rule[whole]),
        "border_redetected_faces": [f"{f['photo']}{' (mirrored)' if f['mirrored'] else ''}" for f in border],
        "cosine_border_redetect_variants": border_variants,
        "cosine_shipped_template_unweighted_5pt_whole_faces": summarise(shipped_unweighted5[whole]),
        "cosine_lopo_derived_template_weighted_whole_faces": summarise(lopo_weighted[whole]),
        "cosine_lopo_derived_template_unweighted_5pt_whole_faces": summarise(lopo_unweighted5[whole]),
        "cosine_lopo_derived_template_weighted_partial_faces": [
            round(float(c), 4) for c in lopo_weighted[~whole]
        ],
        "derived_template": np.round(derived, 4).tolist(),
        "shipped_template": DLIB_CHIP_TEMPLATE.tolist(),
        "derived_minus_shipped_px": np.round(derived - DLIB_CHIP_TEMPLATE, 3).tolist(),
        "dlib_descriptor_norm": {
            "median": round(float(np.median(norms)), 4),
            "min": round(float(norms.min()), 4),
            "max": round(float(norms.max()), 4),
        },
        "pairs": len(pairs),
        "decisions_agree": agree,
        "decisions_agree_without_border_redetect": sum(
            bool(np.linalg.norm(ref_raw[i] - ref_raw[j]) <= DLIB_L2_THRESHOLD)
            == (float(unit_without[i] @ unit_without[j]) >= DEFAULT_THRESHOLD)
            for i, j in itertools.combinations(range(len(faces)), 2)
        ),
        "pairs_whole_faces": len(whole_pairs),
        "decisions_agree_whole_faces": sum(p["dlib_same"] == p["ours_same"] for p in whole_pairs),
        "closest_to_threshold_whole_faces": {
            "dlib_l2_raw": min(
                (abs(p["dlib_l2_raw"] - DLIB_L2_THRESHOLD), p["dlib_l2_raw"]) for p in whole_pairs
            )[1],
            "ours_cosine": min(
                (abs(p["ours_cosine"] - DEFAULT_THRESHOLD), p["ours_cosine"]) for p in whole_pairs
            )[1],
        },
        "threshold_from_this_median_norm": round(
            1 - (DLIB_L2_THRESHOLD / float(np.median(norms))) ** 2 / 2, 4
        ),
        "per_face_cosine": [round(float(c), 5) for c in shipped],
    }
    for face, cos in zip(faces, shipped, strict=True):
        face["cosine_ours_vs_dlib"] = round(float(cos), 5)
        face["partial"] = face["photo"] in PARTIAL
        face.pop("_ref_index")
    (HERE / "faces.json").write_text(json.dumps({"faces": faces, "pairs": pairs}, indent=1) + "\n")
    (HERE / "measurement.json").write_text(json.dumps(measurement, indent=1) + "\n")
    unmirrored = [k for k in range(len(dlib_ref["descriptors"])) if not dlib_ref["mirrored"][k]]
    np.savez_compressed(
        HERE / "chips_dlib.npz",
        chips=dlib_ref["chips"][unmirrored],
        descriptors=dlib_ref["descriptors"][unmirrored],
    )
    log.info(
        "%s", json.dumps({k: v for k, v in measurement.items() if k not in ("per_face_cosine",)}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
