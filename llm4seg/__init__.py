"""llm4seg: LLM4Seg segmentation models from training to deployment.

Kept light on purpose: `import llm4seg.runtime` must not pull torch in, so the
model-side names below are loaded on first use.
"""

from __future__ import annotations

from typing import Any, Callable

__version__ = "0.1.0"

# Annotations only (no values): the names resolve through __getattr__ on first use, and the API
# reference documents them here.
create_model: Callable[..., Any]
"""Build a model by registry name: `llm4seg.models.registry.create_model` (torch loaded on first use)."""
list_models: Callable[[], list[str]]
"""The names `create_model` takes: `llm4seg.models.registry.list_models`."""
load_checkpoint: Callable[..., Any]
"""Load a checkpoint folder (safetensors + JSON config): `llm4seg.checkpoint.load_checkpoint`."""
save_checkpoint: Callable[..., Any]
"""Save a model as a checkpoint folder: `llm4seg.checkpoint.save_checkpoint`."""

__all__ = ["__version__", "create_model", "list_models", "load_checkpoint", "save_checkpoint"]


def __getattr__(name: str):
    if name in ("create_model", "list_models"):
        from llm4seg.models import registry

        return getattr(registry, name)
    if name in ("load_checkpoint", "save_checkpoint"):
        from llm4seg import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'llm4seg' has no attribute {name!r}")
