"""Model cost figures: parameters, multiply-accumulates and CPU forward latency."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    # FlopCounterMode has no formula for the CPU flash kernel; count QK^T and PV like any matmul.
    b, h, t, d = query_shape
    s, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * t * s * (d + dv)


_CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_macs(model: torch.nn.Module, image_size: int, in_channels: int = 3) -> int:
    """Multiply-accumulates of one batch-1 forward pass (convolutions, matmuls, attention)."""
    x = torch.zeros(1, in_channels, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


def forward_latency_ms(model: torch.nn.Module, image_size: int, batch: int = 1,
                       warmup: int = 3, iterations: int = 10, in_channels: int = 3) -> dict[str, float]:
    """Wall-clock forward latency percentiles (eager, no grad) on the current device."""
    x = torch.randn(batch, in_channels, image_size, image_size)
    model.eval()
    times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {"p50": statistics.median(times), "min": times[0], "max": times[-1], "mean": statistics.fmean(times)}


def model_report(model: Any, latency: bool = True, iterations: int = 10) -> dict[str, Any]:
    """Parameters, MACs, the LLM layer's source and (with `latency`) CPU forward latency of a model."""
    cfg = model.config
    report: dict[str, Any] = {
        "model": cfg.name,
        "image_size": cfg.image_size,
        "params": model.param_counts(),
        "macs": count_macs(model, cfg.image_size, cfg.in_channels),
        "llm": None,
    }
    if cfg.block is not None:
        spec = cfg.block.spec
        report["llm"] = {
            "source": cfg.block.source, "layer": cfg.block.layer, "init": cfg.block.init,
            "trainable": cfg.block.trainable, "arch": spec["arch"], "hidden_size": spec["hidden_size"],
            "num_hidden_layers": spec["num_hidden_layers"], "attention": cfg.block.attention,
            "positions": cfg.block.positions,
        }
    if latency:
        report["cpu_latency_ms"] = forward_latency_ms(model, cfg.image_size, iterations=iterations)
        report["torch_threads"] = torch.get_num_threads()
    return report
