"""The torch backend's compiled forms of `model.pt2`, each cached under a key (compile_cache.py).

- "aoti" (AOTInductor): the program, with FP16 autocast traced in where the backend runs half,
  compiled ahead of time into a package (a shared library plus weights). A warm start loads that
  package without tracing or compiling anything, or importing Inductor (benchmarks/RESULTS.md
  has the first-frame times against Inductor's warm cache).
- "inductor": torch.compile over the program (reduce-overhead, i.e. CUDA graphs, on GPUs); a warm
  start still traces the program and loads kernels from Inductor's on-disk cache.

Both fuse the elementwise adds, inference BatchNorm, upsampling and GELU the profile showed.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from llm4seg.errors import BackendUnavailableError
from llm4seg.fileio import atomic_path
from llm4seg.runtime.core.backends.compile_cache import compile_key, use_cache_dir

COMPILERS = ("aoti", "inductor")
PACKAGE_NAME = "model.aoti.pt2"


def without_dtype_asserts(torch: Any, module: Any) -> Any:
    """Drop the dtype/device assertions torch.export records on internal tensors: they pin the
    FP32 dtypes seen at export, and autocast changes those dtypes on purpose (without this, the
    program under FP16 autocast stops at its first RMSNorm with 'Tensor dtype mismatch')."""
    graph = module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten._assert_tensor_metadata.default:
            graph.erase_node(node)
    module.recompile()
    return module


def _under_autocast(torch: Any, module: Any, device_type: str, half: bool) -> Any:
    """The module traced for AOTInductor: the program under the backend's autocast, so the
    package holds the FP16 matmuls/convs with FP32 norms and softmax, as the eager path runs."""

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.program = module

        def forward(self, image):
            with torch.autocast(device_type, dtype=torch.float16, enabled=half):
                return self.program(image).float()

    return Traced()


def aoti_model(torch: Any, program_module: Callable[[], Any], sha256: str, device: Any, half: bool,
               batch: dict[str, int], in_shape: list[int]) -> tuple[Any, dict[str, Any]]:
    """The AOTInductor runner for the program, from the cache when its key matches, else compiled
    now (from `program_module()`, the program's module on `device`) and cached; returns (runner,
    info) with info['cache_hit'] and info['compile_s']. Inputs must be contiguous NCHW float32."""
    key = compile_key(torch, sha256, device, "fp16-autocast" if half else "fp32", batch, "nchw", compiler="aoti")
    folder = use_cache_dir(key)  # Inductor's build files for this key go beside the package
    package = folder / PACKAGE_NAME
    info = {"compiler": "aoti", "key": key, "package": str(package), "cache_hit": False, "compile_s": 0.0}
    runner = _load_cached(torch, package)
    if runner is None:
        # Several workers starting at once compile once: the others wait here, then load.
        with _compile_lock(folder):
            runner = _load_cached(torch, package)
            if runner is None:
                t = time.perf_counter()
                _compile_package(torch, program_module(), device, half, batch, in_shape, package)
                record_package_digest(package)
                info["compile_s"] = time.perf_counter() - t
                return load_package(torch, package), info
    info["cache_hit"] = True
    return runner, info


def _load_cached(torch: Any, package: Path) -> Any | None:
    """The cached package's runner, or None (then it is compiled anew). A package is a shared
    library whose constructors run as it loads, so nothing is loaded from a folder others can write,
    nor a package whose sha256 differs from the one recorded when it was compiled."""
    if not package.exists():
        return None
    refuse_writable_by_others(package.parent)
    if not package_digest_matches(package):
        package.unlink(missing_ok=True)
        return None
    try:
        return load_package(torch, package)
    except Exception:  # a package from a foreign or damaged build: compile a fresh one
        package.unlink(missing_ok=True)
        return None


def _digest_path(package: Path) -> Path:
    return package.with_name(package.name + ".sha256.json")


def record_package_digest(package: Path) -> None:
    """Write the freshly compiled package's sha256 beside it (atomically)."""
    from llm4seg.fileio import file_sha256, write_json_atomic

    write_json_atomic(_digest_path(package), {"sha256": file_sha256(package)})


