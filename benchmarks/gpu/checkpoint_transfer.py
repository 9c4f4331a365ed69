"""Move a checkpoint with a regenerable frozen layer through a size-limited channel.

The device tool brings back at most 16 MiB per file, and a LLaMA-1B-shaped checkpoint is
about 260 MB, almost all of it the frozen *random* layer (`init: random`), which the same
seed rebuilds bit for bit. `pack` keeps only the trained tensors (split into small files) and
config.json; `unpack` rebuilds the model from the config and seed, loads the trained tensors,
and refuses unless the rebuilt frozen layer's sha256 equals the one recorded at save time.

  python -m benchmarks.gpu.checkpoint_transfer pack CKPT DIR
  python -m benchmarks.gpu.checkpoint_transfer unpack DIR CKPT_OUT --seed 0
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llm4seg.checkpoint import CONFIG_FILE, load_checkpoint, save_checkpoint, tensors_sha256
from llm4seg.models.registry import create_model

PART_BYTES = 12 * 2**20


def pack(ckpt: Path, out: Path) -> None:
    model = load_checkpoint(ckpt)
    frozen = set(model.frozen_state_dict())
    trained = {k: v.contiguous() for k, v in model.state_dict().items() if k not in frozen}
    out.mkdir(parents=True, exist_ok=True)
    parts, size, index = [{}], 0, 0
    for name in sorted(trained):
        nbytes = trained[name].numel() * trained[name].element_size()
        if parts[-1] and size + nbytes > PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][name] = trained[name]
        size += nbytes
    for index, part in enumerate(parts):
        save_file(part, str(out / f"trained_{index}.safetensors"))
    shutil.copyfile(ckpt / CONFIG_FILE, out / CONFIG_FILE)
    print(f"packed {len(trained)} trained tensors into {len(parts)} files; left out {len(frozen)} frozen tensors")


def unpack(packed: Path, out: Path, seed: int) -> None:
    config = json.loads((packed / CONFIG_FILE).read_text())
    llm = config["llm"]
    if llm is None or llm["init"] != "random":
        raise SystemExit("only checkpoints whose frozen layer is random (init: random) can be rebuilt from a seed")
    model_cfg = config["model"]
    # Every recorded option: the CNN's shape decides how many draws precede the layer's init.
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in model_cfg.items() if k not in ("name", "block")}
    options.update({k: v for k, v in model_cfg["block"].items() if k != "spec"})
    torch.manual_seed(seed)  # the same order of draws as training's model creation
    model = create_model(model_cfg["name"], **options)
    if tensors_sha256(model.frozen_state_dict()) != config["frozen_sha256"]:
        raise SystemExit("the rebuilt frozen layer differs from the recorded one (different seed or torch RNG)")
    state = {}
    for part in sorted(packed.glob("trained_*.safetensors")):
        state.update(load_file(str(part)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != set(model.frozen_state_dict()):
        raise SystemExit(f"tensor names do not match: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    save_checkpoint(model, out, extra=config.get("extra"))
    print(f"rebuilt {out} (frozen layer sha256 verified)")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("ckpt", type=Path)
    a.add_argument("out", type=Path)
    b = sub.add_parser("unpack")
    b.add_argument("packed", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    pack(args.ckpt, args.out) if args.cmd == "pack" else unpack(args.packed, args.out, args.seed)


if __name__ == "__main__":
    main()
