"""CMUNeXt (Tang et al., ISBI 2024) encoder and decoder, written to a feature contract.

Encoder: image (B, in_ch, H, W) -> [x1 .. x5], x_i of shape (B, dims[i-1], H/2^(i-1), W/2^(i-1)).
Decoder: the same list -> logits (B, num_classes, H, W). The bottleneck x5 is what the
LLM block rewrites in between.
"""

from __future__ import annotations

import torch
from torch import nn

SIZES = {
    "s": dict(dims=(8, 16, 32, 64, 128), depths=(1, 1, 1, 1, 1), kernels=(3, 3, 7, 7, 9)),
    "base": dict(dims=(16, 32, 128, 160, 256), depths=(1, 1, 1, 3, 1), kernels=(3, 3, 7, 7, 7)),
    "l": dict(dims=(32, 64, 128, 256, 512), depths=(1, 1, 1, 6, 3), kernels=(3, 3, 7, 7, 7)),
}


def conv_bn_relu(ch_in: int, ch_out: int) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(ch_in, ch_out, 3, padding=1), nn.BatchNorm2d(ch_out), nn.ReLU(inplace=True))


def conv_gelu_bn(ch_in: int, ch_out: int, kernel: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution (`kernel`, `groups`), GELU, BatchNorm: CMUNeXt's unit."""
    return nn.Sequential(
        nn.Conv2d(ch_in, ch_out, kernel, padding=kernel // 2, groups=groups), nn.GELU(), nn.BatchNorm2d(ch_out)
    )


class DepthwiseResidual(nn.Module):
    """x + depthwise conv-GELU-BN(x): the large-kernel spatial mixing of a CMUNeXt block."""

    def __init__(self, ch: int, kernel: int) -> None:
        super().__init__()
        self.body = conv_gelu_bn(ch, ch, kernel, groups=ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + the depthwise branch of x."""
        return x + self.body(x)


class CMUNeXtBlock(nn.Module):
    """`depth` x (large-kernel depthwise residual + inverted 1x1 bottleneck), then a 3x3 to ch_out."""

    def __init__(self, ch_in: int, ch_out: int, depth: int, kernel: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            nn.Sequential(
                DepthwiseResidual(ch_in, kernel), conv_gelu_bn(ch_in, ch_in * 4), conv_gelu_bn(ch_in * 4, ch_in)
            )
            for _ in range(depth)
        ])
        self.up = conv_bn_relu(ch_in, ch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise residual blocks, then the channel change."""
        return self.up(self.blocks(x))


class FusionConv(nn.Module):
    """Skip fusion: grouped 3x3 over [skip, up] then an inverted 1x1 bottleneck."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_gelu_bn(ch_in, ch_in, 3, groups=2), conv_gelu_bn(ch_in, ch_out * 4), conv_gelu_bn(ch_out * 4, ch_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fuse concatenated skip and upsampled features."""
        return self.body(x)


class UpConv(nn.Module):
    """Bilinear 2x upsampling, then 3x3 conv-BN-ReLU."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = conv_bn_relu(ch_in, ch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample x two-fold and convolve."""
        return self.conv(self.up(x))


class CMUNeXtEncoder(nn.Module):
    """CMUNeXt's encoder: a stem and one stage per dim, max-pooled between stages."""

    def __init__(self, in_channels: int, dims, depths, kernels) -> None:
        super().__init__()
        self.out_channels = list(dims)
        self.stem = conv_bn_relu(in_channels, dims[0])
        ch_in = [dims[0]] + list(dims[:-1])
        self.stages = nn.ModuleList(
            CMUNeXtBlock(ch_in[i], dims[i], depths[i], kernels[i]) for i in range(len(dims))
        )
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image (N, C, S, S) -> one feature map per stage, the last the bottleneck (N, 256, S/16, S/16)."""
        feats = [self.stages[0](self.stem(x))]
        for stage in self.stages[1:]:
            feats.append(stage(self.pool(feats[-1])))
        return feats


class CMUNeXtDecoder(nn.Module):
    """CMUNeXt's decoder: upsample, fuse with the skip feature, repeat; a 1x1 head gives logits."""

    def __init__(self, dims, num_classes: int) -> None:
        super().__init__()
        n = len(dims)
        self.ups = nn.ModuleList(UpConv(dims[i], dims[i - 1]) for i in range(n - 1, 0, -1))
        self.fuse = nn.ModuleList(FusionConv(dims[i - 1] * 2, dims[i - 1]) for i in range(n - 1, 0, -1))
        self.head = nn.Conv2d(dims[0], num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Stage features (the encoder's) -> logits (N, num_classes, S, S)."""
        d = feats[-1]
        for up, fuse, skip in zip(self.ups, self.fuse, reversed(feats[:-1])):
            d = fuse(torch.cat([skip, up(d)], dim=1))
        return self.head(d)
