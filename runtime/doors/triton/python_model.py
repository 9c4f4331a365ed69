"""The Triton python-backend model of an llm4seg repository (imported by its generated model.py).

Runs inside Triton's python stub. `llm4seg_kind` in the model's config says what it serves:
"frames" (`segment`): uint8 frames (N, H, W, 3) in the colour order its `llm4seg_io` declares,
through the frame runner of the artifact, and each request's frames through one mask stage (a
request is a short stream: "jump" compares a frame with the one before it in the request):
MASK, PROB, CONFIDENCE and FLAGS out. "tensor": the artifact's own input tensor in, its
probabilities out, through the runtime backend (the .pt2 path). With dynamic batching Triton hands
several requests to one `execute`: they are run as one batch and answered one by one; a request
that fails gets its own error response, the others their results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.mask_stage import MaskStage
from llm4seg.quality import check_prob
from llm4seg.strict_json import loads_strict


class TritonPythonModel:
    """Triton's python-backend interface: initialize(args), execute(requests), finalize()."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the model's artifact (sha256 checked) from its version folder; called once by Triton."""
        import triton_python_backend_utils as pb_utils  # only inside Triton's python stub

        from llm4seg.runtime.core.backends import load_backend
        from llm4seg.runtime.core.runner import runner_for

        self.pb = pb_utils
        config = loads_strict(args["model_config"], "the model's config")
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.kind = params["llm4seg_kind"]
        folder = Path(args["model_repository"]) / args["model_version"]
        backend = load_backend(folder / params["llm4seg_artifact"])
        backend.load()  # the artifact's sha256 is checked here, before any request
        self.backend = backend
        io = loads_strict(params.get("llm4seg_io") or "{}", "llm4seg_io")
        self.runner = runner_for(backend, layout=io.get("color", "BGR").lower()) if self.kind == "frames" else None
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def _frames_outputs(self, probs: list[np.ndarray], wanted: set[str]) -> dict[str, np.ndarray]:
        """One request's outputs from its probabilities: PROB as they are, the others through one
        mask stage, run only when one of them is wanted (a Segmenter asks for PROB alone). Either way
        every map is checked as the stage checks it (`check_prob`): no NaN is handed on."""
        outputs = {"PROB": np.stack([check_prob(p) for p in probs])}
        if wanted <= {"PROB"}:
            return outputs
        entry = self.runner.entry
        stage = MaskStage.for_entry(entry.threshold, entry.quality)
        results = [stage.step(p) for p in probs]
        return {**outputs, "MASK": np.stack([r.mask for r in results]),
                "CONFIDENCE": np.asarray([[r.confidence] for r in results], np.float32),
                "FLAGS": np.asarray([r.flag_vector() for r in results], np.uint8)}

    def _run(self, batches: list[np.ndarray], wanted: list[set[str]]) -> list[dict[str, np.ndarray]]:
        """One call for all requests' inputs; outputs split back per request (`wanted`: each one's
        requested output names, all where it names none)."""
        if self.kind == "frames":
            probs = self.runner.probs([f for batch in batches for f in batch])
            bounds = np.cumsum([0] + [len(b) for b in batches])
            return [self._frames_outputs(probs[i:j], w) for w, i, j in zip(wanted, bounds[:-1], bounds[1:])]
        x = np.concatenate(batches)
        top = self.backend.entry.max_batch
        prob = np.concatenate([self.backend.infer(x[j:j + top]) for j in range(0, len(x), top)])
        bad = int((~np.isfinite(prob)).sum())
        if bad:  # a model that turned NaN: an error response, never NaN handed on as probabilities
            raise ConfigError(f"{self.backend.artifact.name} gave {bad} non-finite probabilities (NaN or inf)",
                              hint="its weights or the input are broken: re-export, or check the frames sent")
        name = self.backend.entry.outputs[0].name
        bounds = np.cumsum([0] + [len(b) for b in batches])
        return [{name: prob[a:b]} for a, b in zip(bounds[:-1], bounds[1:])]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer a batch of requests (one response each, in order); called by Triton per batch."""
        pb = self.pb
        batches = [_numpy_from(pb.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        wanted = [set(r.requested_output_names()) or set(self.output_names) for r in requests]
        try:
            results = self._run(batches, wanted)
        except Exception:  # one bad request (a frame of the wrong type) must not fail its batch-mates
            return [self._execute_one(pb, r, b, w) for r, b, w in zip(requests, batches, wanted)]
        return [self._response(pb, out, w) for out, w in zip(results, wanted)]

    def _execute_one(self, pb: Any, request: Any, batch: np.ndarray, wanted: set[str]) -> Any:
        try:
            return self._response(pb, self._run([batch], [wanted])[0], wanted)
        except Exception as exc:
            hint = getattr(exc, "hint", "")
            return pb.InferenceResponse(error=pb.TritonError(f"{exc}" + (f" (hint: {hint})" if hint else "")))

    def _response(self, pb: Any, outputs: dict[str, np.ndarray], wanted: set[str]) -> Any:
        return pb.InferenceResponse([pb.Tensor.from_dlpack(name, np.ascontiguousarray(value))
                                     for name, value in outputs.items() if name in wanted])

    def finalize(self) -> None:
        """Close the backend; called by Triton when the model unloads."""
        self.backend.close()


def _numpy_from(tensor: Any) -> np.ndarray:
    """A request tensor as numpy through DLPack: the stub's as_numpy()/Tensor(numpy) path was built
    for NumPy 1 and hands NumPy 2 empty or wrong buffers (measured with PyTriton 0.7's stub)."""
    return np.from_dlpack(tensor).copy()
