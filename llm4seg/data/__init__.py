"""Datasets: folder datasets, the synthetic default, augmentation."""
