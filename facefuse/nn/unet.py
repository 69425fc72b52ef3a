"""The refiner network: a small U-Net that predicts a per-pixel colour transform.

Why this shape:
- depthwise-separable convolutions throughout (the phone study: 65% fewer parameters and
  2.3x faster than plain convolutions at the same width);
- the encoder starts at half resolution and the head outputs a 3x3 colour matrix plus bias
  per pixel at half resolution, upsampled and applied to the full-resolution composite:
  light and tone are low-frequency, so nothing is lost, and the source's features (edges,
  texture) pass through by construction: the network can recolour them, not redraw them;
- the change is applied inside the mask only, so the template outside the face is exact;
- upsampling is `scale_factor=2` bilinear everywhere (Core ML and LiteRT convert it
  cleanly) and the net is fully convolutional (the same weights run at 320 and 512).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_WIDTHS = (16, 32, 48, 64, 96)


class SeparableConv(nn.Module):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1 + batch norm + ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))


class Block(nn.Sequential):
    """Two separable convolutions; the first may halve the resolution."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(SeparableConv(cin, cout, stride), SeparableConv(cout, cout))


def u_pass(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The U shape both networks share (the refiner here, nn/trust_net.py): `net.stem` to
    half resolution, `net.down` blocks keeping their outputs, `net.up` blocks each taking
    the upsampled features with the skip of the same scale, `net.head`, back to full size.
    A function over the modules, not a module, so the weights' names stay as trained."""
    x = net.stem(x)
    skips = [x]
    for block in net.down:
        x = block(x)
        skips.append(x)
    skips.pop()
    for block in net.up:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = block(torch.cat([x, skips.pop()], dim=1))
    return F.interpolate(net.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)


class RefineUNet(nn.Module):
    """Inputs: image (N,3,H,W) in 0..1, mask (N,1,H,W) in 0..1 and template (N,3,H,W) in
    0..1: the template's own face crop, which carries the photo's light (all zeros when
    there is none, as for `facefuse harmonize`); H, W multiples of 32.
    Output: the refined image (N,3,H,W) in 0..1."""

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(7, widths[0], 3, 2, 1, bias=False),  # to half resolution
            nn.BatchNorm2d(widths[0]), nn.ReLU6(inplace=True), SeparableConv(widths[0],
                                                                             widths[0]))
        self.down = nn.ModuleList(
            Block(widths[i], widths[i + 1], stride=2) for i in range(len(widths) - 1))
        self.up = nn.ModuleList(
            Block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 12, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity transform
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, template: torch.Tensor
                ) -> torch.Tensor:
        params = u_pass(self, torch.cat([image, mask, template], dim=1))
        return apply_colour_transform(image, mask, params)


def apply_colour_transform(image: torch.Tensor, mask: torch.Tensor, params: torch.Tensor
                           ) -> torch.Tensor:
    """out = image + mask * (M image + b - image), M = I + params[:9], b = params[9:]."""
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    p = params
    new_r = r + p[:, 0:1] * r + p[:, 1:2] * g + p[:, 2:3] * b + p[:, 9:10]
    new_g = g + p[:, 3:4] * r + p[:, 4:5] * g + p[:, 5:6] * b + p[:, 10:11]
    new_b = b + p[:, 6:7] * r + p[:, 7:8] * g + p[:, 8:9] * b + p[:, 11:12]
    changed = torch.cat([new_r, new_g, new_b], dim=1)
    return torch.clamp(image + mask * (changed - image), 0.0, 1.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: RefineUNet, height: int = 512, width: int = 512) -> int:
    """Multiply-accumulates of the convolutions for one image (hooks on Conv2d)."""
    total = 0

    def hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += out.numel() // out.shape[0] * k * module.in_channels // module.groups

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width), torch.zeros(1, 1, height, width),
              torch.zeros(1, 3, height, width))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
