"""The three MTCNN nets rewritten, weight for weight, into operations onnxruntime's CPU provider runs fast.

Why: onnxruntime runs convolutions, max-pooling, ReLU and additions in its blocked channel layout (NCHWc,
16 channels a block with AVX-512, 8 with AVX2) and fuses ReLU and additions into the convolutions. PReLU
with per-channel slopes is none of these: for each one the graph leaves the blocked layout, runs a slow
broadcasting kernel and converts back. In the original P-Net that is two thirds of the time, mostly the
first PReLU on the full-resolution map (bench/profile_mtcnn.py prints the per-operator split).

The rewrite uses two identities, valid for any slope a (negative or above 1 included):

  1. PReLU without pooling:  prelu(y) = y + (1 - a) * relu(-y)
     -> two depthwise 1x1 convolutions (-1 with ReLU, then 1 - a) and an addition of y.
  2. PReLU followed by max-pooling, pool(prelu(y)), done after the pool, on a quarter of the values or
     fewer. With M = pool(y) and N = pool(-y) (minus the window's minimum):
        a >= 0: PReLU is non-decreasing, so pool(prelu(y)) = prelu(M) = M + s * relu(-|1 - a| * M),
                with s = +1 for a <= 1 and s = -1 for a > 1;
        a <  0: prelu(y) = max(y, a * y), so pool(prelu(y)) = max(M, |a| * N) = M + relu(|a| * N - M).
     The convolution before the pool also writes -y for the negative-slope channels (extra output
     channels, mostly filling the block's padding), the pool runs on all of them, a 1x1 convolution
     with ReLU forms the relu(...) terms, and a depthwise 1x1 convolution by s plus an addition of the
     pooled map finishes. The extra channels ride along; the next convolution gives them zero weight.

And the two-class softmax becomes one logistic: softmax(l0, l1)[1] = sigmoid(l1 - l0), one output
channel whose weights are the difference of the two (onnxruntime's softmax over the channel axis of a
4-d map transposes it; the logistic is elementwise).

Each identity is exact in real arithmetic; in float32 the outputs differ from the original nets by a few
units in the last place (export/convert_mtcnn.py checks them against the original nets in PyTorch).
The modules here hold derived weights only; the state dicts load into export/nets/mtcnn.py.
"""

from __future__ import annotations

import torch
from torch import nn

from export.nets.mtcnn import ONet, PNet, RNet, _flatten_caffe_order

CHANNEL_BLOCK = 16  # onnxruntime's NCHWc block with AVX-512 (a multiple of AVX2's 8): depthwise
# convolutions stay in the blocked layout only when their channel count is a multiple of the block


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1) -> nn.Conv2d:
    """A Conv2d holding exactly these parameters (no padding, stride 1)."""
    out_channels, in_per_group, height, width = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_channels, (height, width), groups=groups, bias=bias is not None)
    conv.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return conv


def _depthwise(scale: torch.Tensor) -> nn.Conv2d:
    """A depthwise 1x1 convolution multiplying channel c by scale[c]."""
    return _conv(scale.reshape(-1, 1, 1, 1), None, groups=scale.numel())


def _pad_inputs(conv: nn.Conv2d, in_channels: int) -> torch.Tensor:
    """conv's weight with zero weights appended for input channels conv.in_channels .. in_channels - 1."""
    weight = conv.weight.detach()
    padded = weight.new_zeros((weight.shape[0], in_channels, *weight.shape[2:]))
    padded[:, :weight.shape[1]] = weight
    return padded


class ConvPReLU(nn.Module):
    """prelu(conv(x)) as y + (1 - a) * relu(-y), y = conv(x) (identity 1 in the module docstring).

    in_channels: the channel count of x, which may exceed the original conv's (padding channels given zero
    weight). Output: exactly the original's channels.
    """

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU, in_channels: int | None = None) -> None:
        super().__init__()
        slopes = prelu.weight.detach()
        if conv.out_channels % CHANNEL_BLOCK:
            raise ValueError(f"{conv.out_channels} channels: not a multiple of {CHANNEL_BLOCK}")
        weight = _pad_inputs(conv, in_channels or conv.in_channels)
        self.conv = _conv(weight, conv.bias)
        self.negate = _depthwise(-torch.ones_like(slopes))
        self.negative_part = _depthwise(1.0 - slopes)
        self.out_channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.negative_part(torch.relu(self.negate(y))) + y


