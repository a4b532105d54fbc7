"""Convert facenet-pytorch 2.6.0's MTCNN weights (P-Net, R-Net, O-Net) to ONNX and register them.

    python -m export.convert_mtcnn [--models-dir models]

Steps: fetch the wheel by exact version; read the three .pt state dicts with sha256 checks
(shared/WEIGHTS.md); load them into export/nets/mtcnn.py; rewrite each net into the equivalent form of
export/nets/mtcnn_fast.py (PReLU and softmax expressed through operations onnxruntime fuses and runs in its
blocked layout); export that with the public torch.onnx.export (P-Net with dynamic height and width, R-Net
and O-Net with a dynamic batch); compare onnxruntime against the original nets in PyTorch on several shapes;
only then write models/mtcnn_*.onnx and their manifest entries.
Running it twice writes byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from export.fetch import FACENET_PYTORCH, read_checked
from export.manifest import MEASURED_KEY, MODELS_DIR, parity_record, source_entry, write_model
from export.nets.mtcnn import ONet, PNet, RNet
from export.nets.mtcnn_fast import fast_net
from export.onnx_export import check_module_parity, export_module

log = logging.getLogger(__name__)

VERSION = "2"  # bump when the graphs or their I/O contract change
TASK = "face-detection"
PARITY_ATOL = 1e-4  # float32 conv stacks; observed differences are ~1e-6


@dataclass(frozen=True)
class NetSpec:
    model_id: str
    file_name: str
    member: str
    sha256: str  # shared/WEIGHTS.md
    factory: type[torch.nn.Module]
    output_names: tuple[str, ...]
    description: str


NETS = (
    NetSpec("mtcnn-pnet", "mtcnn_pnet.onnx", "facenet_pytorch/data/pnet.pt",
            "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", PNet,
            ("box_offsets", "face_prob"),
            "MTCNN proposal net (Zhang et al. 2016): fully convolutional, any HxW >= 12; image (1,3,H,W) RGB "
            "normalised (x-127.5)/128 -> box_offsets (1,4,H',W'), face_prob (1,H',W'), stride 2, cell 12."),
    NetSpec("mtcnn-rnet", "mtcnn_rnet.onnx", "facenet_pytorch/data/rnet.pt",
            "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", RNet,
            ("box_offsets", "face_prob"),
            "MTCNN refinement net: image (N,3,24,24) RGB normalised (x-127.5)/128 -> box_offsets (N,4), "
            "face_prob (N,)."),
    NetSpec("mtcnn-onet", "mtcnn_onet.onnx", "facenet_pytorch/data/onet.pt",
            "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", ONet,
            ("box_offsets", "landmarks", "face_prob"),
            "MTCNN output net: image (N,3,48,48) RGB normalised (x-127.5)/128 -> box_offsets (N,4), "
            "landmarks (N,10) five x then five y as crop fractions, face_prob (N,)."),
)


def load_net(spec: NetSpec) -> torch.nn.Module:
    """The torch module with facenet-pytorch's weights (sha256-checked), in eval mode."""
    data = read_checked(FACENET_PYTORCH, spec.member, spec.sha256)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    module = spec.factory()
    module.load_state_dict(state, strict=True)
    return module.eval()


def _example_shapes(spec: NetSpec) -> list[tuple[int, ...]]:
    """Input shapes for the parity check; the first one is also the export example."""
    if spec.factory is PNet:
        return [(1, 3, 120, 160), (1, 3, 12, 12), (1, 3, 37, 53), (1, 3, 481, 641)]
    size = 24 if spec.factory is RNet else 48
    return [(5, 3, size, size), (1, 3, size, size), (64, 3, size, size)]


def _dynamic_shapes(spec: NetSpec) -> dict[str, dict[int, Any]]:
    if spec.factory is PNet:
        # 12 is P-Net's receptive field: a smaller image yields an empty map.
        return {"image": {2: torch.export.Dim("height", min=12, max=8192),
                          3: torch.export.Dim("width", min=12, max=8192)}}
    return {"image": {0: torch.export.Dim("batch", min=1, max=65536)}}


def export_net(spec: NetSpec) -> tuple[onnx.ModelProto, float]:
    module = load_net(spec)
    shapes = _example_shapes(spec)
    example = torch.zeros(shapes[0])
    model = export_module(fast_net(module), (example,), input_names=["image"], output_names=spec.output_names,
                          dynamic_shapes=_dynamic_shapes(spec))
    generator = np.random.default_rng(20160301)  # fixed seed: reproducible parity inputs
    worst = 0.0
    for shape in shapes:
        # Normalised pixels live in [-1, 1]; random values exercise every weight.
        image = generator.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        # Checked against the original net, not the rewritten one: the rewrite is part of what is checked.
        worst = max(worst, check_module_parity(f"{spec.model_id} {shape}", module, model, {"image": image},
                                               atol=PARITY_ATOL))
    return model, worst


def _extra(spec: NetSpec, worst: float) -> dict[str, Any]:
    extra: dict[str, Any] = {MEASURED_KEY: {"onnx_vs_torch": parity_record(worst, PARITY_ATOL)}}
    if spec.factory is PNet:  # its input has no fixed size for ModelSession.warm_up to read
        extra["warmup_shapes"] = {"image": list(_example_shapes(spec)[0])}
    return extra


def convert(models_dir: Path) -> list[dict[str, Any]]:
    """Export, check and write the three nets; returns their manifest entries."""
    entries = []
    for spec in NETS:
        model, worst = export_net(spec)
        entries.append(write_model(
            model,
            model_id=spec.model_id,
            task=TASK,
            file_name=spec.file_name,
            version=VERSION,
            licence=FACENET_PYTORCH.licence,
            sources=[source_entry(FACENET_PYTORCH, spec.member, spec.sha256)],
            description=spec.description,
            extra=_extra(spec, worst),
            models_dir=models_dir,
        ))
        log.info("wrote %s (%s)", spec.file_name, entries[-1]["sha256"][:12])
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export facenet-pytorch 2.6.0's MTCNN nets to ONNX.")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert(args.models_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
