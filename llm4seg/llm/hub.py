"""Read one decoder layer of a Hugging Face Hub model without downloading the whole model.

Order of preference: the layer cache of this project, the shard already in the HF cache,
then ranged reads of only the layer's bytes from the hub (saved to the layer cache).
HF_HUB_OFFLINE is honoured: offline, only the caches are read.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from llm4seg._optional import require
from llm4seg.errors import LLMSourceError
from llm4seg.fileio import MAX_SAFETENSORS_HEADER, atomic_path, tensor_extent_problem
from llm4seg.llm.hf_folder import INDEX_FILE, SINGLE_FILE, layer_keys, read_config
from llm4seg.llm.spec import LayerSpec

_ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


class HubClient(Protocol):
    """What HubSource needs from the hub; tests pass a local stand-in."""

    def download(self, filename: str) -> Path | None:
        """Local path of a small file (cached download); None when the repo has no such file."""

    def cached(self, filename: str) -> Path | None:
        """Local path if the file is already in the HF cache, else None."""

    def open(self, filename: str) -> BinaryIO:
        """A seekable binary stream over the remote file (ranged reads)."""


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network (cached files only)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def layer_cache_dir() -> Path:
    """Where single layers read from the Hub are cached ($LLM4SEG_CACHE, else $HF_HOME/llm4seg)."""
    base = os.environ.get("LLM4SEG_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "llm4seg"
    )
    return Path(base) / "layers"


class HuggingFaceClient:
    """HubClient over huggingface_hub: hf_hub_download for small files, HfFileSystem for ranges."""

    def __init__(self, repo_id: str, revision: str | None = None, token: str | None = None) -> None:
        self.repo_id, self.revision, self.token = repo_id, revision, token

    def download(self, filename: str) -> Path | None:
        """A file of the repository, downloaded or from the cache; None when the repository lacks it."""
        hub = require("huggingface_hub", "reading models from the Hugging Face Hub")
        errors = require("huggingface_hub.errors")
        try:
            return Path(hub.hf_hub_download(
                self.repo_id, filename, revision=self.revision, token=self.token,
                local_files_only=hub_offline(),
            ))
        except errors.GatedRepoError as exc:
            raise LLMSourceError(
                f"{self.repo_id} is a gated model and this machine has no access token for it",
                hint=f"accept its licence at https://huggingface.co/{self.repo_id}, then "
                "run `hf auth login` or set HF_TOKEN",
            ) from exc
        except errors.RepositoryNotFoundError as exc:
            raise LLMSourceError(
                f"hub repository {self.repo_id!r} was not found (or is private)",
                hint="check the id, or log in with `hf auth login` for a private model",
            ) from exc
        except errors.LocalEntryNotFoundError as exc:
            raise LLMSourceError(
                f"{filename} of {self.repo_id} is not in the HF cache and the hub is unreachable "
                f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})",
                hint="run once with network access (unset HF_HUB_OFFLINE), or pass a local folder",
            ) from exc
        except errors.EntryNotFoundError:
            return None

    def cached(self, filename: str) -> Path | None:
        """The cached copy of a file, or None (nothing is downloaded)."""
        hub = require("huggingface_hub")
        found = hub.try_to_load_from_cache(self.repo_id, filename, revision=self.revision)
        return Path(found) if isinstance(found, str) else None

    def open(self, filename: str) -> BinaryIO:
        """A remote file opened for ranged reads (one layer's bytes, not the whole shard)."""
        hub = require("huggingface_hub")
        fs = hub.HfFileSystem(token=self.token)
        rev = f"@{self.revision}" if self.revision else ""
        return fs.open(f"{self.repo_id}{rev}/{filename}", "rb", block_size=0)


def read_safetensors_header(stream: BinaryIO) -> tuple[dict[str, Any], int]:
    """(header, offset of the data) of a safetensors stream; a header length beyond what any real
    file has (a crafted or damaged shard) is refused before anything that large is read."""

    stream.seek(0)
    (length,) = struct.unpack("<Q", stream.read(8))
    if length > MAX_SAFETENSORS_HEADER:
        raise LLMSourceError(f"a safetensors shard claims a {length}-byte header (at most {MAX_SAFETENSORS_HEADER})",
                             hint="the shard is damaged or not a safetensors file; use an unaltered model")
    try:
        header = json.loads(stream.read(length))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LLMSourceError(f"a safetensors shard's header is not JSON ({exc})",
                             hint="the shard is damaged or not a safetensors file; use an unaltered model") from None
    return header, 8 + length


def tensors_from_ranges(stream: BinaryIO, keys: list[str], head: str) -> dict[str, Any]:
    """Read just the byte ranges of `keys` from a safetensors stream."""
    torch = require("torch")
    header, data_start = read_safetensors_header(stream)
    out: dict[str, Any] = {}
    for key in keys:
        meta = header[key]
        if meta["dtype"] not in _ST_DTYPES:
            raise LLMSourceError(f"tensor {key} has dtype {meta['dtype']}", hint="only float weights can be read")
        problem = tensor_extent_problem(key, meta)  # before a read of what the header claims
        if problem:
            raise LLMSourceError(f"a hub shard is not a valid safetensors file: {problem}",
                                 hint="the shard is damaged or crafted; use an unaltered model")
        begin, end = meta["data_offsets"]
        stream.seek(data_start + begin)
        raw = bytearray(stream.read(end - begin))
        dtype = getattr(torch, _ST_DTYPES[meta["dtype"]])
        out[key[len(head):]] = torch.frombuffer(raw, dtype=dtype).reshape(meta["shape"]).float()
    return out


class HubSource:
    """A decoder layer of a Hugging Face Hub model id: reads only that layer's byte ranges and
    caches it as safetensors.
    """

    def __init__(self, repo_id: str, revision: str | None = None, client: HubClient | None = None) -> None:
        self.repo_id, self.revision = repo_id, revision
        self.name = repo_id + (f"@{revision}" if revision else "")
        self.client = client or HuggingFaceClient(repo_id, revision, os.environ.get("HF_TOKEN"))
        self._spec: LayerSpec | None = None

    def spec(self) -> LayerSpec:
        """The layer's shapes from the repository's config.json (read once)."""
        if self._spec is None:
            path = self.client.download("config.json")
            if path is None:
                raise LLMSourceError(f"{self.name} has no config.json", hint="pass a transformers model id")
            self._spec = LayerSpec.from_hf_config(read_config(path))
        return self._spec

    def cache_path(self, layer: int) -> Path:
        """Where layer `layer` of this repository (and revision) is cached."""
        safe = self.name.replace("/", "--").replace("@", "--")
        return layer_cache_dir() / safe / f"layer{layer}.safetensors"

    def read_layer(self, layer: int) -> dict[str, Any]:
        """Decoder layer `layer`'s tensors: from the cache, else ranged reads of the shards, then cached."""
        cached = self.cache_path(layer)
        if cached.is_file():
            return _load_safetensors(cached)
        files = layer_keys(self._weight_map(), layer)
        if not files:
            raise LLMSourceError(f"{self.name} has no tensors model.layers.{layer}.*", hint="check the layer index")
        head = f"model.layers.{layer}."
        tensors: dict[str, Any] = {}
        for fname in sorted(set(files.values())):
            keys = [k for k, f in files.items() if f == fname]
            tensors.update(self._read_shard_keys(fname, keys, head))
        _save_safetensors_atomic(tensors, cached)
        return tensors

    def _weight_map(self) -> dict[str, str]:
        # A cached single file settles it without asking the hub (offline included).
        index = self.client.cached(INDEX_FILE)
        if index is None and self.client.cached(SINGLE_FILE) is None:
            index = self.client.download(INDEX_FILE)
        if index is not None:
            return read_config(index)["weight_map"]
        with self._open_any(SINGLE_FILE) as stream:
            header, _ = read_safetensors_header(stream)
        return {k: SINGLE_FILE for k in header if k != "__metadata__"}

    def _open_any(self, fname: str) -> BinaryIO:
        local = self.client.cached(fname)
        if local is not None:
            return open(local, "rb")
        if hub_offline():
            raise LLMSourceError(
                f"HF_HUB_OFFLINE is set and {fname} of {self.name} is not in the HF cache",
                hint="run once with network access, or pass a local folder with the model",
            )
        return self.client.open(fname)

    def _read_shard_keys(self, fname: str, keys: list[str], head: str) -> dict[str, Any]:
        with self._open_any(fname) as stream:
            return tensors_from_ranges(stream, keys, head)


def _load_safetensors(path: Path) -> dict[str, Any]:
    load_file = require("safetensors.torch").load_file
    return load_file(str(path))


def _save_safetensors_atomic(tensors: dict[str, Any], path: Path) -> None:
    save_file = require("safetensors.torch").save_file
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
