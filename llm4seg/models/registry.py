"""String registry of model variants: `create_model(name, **overrides)`, `list_models()`.

A variant is a dict of arguments, not a subclass (timm's habit). Overrides may name any
ModelConfig field, any BlockConfig field (`llm` is an alias of `source`), or `size`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from llm4seg.errors import ConfigError
from llm4seg.llm.sources import check_layer_index, default_layer, load_layer, resolve_source
from llm4seg.models.cmunext import SIZES
from llm4seg.models.config import BlockConfig, ModelConfig
from llm4seg.models.net import LLM4SegNet

_VARIANTS: dict[str, dict[str, Any]] = {
    "cmunext": dict(block=None, doc="CMUNeXt baseline, no LLM layer"),
    "cmunext_s": dict(block=None, size="s", doc="CMUNeXt-S baseline"),
    "cmunext_l": dict(block=None, size="l", doc="CMUNeXt-L baseline"),
    "llm4seg": dict(doc="CMUNeXt + frozen pre-trained LLM layer (the paper's method)"),
    "llm4seg_t": dict(trainable=True, doc="CMUNeXt + trainable pre-trained LLM layer ('(T)')"),
    "llm4seg_random": dict(init="random", doc="CMUNeXt + frozen randomly initialised layer ('+Transformer')"),
    "llm4seg_random_t": dict(init="random", trainable=True, doc="CMUNeXt + trainable random layer"),
    "llm4seg_paper": dict(positions="paper", doc="the authors' released behaviour (single-frequency swapped sin/cos)"),
}

_BLOCK_KEYS = {f.name for f in fields(BlockConfig)} - {"spec"}
_MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"name", "block"}


def list_models() -> list[str]:
    """The names `create_model` takes, sorted."""
    return sorted(_VARIANTS)


def describe_models() -> dict[str, str]:
    """Model name -> one line saying what it is."""
    return {name: v["doc"] for name, v in sorted(_VARIANTS.items())}


def config_from_name(name: str, **overrides: Any) -> ModelConfig:
    """Resolve a variant name plus overrides into a ModelConfig (block spec not yet read)."""
    if name not in _VARIANTS:
        raise ConfigError(f"unknown model {name!r}", hint=f"available models: {', '.join(list_models())}")
    args = {k: v for k, v in _VARIANTS[name].items() if k != "doc"}
    args.update({("source" if k == "llm" else k): v for k, v in overrides.items() if v is not None})
    unknown = set(args) - _BLOCK_KEYS - _MODEL_KEYS - {"size", "block"}
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)} for model {name!r}",
            hint=f"valid options: {', '.join(sorted(_BLOCK_KEYS | _MODEL_KEYS | {'size', 'llm'}))}",
        )
    size = args.pop("size", "base")
    if size not in SIZES:
        raise ConfigError(f"size={size!r} is not valid", hint=f"choose one of {', '.join(SIZES)}")
    model_args = dict(SIZES[size])
    model_args.update({k: args[k] for k in _MODEL_KEYS if k in args})
    has_block = args.pop("block", True) is not None
    block = BlockConfig(**{k: args[k] for k in _BLOCK_KEYS if k in args}) if has_block else None
    if not has_block and set(args) & _BLOCK_KEYS:
        raise ConfigError(f"{name!r} has no LLM layer, so {sorted(set(args) & _BLOCK_KEYS)} do not apply",
                          hint="use an llm4seg* model to configure the LLM layer")
    cfg = ModelConfig(name=name, block=block, **model_args)
    cfg.validate()
    return cfg


def create_model(name: str, **overrides: Any) -> LLM4SegNet:
    """Build a model by name; a pre-trained layer is read from its source (offline by default)."""
    cfg = config_from_name(name, **overrides)
    weights = None
    if cfg.block is not None:
        b = cfg.block
        if b.init == "pretrained":
            weights = load_layer(b.source, b.layer)
            b.layer, spec = weights.layer, weights.spec
            b.source = weights.source
        else:
            spec = resolve_source(b.source).spec()
            b.layer = default_layer(spec) if b.layer is None else b.layer
            check_layer_index(b.layer, spec, b.source)
        b.spec = spec.to_dict()
    model = LLM4SegNet(cfg)
    if model.block is not None:
        if weights is not None:
            model.block.layer.load_state_dict(weights.tensors, strict=True)
        else:
            model.block.layer.reset_random()
    return model


def model_from_config(cfg: ModelConfig) -> LLM4SegNet:
    """An untrained skeleton from a resolved config (the checkpoint fills in the weights)."""
    if cfg.block is not None and cfg.block.spec is None:
        raise ConfigError("the model config has no resolved LLM layer spec", hint="build it with create_model")
    with torch.device("cpu"):
        return LLM4SegNet(cfg)
