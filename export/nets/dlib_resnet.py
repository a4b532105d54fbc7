"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) as a PyTorch module.

The layer list is dlib's `anet_type` (examples/dnn_face_recognition_ex.cpp): a 7x7/2 stem with a 3x3/2
max-pool, then 14 residual blocks (3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256 channels; the first block of
each later stage is a "down" block), global average pooling and a 128-wide linear layer without bias.

Two dlib behaviours that a stock ResNet does not have:
- a down block convolves with stride 2 and *no* padding, and its shortcut is a 2x2/2 average pool of the
  block input (no projection);
- dlib's `add_prev` adds tensors of different shapes by zero-padding the smaller one at the end of each
  axis, so the shortcut gains channels filled with zeros, and on the 8x8 -> 3x3 / 4x4 step the sum is 4x4.

Each dlib `affine` layer (batch norm frozen to scale and shift) is folded into the convolution before it
by the converter, so a block is conv -> relu -> conv -> add -> relu. Input: (N, 3, 150, 150) float32 RGB in
0..255; dlib's input layer subtracts a per-channel mean and divides by 256, which the module does first.
Output: (N, 128) float32, dlib's raw (not unit-length) descriptor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

INPUT_SCALE = 256.0  # dlib's input_rgb_image(_sized) divides (pixel - mean) by 256 (dlib/dnn/input.h)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the union of both shapes, missing entries counting as zero."""
    c = max(a.shape[1], b.shape[1])
    h = max(a.shape[2], b.shape[2])
    w = max(a.shape[3], b.shape[3])

    def grow(t: torch.Tensor) -> torch.Tensor:
        pads = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
        return F.pad(t, pads) if any(pads) else t

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.shortcut: nn.Module = nn.AvgPool2d(2, 2) if down else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(add_zero_padded(y, self.shortcut(x)))


class DlibFaceResNet(nn.Module):
    """`blocks` lists (in_channels, out_channels, down) per residual block, from input to output."""

    mean: torch.Tensor  # (1, 3, 1, 1) dlib's per-channel input mean, RGB

    def __init__(
        self,
        blocks: list[tuple[int, int, bool]],
        mean_rgb: tuple[float, float, float],
        stem_channels: int = 32,
        embedding_size: int = 128,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, stem_channels, 7, stride=2, padding=0)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.blocks = nn.Sequential(*(ResidualBlock(i, o, d) for i, o, d in blocks))
        self.fc = nn.Linear(blocks[-1][1], embedding_size, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / INPUT_SCALE
        x = self.pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))
