"""DeepStream nvinfer: the `nvinfer` frames graph (float pixel values in, mean/std inside) and its
config, which GLib's key-file parser (the one nvinfer reads its config with) reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.manifest import load_manifest
from llm4seg.runtime.doors.deepstream import CONFIG_NAME, NVINFER_KEYS, nvinfer_properties
from llm4seg.runtime.core.segmenter import Segmenter


@pytest.fixture(scope="module")
def deepstream_export(trained_checkpoint, synthetic_folder, tmp_path_factory):
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("deepstream")
    opts = ExportOptions(out=out / "art", fp16=True, data=str(synthetic_folder), parity_images=4, deepstream=True,
                         min_agreement=0.95)
    export_checkpoint(trained_checkpoint, opts, log=lambda s: None)
    return out / "art"


def test_config_is_a_key_file_nvinfer_reads(deepstream_export):
    from tests.conftest import installed_or_skip

    installed_or_skip(lambda: __import__("gi").require_version("GLib", "2.0"), "GLib (PyGObject)",
                      "make setup installs PyGObject with GStreamer's packages")
    from gi.repository import GLib

    keyfile = GLib.KeyFile()
    assert keyfile.load_from_file(str(deepstream_export / CONFIG_NAME), GLib.KeyFileFlags.NONE)
    keys = keyfile.get_keys("property")[0]
    assert set(keys) <= set(NVINFER_KEYS) and "onnx-file" in keys
    graph = keyfile.get_string("property", "onnx-file")
    entry = json.loads((deepstream_export / "manifest.json").read_text())["artifacts"][graph]
    assert graph == "model.fp16.nvinfer64.onnx" and (deepstream_export / graph).is_file()
    assert keyfile.get_string("property", "infer-dims") == "3;64;64"
    assert keyfile.get_double("property", "net-scale-factor") == 1.0  # mean/std are inside the graph
    assert keyfile.get_string("property", "offsets") == "0.0;0.0;0.0"
    assert keyfile.get_double("property", "segmentation-threshold") == entry["threshold"]
    assert keyfile.get_integer("property", "network-mode") == 2 and entry["parity"]["n"] > 0


def test_nvinfer_graph_matches_the_segmenter_path(deepstream_export):
    """Pixel values at the model's size in (as nvinfer hands them after its resize), the Segmenter's
    probabilities out: the same contract, with the resize standing where nvinfer does it."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 64), (90, 50))]
    host = Segmenter(deepstream_export / "model.onnx", layout="bgr").segment(frames, binary=False)
    graph = Segmenter(deepstream_export / "model.nvinfer64.onnx", layout="bgr").segment(frames, binary=False)
    for h, g in zip(host, graph):
        assert np.abs(h - g).max() < 1e-4


def test_only_an_nvinfer_graph_gets_a_config(deepstream_export):
    entry = load_manifest(deepstream_export / "model.frames.onnx")
    with pytest.raises(ConfigError, match="not an nvinfer frames graph"):
        nvinfer_properties(entry)
