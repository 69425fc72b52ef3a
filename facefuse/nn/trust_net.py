"""The trust network: the refiner's U-Net shape (nn/unet.py's blocks), narrower, with one
output channel: per pixel, the probability that it is *not* the person's own face (hair,
glasses, a hand, a hard shadow). Inputs: the aligned crop and the skin mask from the
landmarks; it runs at 128 px (a few ms on a CPU) and its map is upsampled to the crop.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import Block, SeparableConv, u_pass

TRUST_WIDTHS = (12, 24, 32, 48, 64)


class TrustUNet(nn.Module):
    """image (N,3,H,W) 0..1, skin (N,1,H,W) 0..1 -> untrusted (N,1,H,W) 0..1 (sigmoid);
    H, W multiples of 32. `logits()` gives the map before the sigmoid (for the loss)."""

    def __init__(self, widths: tuple[int, ...] = TRUST_WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(4, widths[0], 3, 2, 1, bias=False),  # to half resolution
            nn.BatchNorm2d(widths[0]), nn.ReLU6(inplace=True),
            SeparableConv(widths[0], widths[0]))
        self.down = nn.ModuleList(
            Block(widths[i], widths[i + 1], stride=2) for i in range(len(widths) - 1))
        self.up = nn.ModuleList(
            Block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def logits(self, image: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
        return u_pass(self, torch.cat([image, skin], dim=1))

    def forward(self, image: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(image, skin))
