"""The embedded SmolLM2 GGUF layer equals what transformers' own GGUF loader produces."""

from __future__ import annotations

import pytest
import torch

from llm4seg.llm.gguf_source import embedded_smollm2_path, unpermute_qk


@pytest.fixture(scope="session")
def smollm2_transformers():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    path = embedded_smollm2_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, torch_dtype=torch.float32
    )
    return model.eval()


def test_spec_from_gguf(smollm2_layer):
    spec = smollm2_layer.spec
    assert (spec.arch, spec.hidden_size, spec.intermediate_size) == ("llama", 576, 1536)
    assert (spec.num_attention_heads, spec.num_key_value_heads, spec.num_hidden_layers) == (9, 3, 30)
    assert spec.rope_theta == 100000.0


@pytest.mark.slow
def test_gguf_layer_equals_transformers_loader(smollm2_layer, smollm2_transformers):
    expected = smollm2_transformers.model.layers[27].state_dict()
    assert set(smollm2_layer.tensors) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(smollm2_layer.tensors[name], tensor.float()), name


@pytest.mark.slow
def test_gguf_layer_runs_like_in_its_llm(smollm2_layer, smollm2_transformers):
    from tests.llm.test_sources import assert_layer_runs_like_llm

    assert_layer_runs_like_llm(smollm2_transformers, smollm2_layer.spec, smollm2_layer.tensors, 27, tokens=32)


def test_unpermute_inverts_llama_cpp_permutation():
    n_head, head_dim, d_in = 3, 8, 5
    w = torch.randn(n_head * head_dim, d_in).numpy()
    # llama.cpp's converter: interleave the two rotary halves of each head.
    permuted = w.reshape(n_head, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(w.shape)
    assert (unpermute_qk(permuted, n_head) == w).all()
    assert not (permuted == w).all()


def test_a_gguf_whose_tensor_claims_more_than_the_file_is_refused(tmp_path):
    """Issue 20: a crafted GGUF (a tensor declaring far more data than the file holds) is an error,
    not an allocation or a traceback."""
    import gguf
    import numpy as np

    from llm4seg.errors import LLMSourceError
    from llm4seg.llm.gguf_source import GGUFSource

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.ffn_down.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = bytearray(path.read_bytes())
    name = b"blk.0.ffn_down.weight"
    at = data.find(name) + len(name)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    assert n_dims == 2
    data[at + 4:at + 12] = (1 << 40).to_bytes(8, "little")  # the first dimension: 2^40 elements
    path.write_bytes(bytes(data))
    with pytest.raises(LLMSourceError):
        GGUFSource(path).read_layer(0)
