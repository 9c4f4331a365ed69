"""A DeepStream `nvinfer` configuration for an export's `nvinfer` frames graph.

nvinfer resizes each frame to the network's input size on its own scaler and hands the network
`net-scale-factor * (pixel - offsets)` as float NCHW. The `nvinfer` frames graph
(`model[.fp16|.int8].nvinfer<S>.onnx`, export --deepstream) takes those pixel values (0-255) and
applies the model's per-channel mean/std inside, which nvinfer's one scale factor cannot, so the
config sets net-scale-factor=1 and offsets 0: nothing of the normalisation is left to the user.
What nvinfer does its own way: the resize (scaling-filter=1, bilinear, written here; the frame
contract shrinks with the area rule, so frames much larger than the model differ slightly: the
any-size frames graph is the exact path). The config asks for nvinfer's segmentation output
(network-type=2) with segmentation-threshold at the model's threshold, and for the raw `prob` and
`mask` tensors (output-tensor-meta=1); how nvinfer applies the threshold to a one-channel output is
NOT verified here.

NOT RUN here (DeepStream needs an NVIDIA GPU); the file is a GLib key file, the format nvinfer
reads with g_key_file, and the tests parse it with GLib's own parser.
"""

from __future__ import annotations

from pathlib import Path
from llm4seg.errors import ConfigError
from llm4seg.runtime.core.manifest import ManifestEntry, read_entries

CONFIG_NAME = "deepstream_nvinfer.txt"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode values
COLOR_FORMAT = {"RGB": 0, "BGR": 1}  # nvinfer's model-color-format values
# The [property] keys written here, each one of nvinfer's documented keys (gstnvinfer_property_parser.h).
NVINFER_KEYS = ("gpu-id", "gie-unique-id", "process-mode", "onnx-file", "batch-size", "network-mode",
                "net-scale-factor", "offsets", "model-color-format", "infer-dims", "network-input-order",
                "network-type", "segmentation-threshold", "output-blob-names", "output-tensor-meta",
                "maintain-aspect-ratio", "scaling-filter")


def nvinfer_properties(entry: ManifestEntry) -> dict[str, str]:
    """The [property] values for an `nvinfer` frames graph's manifest entry."""
    form = entry.frames.form if entry.frames else None
    if form != "nvinfer":
        raise ConfigError(f"{entry.artifact} is not an nvinfer frames graph (form {form!r})",
                          hint="export with --deepstream and pass ART/model.fp16.nvinfer<S>.onnx (or .nvinfer<S>.onnx)")
    _, channels, height, width = entry.input.shape
    return {"gpu-id": "0", "gie-unique-id": "1", "process-mode": "1", "onnx-file": entry.artifact,
            "batch-size": str(entry.max_batch), "network-mode": str(NETWORK_MODE[entry.precision]),
            "net-scale-factor": "1.0", "offsets": ";".join(["0.0"] * channels),
            "model-color-format": str(COLOR_FORMAT[entry.input_color]),
            "infer-dims": f"{channels};{height};{width}", "network-input-order": "0", "network-type": "2",
            "segmentation-threshold": repr(entry.threshold), "output-blob-names": "prob",
            "output-tensor-meta": "1", "maintain-aspect-ratio": "0", "scaling-filter": "1"}


def nvinfer_config(entry: ManifestEntry) -> str:
    """The text of a GLib key file nvinfer reads (`config-file-path`), for the entry's artifact."""
    lines = ["# nvinfer configuration written by llm4seg from manifest.json (NOT RUN: needs an NVIDIA GPU).",
             f"# {entry.artifact}: float32 NCHW pixel values 0-255 in, mean/std inside the graph;",
             "# prob (probabilities) and mask (0/1) out at the model's size; nvinfer resizes frames itself.",
             "[property]", *(f"{k}={v}" for k, v in nvinfer_properties(entry).items())]
    return "\n".join(lines) + "\n"


def write_nvinfer_config(folder: str | Path, artifact: str | None = None) -> Path:
    """Write CONFIG_NAME into an export folder for its nvinfer graph (`artifact`, default the FP16 one,
    else the FP32 one); onnx-file is relative to the config, as nvinfer resolves it."""
    folder = Path(folder)
    entries = read_entries(folder)
    graphs = [n for n, e in entries.items() if e.frames is not None and e.frames.form == "nvinfer"]
    if artifact is None:
        artifact = next((n for n in graphs if entries[n].precision == "fp16"), graphs[0] if graphs else None)
    if artifact not in entries:
        raise ConfigError(f"{folder} has no nvinfer frames graph {artifact!r} (it has {graphs or 'none'})",
                          hint="re-export with --deepstream")
    path = folder / CONFIG_NAME
    path.write_text(nvinfer_config(entries[artifact]))
    return path


__all__ = ["CONFIG_NAME", "NVINFER_KEYS", "nvinfer_config", "nvinfer_properties", "write_nvinfer_config"]
