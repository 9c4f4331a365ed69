"""Tooling of the time-boxed GPU runs (the lent H200): what travels there and what comes back.

- `gpu_session`: one device call running every GPU check in order of value, within its budget;
  `gpu_train_busi`, `gpu_runtime`, `gpu_profile`: its prepared checks.
- `gpu_compare_slot`: one slot of a comparison matrix, resumable across slots.
- `device_dataset`: the one packer of a dataset folder into a .npz that travels (and unpacks it).
- `checkpoint_transfer`: a checkpoint through the 16 MiB-per-file channel.
- `one_layer_folder`: one decoder layer of an LLM as a small HF folder to carry.

Run on the device from the repository root: `python3 -m benchmarks.gpu.gpu_session ...`.
"""
