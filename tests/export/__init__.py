

def split_folder(root, synthetic_folder, splits: dict[str, slice]):
    """A dataset folder linking the synthetic images and masks, with split files {name: stems slice}."""
    root.mkdir()
    for sub in ("images", "masks"):
        (root / sub).symlink_to(synthetic_folder / sub)
    stems = sorted(p.stem for p in (synthetic_folder / "images").iterdir())
    (root / "splits").mkdir()
    for name, part in splits.items():
        (root / "splits" / f"{name}.txt").write_text("\n".join(stems[part]) + "\n")
    return root
