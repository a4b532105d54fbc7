"""The MTCNN export toolchain: committed ONNX files vs the PyTorch nets with facenet-pytorch's weights,
the pipeline's area resampling vs torch's, and (slow) byte-identical regeneration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from app.pipelines.mtcnn import AreaResampler  # noqa: E402
from export.convert_mtcnn import NETS, PARITY_ATOL, NetSpec, convert, load_net  # noqa: E402
from export.nets.mtcnn import PNet  # noqa: E402
from tests.helpers import MODELS_DIR, OnnxRunner  # noqa: E402

SHAPES = {"mtcnn-pnet": [(1, 3, 12, 12), (1, 3, 97, 131), (1, 3, 300, 200)],
          "mtcnn-rnet": [(1, 3, 24, 24), (33, 3, 24, 24)],
          "mtcnn-onet": [(1, 3, 48, 48), (17, 3, 48, 48)]}


@pytest.mark.parametrize("spec", NETS, ids=[s.model_id for s in NETS])
def test_committed_onnx_matches_pytorch(spec: NetSpec) -> None:
    module = load_net(spec)
    runner = OnnxRunner(MODELS_DIR / spec.file_name)
    assert runner.input_names == ["image"] and runner.output_names == list(spec.output_names)
    rng = np.random.default_rng(7)
    for shape in SHAPES[spec.model_id]:
        image = rng.uniform(-1, 1, size=shape).astype(np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in module(torch.from_numpy(image))]
        for got, ref in zip(runner.run({"image": image}), expected, strict=True):
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=0, atol=PARITY_ATOL)


def test_face_prob_is_softmax_channel_one_of_the_original_layout() -> None:
    """Our nets return softmax[:, 1] where facenet-pytorch returns both channels: recompute it."""
    pnet = load_net(NETS[0])
    assert isinstance(pnet, PNet)
    image = torch.from_numpy(np.random.default_rng(3).uniform(-1, 1, (1, 3, 40, 40)).astype(np.float32))
    with torch.no_grad():
        x = pnet.prelu3(pnet.conv3(pnet.prelu2(pnet.conv2(pnet.pool1(pnet.prelu1(pnet.conv1(image)))))))
        both = torch.softmax(pnet.conv4_1(x), dim=1)
        np.testing.assert_allclose(pnet(image)[1].numpy(), both[:, 1].numpy(), atol=1e-7)


@pytest.mark.parametrize("size", [(289, 385), (12, 17), (641, 1153), (400, 300)])
def test_area_resampling_equals_torch_interpolate_area(size: tuple[int, int]) -> None:
    image = np.random.default_rng(5).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    expected = torch.nn.functional.interpolate(tensor, size=size, mode="area")[0].numpy()
    got = AreaResampler(image).level(*size)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_area_crops_equal_torch_interpolate_area_of_the_crop() -> None:
    image = np.random.default_rng(6).integers(0, 256, size=(120, 90, 3), dtype=np.uint8)
    regions = np.array([[0, 120, 0, 90], [10, 20, 30, 31], [50, 117, 2, 88]], dtype=np.int64)
    got = AreaResampler(image).crops(regions, 48)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    for k, (r0, r1, c0, c1) in enumerate(regions):
        expected = torch.nn.functional.interpolate(tensor[:, :, r0:r1, c0:c1], size=(48, 48), mode="area")
        np.testing.assert_allclose(got[k], expected[0].numpy(), rtol=0, atol=2e-5)


@pytest.mark.slow
def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    entries = convert(tmp_path)
    committed = {e["id"]: e for e in json.loads((MODELS_DIR / "manifest.json").read_text())["models"]}
    for entry in entries:
        assert entry["sha256"] == committed[entry["id"]]["sha256"], entry["id"]
        assert (tmp_path / entry["file"]).read_bytes() == (MODELS_DIR / entry["file"]).read_bytes()
