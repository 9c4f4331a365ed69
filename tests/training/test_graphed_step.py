"""--step-mode graph: the whole step as one function (a CUDA graph on GPUs; eager here). Its SGD
matches torch.optim.SGD, and a killed run resumes bit-identical (issue 10, item 1: CPU part)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm4seg import fileio
from llm4seg.errors import ConfigError
from llm4seg.training.config import TrainConfig
from llm4seg.training.run import train


def cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), model="cmunext_s", image_size=32, epochs=3, batch_size=4, synthetic_count=20,
                device="cpu", seed=5, checkpoint_every_s=0.0)
    base.update(kw)
    return TrainConfig(**base)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def test_graph_step_follows_torch_sgd():
    """One step equals torch.optim.SGD up to the rounding of lr * buffer (torch fuses it into one
    multiply-add); such last-bit differences then grow, as in any chaotic training run."""
    import copy

    import llm4seg
    from llm4seg.training.graphed_step import GraphedStep
    from llm4seg.training.losses import bce_dice_loss

    torch.manual_seed(0)
    eager = llm4seg.create_model("cmunext_s", image_size=32).train()
    graphed = copy.deepcopy(eager)
    settings = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
    opt = torch.optim.SGD([p for p in eager.parameters() if p.requires_grad], **settings)
    step = GraphedStep(graphed, torch.optim.SGD([p for p in graphed.parameters() if p.requires_grad], **settings),
                       (4, 3, 32, 32), (4, 1, 32, 32), torch.device("cpu"), amp=False)
    for i, tolerance in enumerate((1e-7, 1e-6)):
        x, y = torch.randn(4, 3, 32, 32), torch.rand(4, 1, 32, 32) > 0.5
        loss = bce_dice_loss(eager(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert float(step(x, y, 0.01)) == pytest.approx(float(loss.detach()), rel=1e-6)
        worst = max(float((a - b).detach().abs().max()) for a, b in zip(eager.parameters(), graphed.parameters()))
        assert worst < tolerance, (i, worst)


def test_graph_mode_training_curve_matches_eager(tmp_path):
    import json

    train(cfg(tmp_path / "eager"))
    train(cfg(tmp_path / "graph", step_mode="graph"))
    curve = lambda run: [json.loads(r)["train_loss"] for r in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    eager, graph = curve(tmp_path / "eager"), curve(tmp_path / "graph")
    assert eager[0] == pytest.approx(graph[0], rel=1e-6)
    assert eager == pytest.approx(graph, rel=0.01)


class Killed(BaseException):
    pass


def killed_after_first_save_then_resumed(config: TrainConfig) -> Path:
    """Run `config`, killed just after its first state save, then resumed to the end; its folder."""
    seen = {"n": 0}

    def kill_after_first_save(label):
        if label == "replaced CURRENT":
            seen["n"] += 1
            if seen["n"] == 1:
                raise Killed(label)

    fileio.FAULT_HOOK = kill_after_first_save
    try:
        with pytest.raises(Killed):
            train(config)
    finally:
        fileio.FAULT_HOOK = None
    train(TrainConfig(out=config.out), resume=True)
    return Path(config.out)


def test_graph_mode_resume_is_bit_identical(tmp_path):
    train(cfg(tmp_path / "full", step_mode="graph"))
    killed = killed_after_first_save_then_resumed(cfg(tmp_path / "killed", step_mode="graph"))
    a, b = weights(tmp_path / "full"), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_graph_mode_refuses_compile(tmp_path):
    with pytest.raises(ConfigError, match="step_mode"):
        train(cfg(tmp_path / "r", step_mode="graph", compile=True))
