"""Where the torch backend's compiled forms live: one folder per key.

The key is built like the TensorRT engine key: the artifact's sha256, the compiler (AOTInductor
or Inductor), the torch and triton versions, the device (GPU name and compute capability, or the
CPU), the precision, the batch range and the input layout. A compiled form is only reused under
the same key, and a folder per key can be inspected or deleted on its own. Default root:
$LLM4SEG_CACHE/compiled, else ~/.cache/llm4seg/compiled.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from llm4seg.fileio import write_json_atomic


def compile_key(torch: Any, sha256: str, device: Any, precision: str, batch: dict[str, int], layout: str,
                compiler: str = "inductor") -> dict[str, Any]:
    """The cache key of one compiled form; `digest` names its folder."""
    try:
        import triton  # noqa: PLC0415  (optional: only CUDA builds ship it)

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = f"{props.name} (sm {props.major}.{props.minor})"
    else:
        where = f"cpu {platform.machine()}"
    key = {"artifact_sha256": sha256, "compiler": compiler, "torch": torch.__version__, "triton": triton_version,
           "device": where, "precision": precision, "batch": [batch["min"], batch["max"]], "layout": layout}
    key["digest"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return key


def cache_root() -> Path:
    """The folder compiled programs are cached under ($LLM4SEG_CACHE/compiled, else ~/.cache/llm4seg/compiled)."""
    base = os.environ.get("LLM4SEG_CACHE")
    return Path(base) / "compiled" if base else Path.home() / ".cache" / "llm4seg" / "compiled"


def key_folder(key: dict[str, Any]) -> Path:
    """This key's folder, created, with the key recorded beside the compiled form."""
    folder = cache_root() / key["digest"]
    if not (folder / "key.json").is_file():  # the digest names the key: written once, not per load
        write_json_atomic(folder / "key.json", key)
    return folder


def use_cache_dir(key: dict[str, Any]) -> Path:
    """Point Inductor at this key's folder (process-wide: Inductor reads the variable when it
    compiles) and return the folder."""
    folder = key_folder(key)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
