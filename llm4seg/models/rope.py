"""Token position encodings for the LLM layer over a (rows x cols) grid of bottleneck tokens.

Every mode returns (cos, sin) tables of shape (T, head_dim), applied as
q * cos + rotate_half(q) * sin, the convention of LLaMA and Qwen2 in transformers.
"""

from __future__ import annotations

import math

import torch

from llm4seg.errors import ConfigError
from llm4seg.llm.spec import LayerSpec

POSITION_MODES = ("rope1d", "rope2d", "none", "paper")


def inv_freq_from_spec(spec: LayerSpec, rotary_dim: int | None = None) -> torch.Tensor:
    """The LLM's own inverse frequencies (float64), with llama3 scaling when configured."""
    dim = rotary_dim or spec.head_dim
    inv = 1.0 / (spec.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaling = spec.rope_scaling
    if not scaling:
        return inv
    factor = float(scaling["factor"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_ctx = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old_ctx / low, inv / factor, inv)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    return torch.where(medium, smoothed, scaled)


def rope_tables(spec: LayerSpec, rows: int, cols: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (float32, shape (rows*cols, head_dim)) for raster-ordered tokens."""
    tokens = rows * cols
    head_dim = spec.head_dim
    if mode == "none":
        return torch.ones(tokens, head_dim), torch.zeros(tokens, head_dim)
    if mode == "paper":
        # The authors' release: one scalar per token, and sin/cos passed in swapped order.
        pos = torch.arange(tokens, dtype=torch.float64)[:, None].expand(tokens, head_dim)
        return torch.sin(pos).float(), torch.cos(pos).float()
    if mode == "rope1d":
        pos = torch.arange(tokens, dtype=torch.float64)
        freqs = pos[:, None] * inv_freq_from_spec(spec)[None, :]
    elif mode == "rope2d":
        if head_dim % 4:
            raise ConfigError(f"rope2d needs head_dim divisible by 4, got {head_dim}", hint="use positions='rope1d'")
        half = inv_freq_from_spec(spec, rotary_dim=head_dim // 2)
        r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
        c = torch.arange(cols, dtype=torch.float64).repeat(rows)
        freqs = torch.cat([r[:, None] * half[None, :], c[:, None] * half[None, :]], dim=1)
    else:
        raise ConfigError(f"unknown positions mode {mode!r}", hint=f"choose one of {', '.join(POSITION_MODES)}")
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension: the rotation of rotary position embeddings."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
