"""Johnson et al. 2016's image transformation network, as pytorch/examples' fast_neural_style lays it out.

Reflection padding before every conv, instance norm (Ulyanov et al. 2016) instead of batch norm, five residual
blocks, and nearest-neighbour upsampling followed by a conv instead of transposed convs (against checkerboard
artefacts, Odena et al. 2016). Here inputs and outputs are RGB in [0, 1] (pytorch/examples uses [0, 255]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD_MULTIPLE = 4  # two stride-2 convs and two x2 upsamplings


class ConvLayer(nn.Module):
    """[nearest upsample] -> reflection pad -> conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, upsample: int = 1) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="nearest")
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """(N, 3, H, W) RGB in [0, 1], H and W multiples of PAD_MULTIPLE -> (N, 3, H, W), unclamped."""

    def __init__(self, width: int = 32, residual_blocks: int = 5) -> None:
        super().__init__()
        w = width
        self.down = nn.ModuleList([ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, 2), ConvLayer(2 * w, 4 * w, 3, 2)])
        self.down_norms = nn.ModuleList([nn.InstanceNorm2d(c, affine=True) for c in (w, 2 * w, 4 * w)])
        self.res = nn.Sequential(*(ResidualBlock(4 * w) for _ in range(residual_blocks)))
        self.up = nn.ModuleList([ConvLayer(4 * w, 2 * w, 3, upsample=2), ConvLayer(2 * w, w, 3, upsample=2)])
        self.up_norms = nn.ModuleList([nn.InstanceNorm2d(c, affine=True) for c in (2 * w, w)])
        self.out = ConvLayer(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.down, self.down_norms, strict=True):
            x = F.relu(norm(conv(x)))
        x = self.res(x)
        for conv, norm in zip(self.up, self.up_norms, strict=True):
            x = F.relu(norm(conv(x)))
        return self.out(x)


class ClampedOutput(nn.Module):
    """What gets exported: the net with its output clamped to [0, 1]."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).clamp(0.0, 1.0)
