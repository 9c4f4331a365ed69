"""The backend interface every runtime backend implements (Polygraphy's lifecycle).

Construct cheaply, `load()` (or enter the context), `infer(image)` any number of times,
`close()`. Public methods validate; subclasses implement `_load`, `_infer`, `_close`.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from llm4seg.errors import BackendUnavailableError, InputSpecError
from llm4seg.runtime.core.entry import ManifestEntry
from llm4seg.runtime.core.manifest import load_manifest, verify_artifact


CLOSE_WAIT_S = 60.0  # how long close() waits for calls in flight


class Backend:
    """One artifact behind the common lifecycle: construct (cheap), `load()` or enter, `infer()` any
    number of times, from any number of threads, `close()`.

    Thread contract: the first `infer()` loads lazily, once, however many threads call it at once;
    `close()` waits for the calls in flight, and a call after `close()` raises instead of silently
    loading again (call `load()` to reopen). Backends whose state is shared between calls (the
    torch backend's buffers and CUDA graphs) set `serialize_infer` and run one call at a time.
    Output arrays belong to the caller (never reused by a later call).
    """

    name = "base"
    serialize_infer = False
    kind = "tensor"  # what infer() takes: the artifact's own tensors; a served `segment` says "frames"

    def __init__(self, artifact: Path | str, manifest: ManifestEntry | dict[str, Any] | None = None) -> None:
        self.artifact = Path(artifact)
        if isinstance(manifest, ManifestEntry):
            self.entry = manifest
        else:  # an entry a program hands over (the export's gates, a served model's config): checked, not sealed
            self.entry = ManifestEntry.from_dict(manifest, self.artifact, digest=False) if manifest \
                else load_manifest(self.artifact)
        self.loaded = False
        self.closed = False
        self._state = threading.Condition(threading.RLock())
        self._in_flight = 0
        self._infer_lock = threading.Lock()
        self._first_checked = False

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> "Backend":
        """Load the artifact (its sha256 checked first); a no-op when loaded; reopens after close()."""
        with self._state:
            if not self.loaded:
                self._verify()
                self._load()
                self._first_checked = False
                self.loaded, self.closed = True, False
        return self

    def close(self) -> None:
        """Wait for the calls in flight, then release the artifact; later calls raise until load()."""
        with self._state:
            self.closed = True
            # Bounded: a call stuck in a driver must not hang shutdown (the release then goes ahead).
            self._state.wait_for(lambda: self._in_flight == 0, timeout=CLOSE_WAIT_S)
            if self.loaded:
                self._close()
                self.loaded = False

    def __enter__(self) -> "Backend":
        return self.load()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- I/O -------------------------------------------------------------------------------
    def input_spec(self) -> dict[str, Any]:
        """{'name', 'dtype', 'shape': [batch-range, C, S, S], 'batch': (min, max)}"""
        spec = self.entry.input
        return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape),
                "batch": (self.entry.batch[0], self.entry.batch[2])}

    def validate(self, image: np.ndarray) -> np.ndarray:
        """The input as a contiguous array, or an InputSpecError naming the name, shape, dtype or batch
        that differs from the manifest's input spec (and how to fix it)."""
        spec = self.input_spec()
        expected = f"(N, {', '.join(str(d) for d in spec['shape'][1:])}) {spec['dtype']}, {spec['batch'][0]} <= N <= {spec['batch'][1]}"
        if not isinstance(image, np.ndarray):
            raise InputSpecError(f"input '{spec['name']}' must be a numpy array, got {type(image).__name__}",
                                 hint=f"pass an array of shape {expected}")
        if image.dtype != np.dtype(spec["dtype"]):
            raise InputSpecError(f"input '{spec['name']}' has dtype {image.dtype}, expected {spec['dtype']}",
                                 hint=f"convert with .astype(np.{spec['dtype']}); Segmenter does this for frames")
        # A named dimension (a frames graph's 'height', 'width') takes any size of at least 1.
        if image.ndim != 4 or not all(d >= 1 if isinstance(want, str) else d == want
                                      for d, want in zip(image.shape[1:], spec["shape"][1:])):
            raise InputSpecError(f"input '{spec['name']}' has shape {tuple(image.shape)}, expected {expected}",
                                 hint="resize and normalise frames with llm4seg.runtime.Segmenter")
        lo, hi = spec["batch"]
        if not lo <= image.shape[0] <= hi:
            raise InputSpecError(f"input '{spec['name']}' has batch {image.shape[0]}, this artifact accepts {lo} to {hi}",
                                 hint="split the batch, or re-export with a wider --batch range")
        return np.ascontiguousarray(image)

    def infer(self, image: np.ndarray) -> np.ndarray:
        """image float32 (N, C, S, S), normalised -> probabilities float32 (N, 1, S, S); for a frames
        graph, uint8 frames (N, H, W, 3) -> its first output, probabilities (N, 1, H, W).

        May be called any time after construction (the first call loads the artifact, once, however
        many threads call at once) and from several threads; after `close()` it raises
        BackendUnavailableError until `load()` reopens. The input is checked against `input_spec()`
        first (InputSpecError naming what differs). The returned array is the caller's: a later call
        never writes into it.
        """
        image = self.validate(image)
        with self.in_flight():
            if self.serialize_infer:
                with self._infer_lock:
                    out = self._infer(image)
            else:
                out = self._infer(image)
        if not self._first_checked:  # the first output after a load: a NaN artifact is an error, not masks
            self._check_finite(out)
        return out

    def _check_finite(self, out: np.ndarray) -> None:
        bad = int((~np.isfinite(out)).sum()) if np.issubdtype(out.dtype, np.floating) else 0
        if bad:
            raise BackendUnavailableError(f"{self.artifact.name} gave {bad} non-finite output value(s) (NaN or inf) "
                                          "on its first call", hint="its weights are not finite: re-train or "
                                          "re-export (the export's gates refuse such artifacts)")
        self._first_checked = True

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """One call in flight: loads lazily, refuses after close(), and is waited for by close().
        Every entry point that runs the artifact goes through it."""
        with self._state:
            if self.closed:
                raise BackendUnavailableError(f"the {self.name} backend of {self.artifact.name} was closed",
                                              hint="call load() (or enter it again) before more inference")
            if not self.loaded:
                self.load()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._state:
                self._in_flight -= 1
                self._state.notify_all()

    # -- for subclasses ----------------------------------------------------------------------
    def _verify(self) -> None:
        verify_artifact(self.artifact, self.entry)  # flipped bytes must never run silently

    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass
