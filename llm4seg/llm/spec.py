"""The shape of one decoder layer, read from an LLM's own config (HF config.json or GGUF)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llm4seg.errors import LLMSourceError

SUPPORTED_ARCHS = ("llama", "qwen2")

# HF `model_type` / `architectures` spellings we accept, mapped to our arch key.
_ARCH_ALIASES = {
    "llama": "llama",
    "LlamaForCausalLM": "llama",
    "qwen2": "qwen2",
    "Qwen2ForCausalLM": "qwen2",
}

# Shapes of the paper's LLMs, for random-weight models and benchmarks ("shape:<name>").
# Values are the published config.json fields; no weights are implied.
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "num_hidden_layers": 16, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
    },
    "deepseek-r1-distill-qwen-1.5b": {
        "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
        "num_attention_heads": 12, "num_key_value_heads": 2, "num_hidden_layers": 28,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
    },
    "smollm2-135m": {
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "hidden_act": "silu",
    },
}


@dataclass(frozen=True)
class LayerSpec:
    """Everything needed to build one decoder layer; serialisable into checkpoints."""

    arch: str
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_hidden_layers: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data (stored in checkpoint configs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerSpec":
        """The spec `to_dict` wrote."""
        return cls(**data)

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> "LayerSpec":
        """The spec from an HF config.json; a missing or non-numeric field is named, not a traceback."""
        arch = _arch_from_hf(cfg)
        for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers"):
            value = cfg.get(key) if isinstance(cfg, dict) else None
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LLMSourceError(f"the model's config.json has {key} = {value!r}; expected a positive integer",
                                     hint="use the config.json of the downloaded model, unaltered")
        if cfg.get("hidden_act", "silu") != "silu":
            raise LLMSourceError(
                f"hidden_act {cfg.get('hidden_act')!r} is not supported",
                hint="only SiLU-gated MLPs (LLaMA, Qwen2) are supported",
            )
        theta, scaling = _rope_from_hf(cfg)
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        attention_bias = bool(cfg.get("attention_bias", False))
        return cls(
            arch=arch,
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            # Qwen2 always has q/k/v biases; LLaMA only when attention_bias is set.
            qkv_bias=True if arch == "qwen2" else attention_bias,
            o_bias=False if arch == "qwen2" else attention_bias,
            mlp_bias=bool(cfg.get("mlp_bias", False)),
        )

    @property
    def frozen_params(self) -> int:
        """Parameters of one decoder layer of this spec (projections, norms, biases)."""
        d, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        n = d * q + 2 * d * kv + q * d + 3 * d * i + 2 * d
        n += (q + 2 * kv) * self.qkv_bias + d * self.o_bias + (2 * i + d) * self.mlp_bias
        return n


def _arch_from_hf(cfg: dict[str, Any]) -> str:
    names = [cfg.get("model_type", "")] + list(cfg.get("architectures") or [])
    for name in names:
        if name in _ARCH_ALIASES:
            return _ARCH_ALIASES[name]
    raise LLMSourceError(
        f"unsupported LLM architecture {names[0] or names!r}",
        hint=f"supported architectures: {', '.join(SUPPORTED_ARCHS)} "
        "(e.g. meta-llama/Llama-3.2-1B, deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B)",
    )


def _rope_from_hf(cfg: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    # transformers 5 writes `rope_parameters`; older configs write rope_theta + rope_scaling.
    params = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling")
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
        elif kind != "llama3":
            raise LLMSourceError(
                f"rope scaling type {kind!r} is not supported",
                hint="supported: default and llama3 rotary embeddings",
            )
    return float(theta), scaling


def spec_from_gguf_fields(arch: str, fields: dict[str, Any]) -> LayerSpec:
    """Build a spec from GGUF metadata (`<arch>.embedding_length` and friends)."""
    if arch not in SUPPORTED_ARCHS:
        raise LLMSourceError(
            f"unsupported GGUF architecture {arch!r}",
            hint=f"supported architectures: {', '.join(SUPPORTED_ARCHS)}",
        )
    hidden = int(fields[f"{arch}.embedding_length"])
    heads = int(fields[f"{arch}.attention.head_count"])
    cfg = {
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": int(fields[f"{arch}.feed_forward_length"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(fields.get(f"{arch}.attention.head_count_kv", heads)),
        "head_dim": int(fields.get(f"{arch}.rope.dimension_count", hidden // heads)),
        "num_hidden_layers": int(fields[f"{arch}.block_count"]),
        "rms_norm_eps": float(fields[f"{arch}.attention.layer_norm_rms_epsilon"]),
        "rope_theta": float(fields.get(f"{arch}.rope.freq_base", 10000.0)),
    }
    return LayerSpec.from_hf_config(cfg)
