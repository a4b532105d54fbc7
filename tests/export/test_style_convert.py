"""export/convert_style.py: the rebuilt 26-style module against the shipped ONNX, export determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.convert_style import (  # noqa: E402
    MULTI26_MEMBER,
    MULTI26_SHA256,
    _shrink,
    multistyle_from_onnx,
    one_hot,
    parity_photos,
    shipped_onnx,
    to_nchw,
)
from export.nets.multistyle import (  # noqa: E402
    ExportMultiStyleNet,
    pixel_shuffle_weight,
    stride2_phase_weight,
    subpixel_weight,
)
from export.onnx_export import run_onnx  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rebuilt_module_matches_shipped_onnx_on_real_photos() -> None:
    shipped = shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256)
    net = multistyle_from_onnx(shipped)
    data = shipped.SerializeToString()
    photos = parity_photos()
    worst = 0.0
    for name in ("astronaut", "obama"):
        x = to_nchw(_shrink(photos[name], 192))
        for weights in (one_hot(1), one_hot(17), 0.25 * one_hot(5) + 0.75 * one_hot(22)):
            with torch.no_grad():
                ours = net(torch.from_numpy(x), torch.from_numpy(weights[None])).numpy()
            expected = run_onnx(data, {"image": x, "style_weights": weights})[0]
            worst = max(worst, float(np.abs(ours - expected).max()))
    assert worst < 5e-4


def test_stride2_phase_conv_equals_the_plain_conv() -> None:
    g = torch.Generator().manual_seed(1)
    weight, x = torch.randn(3, 4, 9, 9, generator=g), torch.randn(2, 4, 20, 28, generator=g)
    plain = torch.nn.functional.conv2d(x, weight)
    regrouped = torch.nn.functional.pixel_shuffle(
        torch.nn.functional.conv2d(x, stride2_phase_weight(weight), stride=2), 2)
    torch.testing.assert_close(regrouped, plain, atol=1e-4, rtol=1e-5)


def test_pixel_shuffle_as_transposed_conv_is_exact() -> None:
    x = torch.randn(2, 12, 5, 7, generator=torch.Generator().manual_seed(4))
    shuffled = torch.nn.functional.conv_transpose2d(x, pixel_shuffle_weight(3), stride=2)
    assert torch.equal(shuffled, torch.nn.functional.pixel_shuffle(x, 2))


def test_subpixel_conv_equals_upsample_reflect_pad_conv() -> None:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    weight, x = torch.randn(4, 8, 3, 3, generator=g), torch.randn(2, 8, 7, 5, generator=g)
    plain = F.conv2d(F.pad(F.interpolate(x, scale_factor=2.0, mode="nearest"), (1, 1, 1, 1), mode="reflect"), weight)
    regrouped = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), subpixel_weight(weight)), 2)
    torch.testing.assert_close(regrouped, plain, atol=1e-5, rtol=1e-5)


def test_export_arrangement_computes_the_rebuilt_network() -> None:
    net = multistyle_from_onnx(shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256))
    arranged = ExportMultiStyleNet(net).eval()
    g = torch.Generator().manual_seed(3)
    for shape in [(1, 3, 68, 92), (3, 3, 16, 40)]:
        x = torch.rand(*shape, generator=g)
        style = torch.softmax(3 * torch.randn(shape[0], 26, generator=g), dim=1)
        with torch.no_grad():
            torch.testing.assert_close(arranged(x, style), net(x, style), atol=2e-5, rtol=0)


def test_shipped_file_is_refused_with_a_wrong_sha256() -> None:
    from export.fetch import FetchError

    with pytest.raises(FetchError):
        shipped_onnx(MULTI26_MEMBER, "0" * 64)


_EXPORT_SNIPPET = """
import hashlib
from export.convert_style import MULTI26_MEMBER, MULTI26_SHA256, export_multistyle, multistyle_from_onnx, shipped_onnx
from export.nets.multistyle import ExportMultiStyleNet
model = export_multistyle(ExportMultiStyleNet(multistyle_from_onnx(shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256))))
print("SHA", hashlib.sha256(model.SerializeToString()).hexdigest())
"""


@pytest.mark.slow
def test_export_is_byte_identical_across_processes() -> None:
    digests = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-c", _EXPORT_SNIPPET], capture_output=True, text=True, env=env,
                                cwd=REPO_ROOT, check=True, timeout=300)
        digests.append(next(line for line in result.stdout.splitlines() if line.startswith("SHA")))
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_served_file_equals_a_fresh_export() -> None:
    """models/style_multi26.onnx is what the converter writes today (metadata added by write_model)."""
    import onnx

    from export.convert_style import export_multistyle
    from export.manifest import set_metadata

    served = REPO_ROOT / "models" / "style_multi26.onnx"
    if not served.exists():
        pytest.skip("models not generated")
    model = export_multistyle(ExportMultiStyleNet(multistyle_from_onnx(shipped_onnx(MULTI26_MEMBER, MULTI26_SHA256))))
    on_disk = onnx.load(str(served))
    set_metadata(model, {p.key: p.value for p in on_disk.metadata_props})
    for proto in (model, on_disk):  # per-node debug metadata (stack traces) depends on the checkout path
        for node in proto.graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    assert model.SerializeToString() == on_disk.SerializeToString()


@pytest.mark.slow
def test_int8_style_network_fails_its_gate_and_is_not_written(tmp_path: Path) -> None:
    """convert_style --int8: per-channel QDQ of the 26-style net stays far below 35 dB on some styles
    (export/convert_style.py INT8_FINDING), so the toolchain raises and writes no int8 file."""
    import json

    import onnx

    from export import convert_style, quantize

    models_dir = REPO_ROOT / "models"
    entry = next(e for e in json.loads((models_dir / "manifest.json").read_text())["models"]
                 if e["id"] == "style-multi26")
    fp32 = onnx.load(str(models_dir / entry["file"]))
    with pytest.raises(quantize.FidelityGateError, match="below 35.0 dB"):
        convert_style.convert_multistyle_int8(tmp_path, fp32, entry)
    assert not list(tmp_path.iterdir())
    assert all(not e["id"].startswith("style-multi26-int8")
               for e in json.loads((models_dir / "manifest.json").read_text())["models"])
