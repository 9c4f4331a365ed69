"""Pre-trained LLM decoder layers: their shapes (spec) and where their weights come from."""

from llm4seg.llm.spec import KNOWN_SHAPES, LayerSpec
from llm4seg.llm.sources import LayerWeights, load_layer, resolve_source

__all__ = ["KNOWN_SHAPES", "LayerSpec", "LayerWeights", "load_layer", "resolve_source"]
