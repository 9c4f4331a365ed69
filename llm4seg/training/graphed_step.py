"""The training step as one replayable unit: forward, loss, backward and the SGD update.

On CUDA a step of these small models is launch-bound (33 ms of wall time for 13 ms of GPU work
measured on an H200), so `--step-mode graph` captures the whole step in a CUDA graph and replays
it: the batch is written into static input buffers (sampling and augmentation stay outside,
driven by the (seed, epoch) generator as in eager mode), the learning rate lives in a device
tensor, and SGD (momentum, weight decay, no dampening, as torch.optim.SGD) is applied with
foreach ops on the momentum buffers that the optimizer's state holds, so checkpoints and resume
are unchanged. The first steps run eagerly (the warm-up CUDA graphs need), then the step is
captured and replayed. On the CPU the same function runs eagerly: its numerics and the resume
protocol are tested there; the capture itself is GPU-only (benchmarks/gpu/gpu_train_busi.py, NOT RUN
yet on a GPU).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from llm4seg.training.losses import bce_dice_loss

WARMUP_STEPS = 3  # eager steps before capture (allocator and cuDNN settle on a side stream)


class GraphedStep:
    """Callable `(x, y, lr) -> loss tensor` that updates the model in place, replayed as a CUDA graph."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.SGD, batch_shape: tuple[int, ...],
                 mask_shape: tuple[int, ...], device: torch.device, amp: bool,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        group = optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1 or group.get("nesterov") or group.get("dampening", 0):
            raise ValueError("GraphedStep implements plain SGD with momentum and weight decay only")
        self.model, self.device, self.amp = model, device, amp
        self.params = [p for p in group["params"] if p.requires_grad]
        self.momentum, self.weight_decay = group["momentum"], group["weight_decay"]
        # The optimizer's state holds the buffers (zeros == torch's clone-on-first-step, exactly),
        # so save_state/restore_optimizer see the very tensors this step updates.
        self.buffers = []
        for p in self.params:
            buf = optimizer.state[p].get("momentum_buffer")
            if buf is None:
                buf = torch.zeros_like(p, memory_format=torch.preserve_format)
                optimizer.state[p]["momentum_buffer"] = buf
            self.buffers.append(buf)
        self.x = torch.zeros(batch_shape, device=device).contiguous(memory_format=memory_format)
        self.y = torch.zeros(mask_shape, device=device)
        self.lr = torch.zeros((), device=device)
        self.capture = device.type == "cuda"
        self.graph: Any = None
        self.loss: torch.Tensor | None = None
        self.steps = 0

    def _step(self) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and self.device.type == "cuda"):
            logits = self.model(self.x)
        loss = bce_dice_loss(logits, self.y)
        self.sgd_update(torch.autograd.grad(loss, self.params))
        return loss.detach()

    @torch.no_grad()
    def sgd_update(self, grads: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> None:
        """SGD with momentum and weight decay (torch.optim.SGD's rule), lr read from `self.lr`.

        lr stays a device tensor so a captured graph replays with each step's value; hence
        `p - buf * lr` in two roundings where torch's vectorised CPU kernel for `p.add_(buf,
        alpha=-lr)` fuses them into one multiply-add. The two agree to about one float32 ulp per
        step, and training, being chaotic, then amplifies that last bit (issue 19).
        """
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_mul_(self.buffers, self.momentum)
        torch._foreach_add_(self.buffers, grads)
        torch._foreach_sub_(self.params, torch._foreach_mul(self.buffers, self.lr))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        self.x.copy_(x)
        self.y.copy_(y)
        self.lr.fill_(lr)
        self.steps += 1
        if not self.capture or self.steps <= WARMUP_STEPS:
            if self.capture:  # warm-up on a side stream, as CUDA graph capture requires
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    loss = self._step()
                torch.cuda.current_stream().wait_stream(stream)
                return loss
            return self._step()
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self._step()
        self.graph.replay()
        return self.loss.clone()


def make_step(mode: str, trainer: Any) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None:
    """None for eager mode (the loop's own step), else a GraphedStep for the trainer's batch shapes."""
    if mode == "eager":
        return None
    cfg = trainer.cfg
    fmt = torch.channels_last if trainer.cuda and cfg.channels_last else torch.contiguous_format
    b, s = trainer.per_rank_batch, cfg.image_size
    return GraphedStep(trainer.model, trainer.optimizer, (b, trainer.model.config.in_channels, s, s), (b, 1, s, s),
                       trainer.device, cfg.amp, fmt)
