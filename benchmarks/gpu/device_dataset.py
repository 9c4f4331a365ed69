"""A dataset folder, resized once, packed into one .npz that can travel to the lent GPU, and
unpacked there into a folder `llm4seg compare`/`train` read as they read the original.

../shared does not travel to the device machine (at most 64 MiB does). `pack` decodes every image
the split files name, resizes it exactly as training does (area for images, nearest for masks,
masks binarised with the dataset's detected encoding), and stores lossless PNG bytes plus the
split files; `unpack` writes images/, masks/ and splits/ back. Training on the unpacked folder
sees the same pixels as on the original (the resize to the same size is then the identity);
tests/benchmarks/test_device_dataset.py checks that.

Here:  python -m benchmarks.gpu.device_dataset pack --data ../shared/datasets/busi --size 256 --out .device_carry/busi_256.npz
There: python -m benchmarks.gpu.device_dataset unpack --npz .device_carry/busi_256.npz --out /tmp/busi_256
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from llm4seg.data.folder import read_pairs, read_split, scan_folder


def _encode(images: list[np.ndarray], jpeg_quality: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if jpeg_quality:
        blobs = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1].ravel() for im in images]
    else:
        blobs = [cv2.imencode(".png", im)[1].ravel() for im in images]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.concatenate(blobs), offsets


def _decode(blob: np.ndarray, offsets: np.ndarray, i: int, flags: int) -> np.ndarray:
    return cv2.imdecode(blob[offsets[i]:offsets[i + 1]], flags)


def pack(data: Path, size: int, out: Path, jpeg_quality: int | None = None) -> None:
    """Args:
        jpeg_quality: store the images as JPEG at this quality (masks stay lossless PNG), for
            colour sets too large as PNG (Kvasir-SEG at 256: about 100 MB); the pixels then differ
            from the original's resize by the JPEG error, which the pack's summary states."""
    split_files = sorted((data / "splits").glob("*.txt")) if (data / "splits").is_dir() else []
    splits = {p.stem: read_split(data, p.stem) for p in split_files}
    wanted = sorted({s for stems in splits.values() for s in stems}) or None
    scan = scan_folder(data)
    if wanted is not None:
        keep = set(wanted)
        scan.pairs = [p for p in scan.pairs if p.stem in keep]
    images, masks, stems, encoding = read_pairs(scan, skip_bad=False, root=data, resize_to=size)
    # One channel where R=G=B (most ultrasound), so the pack fits the device's 64 MiB.
    grey = [np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 0], im[..., 2]) for im in images]
    stored = [im[..., 0] if g else cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im, g in zip(images, grey)]
    image_blob, image_offsets = _encode(stored, jpeg_quality)
    mask_blob, mask_offsets = _encode([m.astype(np.uint8) * 255 for m in masks])
    names = np.array(list(splits), dtype=str)
    members = np.array(["\n".join(splits[n]) for n in names], dtype=str)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, stems=np.array(stems, dtype=str), image_blob=image_blob, image_offsets=image_offsets,
             mask_blob=mask_blob, mask_offsets=mask_offsets, split_names=names, split_members=members,
             size=size, encoding=str(encoding.describe()),
             image_codec=f"jpeg q{jpeg_quality}" if jpeg_quality else "png (lossless)")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(stems)} pairs at {size}x{size}, "
          f"splits {', '.join(map(str, names))}; images {'JPEG q%d' % jpeg_quality if jpeg_quality else 'lossless PNG'}; "
          f"masks: {encoding.describe()}")


def unpack(npz: Path, out: Path) -> None:
    data = np.load(npz, allow_pickle=False)
    for sub in ("images", "masks", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(data["stems"]):
        image = _decode(data["image_blob"], data["image_offsets"], i, cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / "images" / f"{stem}.png"), image)
        mask = _decode(data["mask_blob"], data["mask_offsets"], i, cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / "masks" / f"{stem}.png"), mask)
    for name, members in zip(data["split_names"], data["split_members"]):
        (out / "splits" / f"{name}.txt").write_text(str(members) + "\n")
    print(f"unpacked {len(data['stems'])} pairs into {out}")


def split_arrays(npz: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split straight from the pack, as training arrays: RGB uint8 (N, S, S, 3), bool masks (N, S, S)."""
    data = np.load(npz, allow_pickle=False)
    names = [str(n) for n in data["split_names"]]
    if split not in names:
        raise SystemExit(f"{npz} has no split {split!r} (it has {', '.join(names) or 'none'})")
    wanted = str(data["split_members"][names.index(split)]).split("\n")
    index = {str(stem): i for i, stem in enumerate(data["stems"])}
    images, masks = [], []
    for stem in wanted:
        i = index[stem]
        image = _decode(data["image_blob"], data["image_offsets"], i, cv2.IMREAD_UNCHANGED)
        images.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        masks.append(_decode(data["mask_blob"], data["mask_offsets"], i, cv2.IMREAD_UNCHANGED) > 0)
    return np.stack(images), np.stack(masks)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", required=True)
    p.add_argument("--jpeg-quality", type=int, default=None, help="images as JPEG (colour sets over 64 MiB as PNG)")
    u = sub.add_parser("unpack")
    u.add_argument("--npz", required=True)
    u.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "pack":
        pack(Path(args.data), args.size, Path(args.out), args.jpeg_quality)
    else:
        unpack(Path(args.npz), Path(args.out))


if __name__ == "__main__":
    main()
