"""Large batches through the GPU in chunks whose copies overlap compute (the torch backend's
`overlap_chunk` option; issue 10, item 4).

One call with batch 256 at 256x256 moves 201 MB in and 67 MB out. Done as one transfer each way,
the GPU idles while the host copies the frames into pinned memory and while the results come
back. In chunks: the CPU fills chunk k+1's slice of the pinned buffer while chunk k's DMA
(copy stream) and compute run, and chunk k's results come back on a second copy stream while
chunk k+1 computes; finished chunks are handed to the caller's array as soon as their copy is
done. GPU-only, and NOT RUN on a GPU yet: benchmarks/gpu/gpu_runtime.py times it beside the
single-transfer path when a device is lent.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pinned_pair(backend: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """The backend's pinned input/output buffers for this batch size (allocated once)."""
    torch, n = backend.torch, shape[0]
    if n not in backend._pinned:
        backend._pinned[n] = (torch.empty(shape, dtype=torch.float32).pin_memory(),
                              torch.empty((n, 1, *shape[2:]), dtype=torch.float32).pin_memory())
    return backend._pinned[n]


def infer_overlapped(backend: Any, image: np.ndarray, chunk: int) -> np.ndarray:
    """`image` (N, C, S, S) float32 on the host -> probabilities (N, 1, S, S) on the host."""
    torch, n = backend.torch, image.shape[0]
    host_in, host_out = pinned_pair(backend, image.shape)
    if getattr(backend, "_copy_streams", None) is None:
        backend._copy_streams = (torch.cuda.Stream(), torch.cuda.Stream())
    h2d, d2h = backend._copy_streams
    compute = torch.cuda.current_stream()
    result = np.empty((n, 1, *image.shape[2:]), np.float32)
    pending: list[tuple[Any, int, int]] = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        host_in[start:stop].numpy()[...] = image[start:stop]  # overlaps the previous chunk's DMA and compute
        with torch.cuda.stream(h2d):
            x = host_in[start:stop].to(backend.device, non_blocking=True)
        compute.wait_stream(h2d)
        x.record_stream(compute)  # allocated on the copy stream, read on the compute stream
        y = backend._run(x.contiguous(memory_format=backend.memory_format))
        if backend.cuda_graph:
            y = y.clone()  # the graph's output buffer is rewritten by the next chunk's replay
        d2h.wait_stream(compute)
        with torch.cuda.stream(d2h):
            host_out[start:stop].copy_(y, non_blocking=True)
            done = torch.cuda.Event()
            done.record(d2h)
        y.record_stream(d2h)  # keep its memory until the copy back has read it
        pending.append((done, start, stop))
        while pending and pending[0][0].query():  # hand out what is back while later chunks compute
            _, a, b = pending.pop(0)
            result[a:b] = host_out[a:b].numpy()
    for done, a, b in pending:
        done.synchronize()
        result[a:b] = host_out[a:b].numpy()
    return result
