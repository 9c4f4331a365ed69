"""Fold CMUNeXt's BatchNorms into neighbouring convolutions wherever the fold is exact.

Exact folds: Conv -> BN (BN into the conv's output), and BN -> 1x1 conv without padding (BN into
the conv's input). A BN before a padded 3x3 conv or a residual sum is not folded: zero padding
of BN(y) differs from zero padding of y at the borders. Those stay as inference BatchNorm.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from llm4seg.models.cmunext import CMUNeXtBlock, CMUNeXtDecoder, CMUNeXtEncoder, FusionConv


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


@torch.no_grad()
def fold_bn_into_conv_output(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold a BatchNorm that follows `conv` into its weights and bias (exact, computed in float64)."""
    scale, shift = _bn_affine(bn)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros_like(scale).float())
    conv.bias.copy_((bias * scale + shift).float())


@torch.no_grad()
def fold_bn_into_conv_input(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """Fold a BatchNorm that precedes an ungrouped, unpadded 1x1 `conv` into it (exact only then:
    other convolutions raise ValueError).
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding not in ((0, 0), 0):
        raise ValueError("input-side BN fold is exact only for ungrouped, unpadded 1x1 convolutions")
    scale, shift = _bn_affine(bn)
    w = conv.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    conv.bias = nn.Parameter((bias + w[:, :, 0, 0] @ shift).float())
    conv.weight.copy_((w * scale.view(1, -1, 1, 1)).float())


def _conv_bn_relu(seq: nn.Sequential) -> int:
    fold_bn_into_conv_output(seq[0], seq[1])
    seq[1] = nn.Identity()
    return 1


def _chain(first: nn.Sequential, second: nn.Sequential) -> int:
    """conv_gelu_bn followed by a 1x1 conv_gelu_bn: move the first's BN into the second's conv."""
    fold_bn_into_conv_input(first[2], second[0])
    first[2] = nn.Identity()
    return 1


def fold_cmunext(encoder: CMUNeXtEncoder, decoder: CMUNeXtDecoder, head: nn.Conv2d) -> tuple[int, int]:
    """In-place on copies the caller owns; returns (folded, kept) BatchNorm counts."""
    folded = _conv_bn_relu(encoder.stem)
    for stage in encoder.stages:
        assert isinstance(stage, CMUNeXtBlock)
        for block in stage.blocks:
            folded += _chain(block[1], block[2])
        folded += _conv_bn_relu(stage.up)
    for up, fuse in zip(decoder.ups, decoder.fuse):
        folded += _conv_bn_relu(up.conv)
        assert isinstance(fuse, FusionConv)
        folded += _chain(fuse.body[0], fuse.body[1]) + _chain(fuse.body[1], fuse.body[2])
    last = decoder.fuse[-1].body[2]
    fold_bn_into_conv_input(last[2], head)
    last[2] = nn.Identity()
    folded += 1
    kept = sum(isinstance(m, nn.BatchNorm2d) for m in (*encoder.modules(), *decoder.modules()))
    return folded, kept


def folded_copies(model) -> tuple[CMUNeXtEncoder, CMUNeXtDecoder, int, int]:
    """Folded copies of the model's encoder and decoder (the head is the decoder's), plus BN counts."""
    encoder, decoder = copy.deepcopy(model.encoder).eval(), copy.deepcopy(model.decoder).eval()
    folded, kept = fold_cmunext(encoder, decoder, decoder.head)
    return encoder, decoder, folded, kept
