"""The configuration of Holoscan's own GPU operators (FormatConverterOp + InferenceOp) for an
export's any-size frames graph, read from its manifest (NOT RUN here: they need CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.manifest import ManifestEntry, read_entries


def inference_op_config(manifest_path: str | Path, artifact: str) -> dict[str, Any]:
    """The configuration of Holoscan's FormatConverterOp + InferenceOp for one manifest artifact, on
    its any-size frames graph, for a GPU Holoscan app (NOT RUN here: those operators need CUDA).

    The frames graph (`model[.fp16|.int8].frames.onnx`; a float graph's own is found through the
    manifest) takes uint8 HWC frames of any size and does the colour order, the contract's resize,
    the normalisation and the resize back inside: FormatConverterOp only drops the alpha channel of
    an RGBA source and orders the channels (no resize, no scaling), and InferenceOp runs with
    dynamic input dimensions (Holoscan 4.6's inference libraries list kUInt8 among their data
types: read from the installed binaries, NOT RUN). Outputs:
    `prob` and `mask` (0/1) at the frame's size.

    Returns:
        {'format_converter': ..., 'inference': ..., 'llm4seg': what runs where, 'status'}; the two
        operator sections are the YAML sections a Holoscan app passes as `**self.kwargs(name)`.
    """
    manifest_path = Path(manifest_path)
    entries = read_entries(manifest_path.parent)  # checked and sealed entries, never parsed here
    if artifact not in entries:
        raise ConfigError(f"{artifact!r} is not in {manifest_path}", hint=f"choose one of {', '.join(entries) or '(none)'}")
    name = _any_size_graph(entries, artifact)
    if name is None:
        raise ConfigError(f"{artifact} has no any-size frames graph in {manifest_path}",
                          hint="re-export with this llm4seg version (frames graphs are written unless --no-frames)")
    entry = entries[name]
    spec = entry.input
    order = [2, 1, 0] if entry.input_color == "BGR" else [0, 1, 2]  # FormatConverterOp's output is RGB
    return {
        "format_converter": {"in_dtype": "rgba8888", "out_dtype": "rgb888", "out_channel_order": order,
                             "out_tensor_name": spec.name},
        "inference": {"backend": "trt", "model_path_map": {"llm4seg": str(manifest_path.parent / name)},
                      "pre_processor_map": {"llm4seg": [spec.name]},
                      "inference_map": {"llm4seg": [o.name for o in entry.outputs]},
                      "dynamic_input_dims": True, "enable_fp16": entry.precision == "fp16",
                      "input_on_cuda": True, "output_on_cuda": True, "transmit_on_cuda": True, "is_engine_path": False},
        "llm4seg": {"artifact": name, "source": entry.frames.source, "inside_the_graph": list(entry.frames.inside),
                    "input": f"uint8 (H, W, 3) {entry.input_color} frames of any size"},
        "status": "NOT RUN: generated from the manifest; FormatConverterOp and InferenceOp need a CUDA GPU",
    }


def _any_size_graph(entries: dict[str, ManifestEntry], artifact: str) -> str | None:
    """`artifact` if it is an any-size frames graph, else the any-size frames graph made from it."""
    def any_size(entry: ManifestEntry) -> bool:
        return entry.frames is not None and entry.frames.form == "any-size"

    if any_size(entries[artifact]):
        return artifact
    return next((n for n, e in entries.items() if any_size(e) and e.frames.source == artifact), None)


__all__ = ["inference_op_config"]
