"""The LLM block re-expressed for deployment, with its adapters and norm gains folded in.

Notation (per token; t in C-space, the CNN bottleneck):
  a = W1 t + b1                         adapter in (D)
  q,k,v = Wqkv diag(g1) a / rms(a)      the layer's attention inputs
  h = a + Wo attn + bo                  residual stream (D)
  m = silu(Wg' n) * (Wu' n), n = h / rms(h), W' = W diag(g2)
  out = W2 (h + Wd m + bd) + b2         adapter out (C)
Folds (all exact; computed in float64):
  q,k,v = (Wqkv diag(g1) W1) t / rms(a) + (Wqkv diag(g1) b1) / rms(a) + bqkv, with
  rms(a)^2 = (t'G t + 2 u't + c)/D from the Gram matrix G = W1'W1 (C x C): attention never reads a.
  The softmax scale 1/sqrt(head_dim) is folded into the q rows.
  out = W2 h + (W2 Wd) m + (W2 bd + b2): the D x I down projection becomes C x I.
Rotary tables and the causal mask are constants for the fixed token grid.
The folds pay off only when D > C (LLaMA-1B: 2048 vs 256); otherwise the block keeps the
D-space form, still with the gains and softmax scale folded in.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llm4seg.models.llm_block import LLMBlock


def _p(t: torch.Tensor, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(t.to(dtype), requires_grad=False)


class FoldedLLMBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W) for the grid the tables were built for.

    `dtype=torch.float16` stores weights in FP16 and computes in FP16, except the RMS statistics and
    the softmax, which run in FP32 (FP16 overflows there). float64 serves the exactness tests.
    """

    def __init__(self, block: LLMBlock, dtype: torch.dtype = torch.float32, fold: bool | None = None,
                 native_ops: bool = False, native_attention: bool | None = None) -> None:
        super().__init__()
        # native_ops: attention and the post-attention norm as scaled_dot_product_attention and
        # rms_norm, which the opset-23 exporter writes as ONNX Attention and RMSNormalization.
        # native_attention=False keeps attention as MatMul-Softmax even then: TensorRT-RTX 1.7 has
        # no FP32 kernel for ONNX Attention and refused to build the FP32 graph (issue 18).
        self.native_ops, self.causal = native_ops, block.causal
        self.native_attention = native_ops if native_attention is None else native_attention
        spec, layer = block.spec, block.layer
        f64 = {k: v.detach().double() for k, v in layer.state_dict().items()}
        d, hd = spec.hidden_size, spec.head_dim
        self.n_heads, self.n_kv, self.head_dim, self.d, self.eps = spec.num_attention_heads, spec.num_key_value_heads, hd, d, spec.rms_norm_eps
        # Statistics and softmax run in at least FP32 (the Gram form is sensitive to rounding).
        self.stat_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        w1, b1 = block.adapter_in.weight.detach().double(), block.adapter_in.bias.detach().double()
        w2, b2 = block.adapter_out.weight.detach().double(), block.adapter_out.bias.detach().double()
        self.fold = d > w1.shape[1] if fold is None else fold
        g1, g2 = f64["input_layernorm.weight"], f64["post_attention_layernorm.weight"]
        scale = 1.0 / math.sqrt(hd)
        wq = f64["self_attn.q_proj.weight"] * scale
        wqkv = torch.cat([wq, f64["self_attn.k_proj.weight"], f64["self_attn.v_proj.weight"]])
        bqkv = torch.cat([f64.get("self_attn.q_proj.bias", torch.zeros(wq.shape[0], dtype=torch.float64)) * scale,
                          f64.get("self_attn.k_proj.bias", torch.zeros(self.n_kv * hd, dtype=torch.float64)),
                          f64.get("self_attn.v_proj.bias", torch.zeros(self.n_kv * hd, dtype=torch.float64))])
        wqkv_g = wqkv * g1[None, :]
        self.w_in, self.b_in = _p(w1.T, dtype), _p(b1, dtype)                 # a = t @ w_in + b_in
        if self.fold:
            # rms(a)^2 * D = t'Gt + 2u't + c = ((tG + 2u') . t) + c, all in C-space.
            self.gram, self.gram_u = _p(w1.T @ w1, self.stat_dtype), _p(2 * (w1.T @ b1), self.stat_dtype)
            self.gram_c = float(b1 @ b1)
            self.w_qkv, self.b_qkv_scaled = _p((wqkv_g @ w1).T, dtype), _p(wqkv_g @ b1, dtype)
        else:
            self.w_qkv, self.b_qkv_scaled = _p(wqkv_g.T, dtype), None
        self.b_qkv = _p(bqkv, dtype)
        self.w_o = _p(f64["self_attn.o_proj.weight"].T, dtype)
        self.b_o = _p(f64.get("self_attn.o_proj.bias", torch.zeros(d, dtype=torch.float64)), dtype)
        w_gu = torch.cat([f64["mlp.gate_proj.weight"], f64["mlp.up_proj.weight"]]) * g2[None, :]
        zeros_i = torch.zeros(spec.intermediate_size, dtype=torch.float64)
        self.w_gu = _p(w_gu.T, dtype)
        self.b_gu = _p(torch.cat([f64.get("mlp.gate_proj.bias", zeros_i), f64.get("mlp.up_proj.bias", zeros_i)]), dtype)
        b_down = f64.get("mlp.down_proj.bias", torch.zeros(d, dtype=torch.float64))
        self.w_out_h = _p(w2.T, dtype)
        if self.fold:
            self.w_out_m = _p((w2 @ f64["mlp.down_proj.weight"]).T, dtype)
            self.b_out = _p(w2 @ b_down + b2, dtype)
        else:
            self.w_down, self.b_down = _p(f64["mlp.down_proj.weight"].T, dtype), _p(b_down, dtype)
            self.b_out = _p(b2, dtype)
        self.register_buffer("cos", block.rope_cos.to(dtype))
        self.register_buffer("sin", block.rope_sin.to(dtype))
        t = block.rope_cos.shape[0]
        mask = torch.full((t, t), -1e9).triu(1) if block.causal else torch.zeros(t, t)
        self.register_buffer("mask", mask.to(self.stat_dtype))  # added to the (FP32+) scores
        self.grid_hw = block.grid_hw

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos + rotated * self.sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck (B, C, H, W) -> (B, C, H, W), the adapters and norm scales folded into the layer."""
        b, c, hh, ww = x.shape
        t = x.flatten(2).transpose(1, 2)                                    # (B, T, C)
        a = t @ self.w_in + self.b_in
        if self.fold:
            t32 = t.to(self.stat_dtype)
            ms_in = (((t32 @ self.gram) + self.gram_u) * t32).sum(-1, keepdim=True) + self.gram_c
            ms_in = ms_in / self.d
            inv_rms_in = torch.rsqrt(ms_in + self.eps).to(t.dtype)
            qkv = (t @ self.w_qkv + self.b_qkv_scaled) * inv_rms_in + self.b_qkv
        else:
            qkv = self._norm(a) @ self.w_qkv + self.b_qkv
        attn = self._attention_native(qkv) if self.native_attention else self._attention(qkv)
        h = a + attn @ self.w_o + self.b_o
        gate, up = (self._norm(h) @ self.w_gu + self.b_gu).chunk(2, dim=-1)
        m = torch.nn.functional.silu(gate) * up
        if self.fold:
            out = h @ self.w_out_h + m @ self.w_out_m + self.b_out
        else:
            out = (h + m @ self.w_down + self.b_down) @ self.w_out_h + self.b_out
        return out.transpose(1, 2).reshape(b, c, hh, ww)

    def _attention(self, qkv: torch.Tensor) -> torch.Tensor:
        b, tokens, _ = qkv.shape
        nq, nkv, hd = self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.head_dim
        q, k, v = qkv.split([nq, nkv, nkv], dim=-1)
        groups = self.n_heads // self.n_kv
        # GQA by broadcasting: (B, kv, groups, T, hd) against (B, kv, 1, T, hd); no repeat.
        q = self._rotate(q.view(b, tokens, self.n_kv, groups, hd).permute(0, 2, 3, 1, 4))
        k = self._rotate(k.view(b, tokens, self.n_kv, 1, hd).permute(0, 2, 3, 1, 4))
        v = v.view(b, tokens, self.n_kv, 1, hd).permute(0, 2, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)).to(self.stat_dtype) + self.mask
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        return (probs @ v).permute(0, 3, 1, 2, 4).reshape(b, tokens, nq)

    def _attention_native(self, qkv: torch.Tensor) -> torch.Tensor:
        b, tokens, _ = qkv.shape
        nq, nkv, hd = self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.head_dim
        q, k, v = qkv.split([nq, nkv, nkv], dim=-1)
        # Query head i reads kv head i // groups (enable_gqa), as the broadcast form does.
        q = self._rotate(q.view(b, tokens, self.n_heads, hd).transpose(1, 2)).to(self.stat_dtype)
        k = self._rotate(k.view(b, tokens, self.n_kv, hd).transpose(1, 2)).to(self.stat_dtype)
        v = v.view(b, tokens, self.n_kv, hd).transpose(1, 2).to(self.stat_dtype)
        # scale=1: 1/sqrt(head_dim) is already in the q rows. FP32 inside, as the softmax must be.
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=1.0,
                                                               enable_gqa=self.n_heads != self.n_kv)
        return out.to(qkv.dtype).transpose(1, 2).reshape(b, tokens, nq)

    def _norm(self, h: torch.Tensor) -> torch.Tensor:
        h32 = h.to(self.stat_dtype)
        if self.native_ops:
            return torch.nn.functional.rms_norm(h32, (self.d,), eps=self.eps).to(h.dtype)
        return (h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + self.eps)).to(h.dtype)
