"""Pack one BUSI split (decoded, resized) into a small .npz that travels to the lent GPU.

../shared does not travel to the device machine; this file does (carry it in an ignored folder).
BUSI's pixels are grey (R=G=B), so one channel is stored: ~45 MB for split 1 at 256x256.

Run: python benchmarks/prepare_device_data.py --split 1 --out .device_carry/busi1_256.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llm4seg.data.datasets import load_dataset

SHARED_BUSI = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "busi"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--data", default=str(SHARED_BUSI))
    parser.add_argument("--out", default=".device_carry/busi1_256.npz")
    args = parser.parse_args()
    train = load_dataset(args.data, f"train{args.split}", args.size)
    val = load_dataset(args.data, f"val{args.split}", args.size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, train_images=train.images[..., 0], train_masks=train.masks,
                        val_images=val.images[..., 0], val_masks=val.masks)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(train)} train, {len(val)} val")


if __name__ == "__main__":
    main()
