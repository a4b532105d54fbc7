"""VGG-16's convolutional trunk up to relu4_3, the loss network of Johnson et al. 2016 (perceptual losses).

Layer layout as torchvision's `vgg16().features` (Simonyan & Zisserman 2014, configuration D); weights come from
export/lpips_vgg.py. Inputs are RGB in [0, 1]; the ImageNet normalisation those weights were trained with is
applied inside.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# torchvision's ImageNet statistics, the normalisation its VGG-16 weights expect (RGB, [0, 1] inputs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (out_channels per conv) per block; a 2x2 max pool sits between blocks. relu<block>_<last conv> are the taps.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))
TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


class VGG16Features(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> {"relu1_2": ..., "relu2_2": ..., "relu3_3": ..., "relu4_3": ...}."""

    def __init__(self) -> None:
        super().__init__()
        convs = []
        c_in = 3
        for block in VGG16_BLOCKS:
            for c_out in block:
                convs.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def load_conv_weights(self, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> VGG16Features:
        """The first ten of VGG-16's 13 convs (block 5 lies past relu4_3 and is not needed)."""
        if len(layers) < len(self.convs):
            raise ValueError(f"{len(layers)} conv layers given, VGG-16 to relu4_3 needs {len(self.convs)}")
        layers = layers[: len(self.convs)]
        with torch.no_grad():
            for conv, (weight, bias) in zip(self.convs, layers, strict=True):
                if tuple(weight.shape) != tuple(conv.weight.shape):
                    raise ValueError(f"weight {weight.shape} does not fit {tuple(conv.weight.shape)}")
                conv.weight.copy_(torch.from_numpy(weight))
                conv.bias.copy_(torch.from_numpy(bias))
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        index = 0
        for block_number, block in enumerate(VGG16_BLOCKS):
            if block_number:
                x = F.max_pool2d(x, 2)
            for _ in block:
                x = F.relu(self.convs[index](x))
                index += 1
            out[TAPS[block_number]] = x
        return out
