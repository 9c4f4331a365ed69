"""Fold exactness: the folded LLM block and the BN-folded CNN equal the model they came from."""

from __future__ import annotations

import copy

import pytest
import torch

import llm4seg
from llm4seg.export.deploy import DeployNet
from llm4seg.export.fold_llm import FoldedLLMBlock
from llm4seg.profile import count_macs


def randomise_batchnorm(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return model.eval()


def block_with_random_adapters(source, **kw):
    torch.manual_seed(0)
    model = llm4seg.create_model("llm4seg", llm=source, image_size=64, **kw)
    block = model.block
    with torch.no_grad():  # make the adapters and gains matter, as after training
        block.adapter_in.bias.normal_(0, 0.5)
        block.adapter_out.bias.normal_(0, 0.5)
        block.layer.self_attn.q_proj.weight.mul_(10)
    return block.eval()


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("native_ops", [False, True], ids=["decomposed", "native"])
def test_folded_block_float64_and_float32(fixture, attention, fold, native_ops, request):
    source = str(request.getfixturevalue(fixture)[0])
    block = block_with_random_adapters(source, attention=attention)
    x = torch.randn(2, block.adapter_in.in_features, 4, 4, generator=torch.Generator().manual_seed(1))
    ref64 = copy.deepcopy(block).double()
    with torch.no_grad():
        expected64 = ref64(x.double())
        got64 = FoldedLLMBlock(block, dtype=torch.float64, fold=fold, native_ops=native_ops)(x.double())
        got32 = FoldedLLMBlock(block, fold=fold, native_ops=native_ops)(x)
    scale = expected64.abs().max()
    assert (got64 - expected64).abs().max() / scale < 1e-12
    assert (got32.double() - expected64).abs().max() / scale < 1e-5


def test_real_smollm2_block_fold(smollm2_layer):
    torch.manual_seed(0)
    model = llm4seg.create_model("llm4seg", llm="smollm2", layer=27, image_size=64).eval()
    x = torch.randn(2, 256, 4, 4)
    with torch.no_grad():
        expected = copy.deepcopy(model.block).double()(x.double())
        got = FoldedLLMBlock(model.block, dtype=torch.float64)(x.double())
    assert (got - expected).abs().max() / expected.abs().max() < 1e-12


def test_bn_fold_and_deploy_net_equal_model(tiny_llama):
    torch.manual_seed(0)
    model = randomise_batchnorm(llm4seg.create_model("llm4seg", llm=str(tiny_llama[0]), image_size=64))
    net = DeployNet(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.sigmoid(model(x))
        got = net(x)
    assert (got - expected).abs().max() < 1e-5
    assert net.report.bn_folded == 26 and net.report.bn_kept == 17
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 17


def test_fold_removes_a_third_of_the_llama1b_llm_stage():
    model = llm4seg.create_model("llm4seg_random", llm="shape:llama-3.2-1b")
    cnn = count_macs(llm4seg.create_model("cmunext"), 256)
    before = count_macs(model, 256) - cnn
    after = count_macs(DeployNet(model), 256) - cnn
    assert round(before / 1e9, 1) == 16.1  # 15.84 G of linear layers + 0.27 G of attention
    assert 0.30 < 1 - after / before < 0.36
