"""The Triton python-backend model of an llm4seg repository (imported by its generated model.py).

Runs inside Triton's python stub. `llm4seg_kind` in the model's config says what it serves:
"frames": uint8 BGR frames in, masks (and probabilities) at each frame's size out, through the
Segmenter and the manifest's pre/post-processing, with each frame's confidence and flags; "tensor": the artifact's own input tensor in,
its probabilities out, through the runtime backend (the .pt2 path). With dynamic batching Triton
hands several requests to one `execute`: they are run as one batch and answered one by one; a
request that fails gets its own error response, the others their results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class TritonPythonModel:
    """Triton's python-backend interface: initialize(args), execute(requests), finalize()."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the model's artifact (sha256 checked) from its version folder; called once by Triton."""
        import triton_python_backend_utils as pb_utils  # only inside Triton's python stub

        from llm4seg.runtime.backends import load_backend
        from llm4seg.runtime.segmenter import Segmenter

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.kind = params["llm4seg_kind"]
        folder = Path(args["model_repository"]) / args["model_version"]
        backend = load_backend(folder / params["llm4seg_artifact"])
        backend.load()  # the artifact's sha256 is checked here, before any request
        self.backend = backend
        self.segmenter = Segmenter(backend) if self.kind == "frames" else None
        self.input_name = config["input"][0]["name"]

    def _run(self, batches: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """One call for all requests' inputs; outputs split back per request."""
        if self.kind == "frames":
            frames = [f for batch in batches for f in batch]
            probs = self.segmenter.segment(frames, binary=False)
            threshold, results, i = self.segmenter.threshold, [], 0
            for batch in batches:
                prob = np.stack(probs[i:i + len(batch)]).astype(np.float32)
                results.append({"MASK": (prob > threshold).astype(np.uint8), "PROB": prob,
                                **_quality_outputs(list(prob), threshold, self.segmenter.low_confidence)})
                i += len(batch)
            return results
        x = np.concatenate(batches)
        top = int(self.backend.manifest["batch"]["max"])
        prob = np.concatenate([self.backend.infer(x[j:j + top]) for j in range(0, len(x), top)])
        name = self.backend.manifest["outputs"][0]["name"]
        bounds = np.cumsum([0] + [len(b) for b in batches])
        return [{name: prob[a:b]} for a, b in zip(bounds[:-1], bounds[1:])]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer a batch of requests (one response each, in order); called by Triton per batch."""
        pb = self.pb
        batches = [_numpy_from(pb.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        try:
            results = self._run(batches)
        except Exception:  # one bad request (a frame of the wrong type) must not fail its batch-mates
            return [self._execute_one(pb, r, b) for r, b in zip(requests, batches)]
        return [self._response(pb, r, out) for r, out in zip(requests, results)]

    def _execute_one(self, pb: Any, request: Any, batch: np.ndarray) -> Any:
        try:
            return self._response(pb, request, self._run([batch])[0])
        except Exception as exc:
            hint = getattr(exc, "hint", "")
            return pb.InferenceResponse(error=pb.TritonError(f"{exc}" + (f" (hint: {hint})" if hint else "")))

    def _response(self, pb: Any, request: Any, outputs: dict[str, np.ndarray]) -> Any:
        wanted = set(request.requested_output_names()) or set(outputs)
        return pb.InferenceResponse([pb.Tensor.from_dlpack(name, np.ascontiguousarray(value)) for name, value in outputs.items() if name in wanted])

    def finalize(self) -> None:
        """Close the backend; called by Triton when the model unloads."""
        self.backend.close()


def _quality_outputs(probs: list[np.ndarray], threshold: float, low_confidence: float) -> dict[str, np.ndarray]:
    """CONFIDENCE (N, 1) and FLAGS (N, 4) uint8 in temporal.FLAGS order for one request's frames,
    taken as consecutive frames of one stream ("jump": against the request's previous frame)."""
    from llm4seg.runtime.temporal import FLAGS, frame_quality

    confidence, flags, last = [], [], None
    for prob in probs:
        quality = frame_quality(prob, threshold, last, low_confidence)
        last = prob > threshold
        confidence.append([quality["confidence"]])
        flags.append([int(name in quality["flags"]) for name in FLAGS])
    return {"CONFIDENCE": np.asarray(confidence, np.float32), "FLAGS": np.asarray(flags, np.uint8)}


def _numpy_from(tensor: Any) -> np.ndarray:
    """A request tensor as numpy through DLPack: the stub's as_numpy()/Tensor(numpy) path was built
    for NumPy 1 and hands NumPy 2 empty or wrong buffers (measured with PyTriton 0.7's stub)."""
    return np.from_dlpack(tensor).copy()