class ConvPReLUPool(nn.Module):
    """pool(prelu(conv(x))) with the PReLU after the pool (identity 2 in the module docstring).

    Output: out_channels (a multiple of CHANNEL_BLOCK) channels, the first conv.out_channels of them the
    original's; the rest are scratch for the next layer to ignore.
    """

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU, pool: nn.MaxPool2d, in_channels: int | None = None
                 ) -> None:
        super().__init__()
        slopes = prelu.weight.detach()
        channels = conv.out_channels
        negative = torch.nonzero(slopes < 0).flatten()
        self.out_channels = _round_up(channels + negative.numel(), CHANNEL_BLOCK)
        weight = _pad_inputs(conv, in_channels or conv.in_channels)
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(channels)
        # Outputs: y (channels), -y of the negative-slope channels, zeros up to the block multiple.
        spare = self.out_channels - channels - negative.numel()
        self.conv = _conv(
            torch.cat([weight, -weight[negative], weight.new_zeros((spare, *weight.shape[1:]))]),
            torch.cat([bias, -bias[negative], bias.new_zeros(spare)]))
        self.pool = nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                 ceil_mode=pool.ceil_mode)
        mix = weight.new_zeros((self.out_channels, self.out_channels, 1, 1))  # the relu(...) arguments
        sign = weight.new_zeros(self.out_channels)  # s; zero on the scratch channels
        for channel, slope in enumerate(slopes.tolist()):
            sign[channel] = -1.0 if slope > 1.0 else 1.0
            if slope < 0.0:  # |a| * N - M, N in the channel written right after the originals
                mix[channel, channel] = -1.0
                mix[channel, channels + int(torch.nonzero(negative == channel))] = -slope
            else:  # -|1 - a| * M
                mix[channel, channel] = -abs(1.0 - slope)
        self.mix = _conv(mix, None)
        self.sign = _depthwise(sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.conv(x))
        return self.sign(torch.relu(self.mix(pooled))) + pooled


def _face_logit(layer: nn.Conv2d | nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one logit whose logistic equals the two-class softmax's channel 1 over the layer's two
    outputs: row 1 minus row 0."""
    weight, bias = layer.weight.detach(), layer.bias.detach()
    return (weight[1] - weight[0])[None], (bias[1] - bias[0])[None]


class FastPNet(nn.Module):
    """PNet's outputs (box_offsets (N, 4, H', W'), face_prob (N, H', W')) from the rewritten layers."""

    def __init__(self, reference: PNet) -> None:
        super().__init__()
        self.layer1 = ConvPReLUPool(reference.conv1, reference.prelu1, reference.pool1)
        self.layer2 = ConvPReLU(reference.conv2, reference.prelu2, self.layer1.out_channels)
        self.layer3 = ConvPReLU(reference.conv3, reference.prelu3)
        # One 1x1 convolution for both heads: 4 box offsets and the face logit (5 of one 16-channel block).
        logit_weight, logit_bias = _face_logit(reference.conv4_1)
        self.heads = _conv(torch.cat([reference.conv4_2.weight.detach(), logit_weight]),
                           torch.cat([reference.conv4_2.bias.detach(), logit_bias]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heads = self.heads(self.layer3(self.layer2(self.layer1(image))))
        return heads[:, :4], torch.sigmoid(heads[:, 4])


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    linear.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return linear


class FastRNet(nn.Module):
    """RNet's outputs (box_offsets (N, 4), face_prob (N,)) from the rewritten layers."""

    def __init__(self, reference: RNet) -> None:
        super().__init__()
        self.layer1 = ConvPReLUPool(reference.conv1, reference.prelu1, reference.pool1)
        self.layer2 = ConvPReLUPool(reference.conv2, reference.prelu2, reference.pool2, self.layer1.out_channels)
        self.layer3 = ConvPReLU(reference.conv3, reference.prelu3, self.layer2.out_channels)
        self.dense4, self.prelu4 = reference.dense4, reference.prelu4  # (N, 128): PReLU is cheap here
        self.face_logit = _linear(*_face_logit(reference.dense5_1))
        self.dense5_2 = reference.dense5_2

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer3(self.layer2(self.layer1(image)))
        x = self.prelu4(self.dense4(_flatten_caffe_order(x)))
        return self.dense5_2(x), torch.sigmoid(self.face_logit(x)[:, 0])


class FastONet(nn.Module):
    """ONet's outputs (box_offsets (N, 4), landmarks (N, 10), face_prob (N,)) from the rewritten layers."""

    def __init__(self, reference: ONet) -> None:
        super().__init__()
        self.layer1 = ConvPReLUPool(reference.conv1, reference.prelu1, reference.pool1)
        self.layer2 = ConvPReLUPool(reference.conv2, reference.prelu2, reference.pool2, self.layer1.out_channels)
        self.layer3 = ConvPReLUPool(reference.conv3, reference.prelu3, reference.pool3, self.layer2.out_channels)
        self.layer4 = ConvPReLU(reference.conv4, reference.prelu4, self.layer3.out_channels)
        self.dense5, self.prelu5 = reference.dense5, reference.prelu5
        self.face_logit = _linear(*_face_logit(reference.dense6_1))
        self.dense6_2, self.dense6_3 = reference.dense6_2, reference.dense6_3

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer4(self.layer3(self.layer2(self.layer1(image))))
        x = self.prelu5(self.dense5(_flatten_caffe_order(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.sigmoid(self.face_logit(x)[:, 0])


def fast_net(reference: nn.Module) -> nn.Module:
    """The rewritten form of a PNet, RNet or ONet with its weights, in eval mode."""
    for source, fast in ((PNet, FastPNet), (RNet, FastRNet), (ONet, FastONet)):
        if isinstance(reference, source):
            return fast(reference).eval()
    raise TypeError(f"not an MTCNN net: {type(reference).__name__}")
