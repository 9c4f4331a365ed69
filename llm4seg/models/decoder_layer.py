"""One LLaMA / Qwen2 decoder layer in plain torch ops, with the HF parameter names.

Written here rather than borrowed from transformers so that the model, its checkpoint and
its ONNX export need no transformers at all; tests prove equality with transformers' layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm4seg.llm.spec import LayerSpec
from llm4seg.models.rope import rotate_half


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale, as in LLaMA and Qwen."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in at least float32 as in the LLMs themselves (FP16 overflows here).
        """x / rms(x) * weight, the statistics in at least float32."""
        x32 = x if x.dtype == torch.float64 else x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions (the LLM layer's, weights loadable from it)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        d, hd = spec.hidden_size, spec.head_dim
        self.n_heads, self.n_kv, self.head_dim = spec.num_attention_heads, spec.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=spec.qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv * hd, bias=spec.qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv * hd, bias=spec.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=spec.o_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, causal: bool) -> torch.Tensor:
        """Tokens (B, T, D) -> attention output (B, T, D); `causal` masks later tokens as the LLM did."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.n_heads // self.n_kv
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.o_proj(a.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class MLP(nn.Module):
    """The LLM layer's gated SiLU MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        d, i, bias = spec.hidden_size, spec.intermediate_size, spec.mlp_bias
        self.gate_proj = nn.Linear(d, i, bias=bias)
        self.up_proj = nn.Linear(d, i, bias=bias)
        self.down_proj = nn.Linear(i, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> (B, T, D)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """x (B, T, D) -> (B, T, D): pre-norm attention and SwiGLU MLP, both residual."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = Attention(spec)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = MLP(spec)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, causal: bool = True) -> torch.Tensor:
        """Pre-norm attention and MLP, each with its residual: tokens (B, T, D) -> (B, T, D)."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, causal)
        return h + self.mlp(self.post_attention_layernorm(h))

    def reset_random(self, generator: torch.Generator | None = None) -> None:
        """The '+Transformer' control: same shapes, Xavier-uniform linears, unit norm gains."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
