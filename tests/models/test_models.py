"""Every registered model: forward, backward, freezing, positions, attention and the registry."""

from __future__ import annotations

import pytest
import torch

import llm4seg
from llm4seg.errors import ConfigError
from llm4seg.models.registry import config_from_name
from llm4seg.models.rope import rope_tables


@pytest.fixture(scope="module")
def tiny_source(tiny_llama):
    return str(tiny_llama[0])


def build(name, tiny_source, **kw):
    torch.manual_seed(0)
    overrides = {} if name.startswith("cmunext") else {"llm": tiny_source}
    return llm4seg.create_model(name, image_size=64, **overrides, **kw)


@pytest.mark.parametrize("name", llm4seg.list_models())
def test_forward_backward_and_freezing(name, tiny_source):
    model = build(name, tiny_source).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    cfg = model.config
    if model.block is not None:
        layer_grads = [p.grad for p in model.block.layer.parameters()]
        if cfg.block.trainable:
            assert all(g is not None for g in layer_grads)
        else:
            assert all(g is None for g in layer_grads) and all(not p.requires_grad for p in model.block.layer.parameters())
        assert model.block.adapter_in.weight.grad is not None
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_frozen_layer_keeps_batchnorm_training(tiny_source):
    model = build("llm4seg", tiny_source).train()
    bn = model.encoder.stem[1]
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, bn.running_mean), "BatchNorm statistics must still update"


def test_paper_parameter_count():
    model = llm4seg.create_model("cmunext")
    assert model.param_counts()["total"] == 3_149_185
    assert llm4seg.create_model("cmunext_s").param_counts()["total"] < 3_149_185
    assert llm4seg.create_model("cmunext_l").param_counts()["total"] > 3_149_185


def test_llama1b_shaped_block_counts():
    model = llm4seg.create_model("llm4seg_random", llm="shape:llama-3.2-1b")
    counts = model.param_counts()
    assert counts["frozen"] == 60_821_504
    assert counts["trainable"] == 3_149_185 + 256 * 2048 + 2048 + 2048 * 256 + 256
    assert model.config.block.spec["hidden_size"] == 2048 and model.config.block.layer == 14


def test_random_init_differs_from_pretrained(tiny_source):
    pre = build("llm4seg", tiny_source)
    rnd = build("llm4seg_random", tiny_source)
    a = pre.block.layer.self_attn.q_proj.weight
    b = rnd.block.layer.self_attn.q_proj.weight
    assert a.shape == b.shape and not torch.equal(a, b)
    assert torch.equal(rnd.block.layer.input_layernorm.weight, torch.ones_like(rnd.block.layer.input_layernorm.weight))


def test_causal_vs_bidirectional(tiny_source):
    causal = build("llm4seg", tiny_source).eval()
    bidir = build("llm4seg", tiny_source, attention="bidirectional").eval()
    tokens = torch.randn(1, 16, causal.block.spec.hidden_size)
    cos, sin = causal.block.rope_cos, causal.block.rope_sin
    changed = tokens.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        c0, c1 = causal.block.layer(tokens, cos, sin, True), causal.block.layer(changed, cos, sin, True)
        b0, b1 = bidir.block.layer(tokens, cos, sin, False), bidir.block.layer(changed, cos, sin, False)
    # Causal: changing the last token leaves every earlier token untouched.
    assert torch.equal(c0[:, :-1], c1[:, :-1])
    assert not torch.allclose(b0[:, 0], b1[:, 0])


def test_position_modes(tiny_source):
    spec = build("llm4seg", tiny_source).block.spec
    cos, sin = rope_tables(spec, 4, 4, "paper")
    pos = torch.arange(16.0)
    # The authors' swap: the table read as cos holds sin(p), one frequency for all dims.
    assert torch.allclose(cos[:, 0], torch.sin(pos)) and torch.allclose(sin[:, 5], torch.cos(pos))
    cos2, _ = rope_tables(spec, 4, 4, "rope2d")
    half = spec.head_dim // 4
    # Row frequencies depend only on the row, column frequencies only on the column.
    assert torch.equal(cos2[0, :half], cos2[3, :half]) and not torch.equal(cos2[0, :half], cos2[4, :half])
    assert torch.equal(cos2[0, half:2 * half], cos2[4, half:2 * half])
    cos0, sin0 = rope_tables(spec, 4, 4, "none")
    assert torch.all(cos0 == 1) and torch.all(sin0 == 0)
    layer = build("llm4seg", tiny_source).block.layer.eval()
    with torch.no_grad():  # sharpen attention, which is near uniform at the tiny model's init scale
        layer.self_attn.q_proj.weight.mul_(30)
    tokens = 3 * torch.randn(1, 16, spec.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = [layer(tokens, *rope_tables(spec, 4, 4, m)) for m in ("rope1d", "rope2d", "none", "paper")]
    for i in range(4):
        for j in range(i):
            assert (outs[i] - outs[j]).abs().max() > 1e-3, (i, j)


def test_registry_errors_name_choices():
    with pytest.raises(ConfigError, match="unknown model 'unet'") as info:
        llm4seg.create_model("unet")
    assert "llm4seg_t" in info.value.hint
    with pytest.raises(ConfigError, match="positions='sideways'"):
        config_from_name("llm4seg", positions="sideways")
    with pytest.raises(ConfigError, match="unknown option"):
        config_from_name("llm4seg", colour="red")
    with pytest.raises(ConfigError, match="no LLM layer"):
        config_from_name("cmunext", layer=3)
    with pytest.raises(ConfigError, match="multiple of 16"):
        config_from_name("cmunext", image_size=100)


def test_other_image_sizes_recompute_positions(tiny_source):
    model = build("llm4seg", tiny_source).eval()
    assert model(torch.randn(1, 3, 96, 128)).shape == (1, 1, 96, 128)