def package_digest_matches(package: Path) -> bool:
    """True when the package's bytes are those recorded at compile time (no record: False)."""
    import json

    from llm4seg.fileio import file_sha256

    try:
        recorded = json.loads(_digest_path(package).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return recorded == file_sha256(package)


def refuse_writable_by_others(folder: Path) -> None:
    """Raise unless `folder` and the cache root above it belong to this user and only it can write them."""
    import os
    import stat

    from llm4seg.errors import ConfigError
    from llm4seg.runtime.core.backends.compile_cache import cache_root

    root = cache_root()
    for place in (folder, *[p for p in folder.parents if p == root or root in p.parents]):
        info = place.stat()
        others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
        if others_write or foreign:
            raise ConfigError(f"the compile cache folder {place} can be written by others "
                              f"(mode {stat.filemode(info.st_mode)}, owner uid {info.st_uid}): nothing is loaded from it",
                              hint=f"chmod go-w {place} (and own it), or point LLM4SEG_CACHE at a folder only you write")


def load_package(torch: Any, package: Path) -> Callable[[Any], Any]:
    """The package's runner, `image -> probabilities`. Straight through torch's C++ package loader
    where this torch has the known signature: torch._inductor.aoti_load_package would import
    Inductor first, about 3 s of a warm start on the development CPU (benchmarks/RESULTS.md)."""
    try:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(package), "model", False, 1, -1)
    except (AttributeError, TypeError):  # another torch's loader API: the public (slower) entry point
        return torch._inductor.aoti_load_package(str(package))

    def run(image: Any) -> Any:
        return loader.boxed_run([image])[0]

    return run


@contextmanager
def _compile_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the key's folder (released by the OS if its holder dies, so a killed
    compile never blocks the next one); no lock where fcntl is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / ".compile.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile_package(torch: Any, module: Any, device: Any, half: bool, batch: dict[str, int],
                     in_shape: list[int], package: Path) -> None:
    traced = _under_autocast(torch, module, device.type, half)
    example = torch.randn(2, *in_shape, device=device)  # batch 2 keeps the batch dimension dynamic
    dim = torch.export.Dim("batch", min=1, max=max(2, batch["max"]))
    try:
        program = torch.export.export(traced, (example,), dynamic_shapes={"image": {0: dim}})
        with atomic_path(package) as tmp:  # a killed compile never leaves a half package
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    except Exception as exc:  # export and Inductor raise many types; the message is what matters
        raise BackendUnavailableError(f"AOTInductor could not compile {package.parent} ({type(exc).__name__}: {exc})",
                                      hint="use compile='inductor' or compile=False, and report this") from exc


def inductor_model(torch: Any, module: Any, sha256: str, device: Any, half: bool, batch: dict[str, int],
                   layout: str) -> tuple[Any, dict[str, Any]]:
    """torch.compile over `module`, Inductor's kernels cached in the key's folder; compiles lazily
    at the first call of each batch size (a warm cache makes that a load)."""
    key = compile_key(torch, sha256, device, "fp16-autocast" if half else "fp32", batch, layout, compiler="inductor")
    folder = use_cache_dir(key)
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    info = {"compiler": "inductor", "key": key, "folder": str(folder), "mode": mode}
    return torch.compile(module, mode=mode, dynamic=False), info


def check_compiler(value: Any) -> str | None:
    """compile= option -> None (no compiling), 'aoti' or 'inductor'; True means 'aoti'."""
    if value is False or value is None or value == "none":
        return None
    if value is True:
        return "aoti"
    if value in COMPILERS:
        return value
    from llm4seg.errors import ConfigError

    raise ConfigError(f"compile={value!r} is not a torch backend compiler",
                      hint=f"use compile=False, True (= 'aoti'), {' or '.join(repr(c) for c in COMPILERS)}")


__all__ = ["COMPILERS", "aoti_model", "check_compiler", "inductor_model", "without_dtype_asserts"]
