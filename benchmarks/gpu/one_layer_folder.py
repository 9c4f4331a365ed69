"""Write one decoder layer of an LLM source as a small Hugging Face folder (config.json +
model.safetensors holding only `model.layers.N.*`), for machines the full source cannot reach.

The embedded SmolLM2 GGUF (94 MB) is too big to carry to the lent GPU; its layer 27 as such a
folder is about 14 MB, and `--llm FOLDER --layer 27` then builds the same model there.
tests/benchmarks/test_one_layer_folder.py checks the tensors come back bit-identical.

Run: python -m benchmarks.gpu.one_layer_folder --llm smollm2 --layer 27 --out .device_carry/smollm2_l27
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ARCH_CLASS = {"llama": ("llama", "LlamaForCausalLM"), "qwen2": ("qwen2", "Qwen2ForCausalLM")}


def hf_config_from_spec(spec) -> dict:
    model_type, cls = ARCH_CLASS[spec.arch]
    cfg = {"model_type": model_type, "architectures": [cls], "hidden_size": spec.hidden_size,
           "intermediate_size": spec.intermediate_size, "num_attention_heads": spec.num_attention_heads,
           "num_key_value_heads": spec.num_key_value_heads, "head_dim": spec.head_dim,
           "num_hidden_layers": spec.num_hidden_layers, "rms_norm_eps": spec.rms_norm_eps,
           "rope_theta": spec.rope_theta, "hidden_act": "silu", "mlp_bias": spec.mlp_bias}
    if spec.rope_scaling:
        cfg["rope_scaling"] = spec.rope_scaling
    if spec.arch == "llama":
        cfg["attention_bias"] = spec.qkv_bias
    return cfg


def write_folder(source: str, layer: int, out: Path) -> Path:
    from safetensors.torch import save_file

    from llm4seg.llm import load_layer

    weights = load_layer(source, layer)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.layers.{layer}.{name}": t.contiguous() for name, t in weights.tensors.items()}
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(hf_config_from_spec(weights.spec), indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--layer", type=int, default=27)
    parser.add_argument("--out", default=".device_carry/smollm2_l27")
    args = parser.parse_args()
    out = write_folder(args.llm, args.layer, Path(args.out))
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB): layer {args.layer} of {args.llm}")


if __name__ == "__main__":
    main()
