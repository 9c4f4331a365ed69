"""The engine build as command lines, for building on the target (a Jetson) instead of here.

A TensorRT engine is specific to the GPU and TensorRT version, so it is built where it runs. The
export writes these commands into the manifest (`engine_recipes`) and prints them: strongly typed
(precision from the typed FP16 / Q/DQ INT8 graph), the export's optimization profile, a timing
cache (flags as trtexec and Polygraphy define them; these lines have NOT been run here, since
neither tool can be installed). After building, `llm4seg adopt-engine ART/model.<precision>.plan` on the target checks the
engine against the ONNX graph and records it in the manifest, so `bench`/`video` can run it.
"""

from __future__ import annotations


def _shape(batch: int, channels: int, size: int, sep: str) -> str:
    return sep.join(str(d) for d in (batch, channels, size, size))


def engine_recipe(onnx_name: str, precision: str, batch: tuple[int, int, int], channels: int, size: int,
                  input_name: str = "image") -> dict[str, str]:
    """{'trtexec': ..., 'polygraphy': ..., 'adopt': ...} command lines for model.<precision>.plan."""
    plan = f"model.{precision}.plan"
    lo, opt, hi = (_shape(b, channels, size, "x") for b in batch)
    plo, popt, phi = (f"{input_name}:[{_shape(b, channels, size, ',')}]" for b in batch)
    return {
        "trtexec": (f"trtexec --onnx={onnx_name} --saveEngine={plan} --stronglyTyped "
                    f"--minShapes={input_name}:{lo} --optShapes={input_name}:{opt} --maxShapes={input_name}:{hi} "
                    "--timingCacheFile=timing.cache"),
        "polygraphy": (f"polygraphy convert {onnx_name} -o {plan} --strongly-typed "
                       f"--trt-min-shapes {plo} --trt-opt-shapes {popt} --trt-max-shapes {phi} "
                       "--load-timing-cache timing.cache --save-timing-cache timing.cache"),
        "adopt": f"llm4seg adopt-engine {plan}",
    }
