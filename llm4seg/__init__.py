"""llm4seg: LLM4Seg segmentation models from training to deployment.

Kept light on purpose: `import llm4seg.runtime` must not pull torch in, so the
model-side names below are loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "load_checkpoint", "save_checkpoint"]


def __getattr__(name: str):
    if name in ("create_model", "list_models"):
        from llm4seg.models import registry

        return getattr(registry, name)
    if name in ("load_checkpoint", "save_checkpoint"):
        from llm4seg import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'llm4seg' has no attribute {name!r}")
