"""The rewritten MTCNN nets (export/nets/mtcnn_fast.py) against the original ones, and the committed graphs'
operators. In float64 the rewrite must agree to rounding (its identities are exact); the float32 check of
the committed files against the original nets is in test_mtcnn_export.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from export.convert_mtcnn import NETS, NetSpec, load_net  # noqa: E402
from export.nets.mtcnn_fast import CHANNEL_BLOCK, ConvPReLU, ConvPReLUPool, fast_net  # noqa: E402
from tests.helpers import MODELS_DIR  # noqa: E402

SHAPES = {"mtcnn-pnet": [(1, 3, 12, 12), (1, 3, 13, 17), (2, 3, 97, 131)],
          "mtcnn-rnet": [(1, 3, 24, 24), (33, 3, 24, 24)],
          "mtcnn-onet": [(1, 3, 48, 48), (17, 3, 48, 48)]}
# Slopes covering every branch of the rewrite: negative, zero, between 0 and 1, exactly 1, above 1.
EDGE_SLOPES = [-1.5, -0.25, 0.0, 0.3, 1.0, 1.75, -0.01, 0.99]


@pytest.mark.parametrize("spec", NETS, ids=[s.model_id for s in NETS])
def test_rewrite_equals_the_original_net_in_float64(spec: NetSpec) -> None:
    original = load_net(spec).double()
    rewritten = fast_net(original).double()
    rng = np.random.default_rng(11)
    for shape in SHAPES[spec.model_id]:
        image = torch.from_numpy(rng.uniform(-1, 1, size=shape))
        with torch.no_grad():
            for ours, theirs in zip(rewritten(image), original(image), strict=True):
                assert ours.shape == theirs.shape
                np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-12)


def _layer(slopes: list[float], in_channels: int = 3) -> tuple[torch.nn.Conv2d, torch.nn.PReLU]:
    generator = torch.Generator().manual_seed(5)
    conv = torch.nn.Conv2d(in_channels, len(slopes), 3).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator, dtype=torch.float64))
    prelu = torch.nn.PReLU(len(slopes)).double()
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes, dtype=torch.float64))
    return conv, prelu


@pytest.mark.parametrize("pool", [torch.nn.MaxPool2d(2, 2, ceil_mode=True), torch.nn.MaxPool2d(3, 2, ceil_mode=True)],
                         ids=["2x2", "3x3-stride-2"])
def test_pooled_prelu_identity_for_every_kind_of_slope(pool: torch.nn.MaxPool2d) -> None:
    conv, prelu = _layer(EDGE_SLOPES)
    layer = ConvPReLUPool(conv, prelu, pool).double()
    assert layer.out_channels % CHANNEL_BLOCK == 0
    image = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 3, 21, 19)))  # odd sizes: partial windows
    with torch.no_grad():
        expected = pool(prelu(conv(image)))
        got = layer(image)[:, :len(EDGE_SLOPES)]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-12)


def test_unpooled_prelu_identity_for_every_kind_of_slope() -> None:
    conv, prelu = _layer(EDGE_SLOPES * 2)  # 16 channels: one block
    layer = ConvPReLU(conv, prelu).double()
    image = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 3, 9, 14)))
    with torch.no_grad():
        np.testing.assert_allclose(layer(image).numpy(), prelu(conv(image)).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", NETS, ids=[s.model_id for s in NETS])
def test_committed_graphs_have_no_softmax_and_prelu_only_on_dense_layers(spec: NetSpec) -> None:
    """What makes them fast: every convolutional PReLU and the softmax are rewritten away."""
    graph = onnx.load(str(MODELS_DIR / spec.file_name)).graph
    ops = [node.op_type for node in graph.node]
    assert "Softmax" not in ops
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "PRelu":  # a dense layer's slopes are exported as (1, channels), a conv's as 4-d
            assert len(shapes[node.input[1]]) == 2, node.name
    assert ops.count("PRelu") == (0 if spec.model_id == "mtcnn-pnet" else 1)
