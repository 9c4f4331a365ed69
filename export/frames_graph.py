"""Frames graphs: an exported model graph wrapped so that what a capture card or SDK hands over goes
in (uint8, NHWC, 3 channels, a declared colour order) and what a pipeline shows comes out
(probabilities and a uint8 0/1 mask), with the frame contract (llm4seg.contract) inside.

Two forms, named in the manifest:
- `any-size` (`model[.fp16|.int8].frames.onnx`): frames of any H x W (dynamic); both resizes of the
  contract run inside, so outputs are at the frame's size.
- `model-size` (`model[.fp16|.int8].frames<S>.onnx`): frames already at S x S (the SDK resizes on
  its own GPU path); colour, scale and normalisation inside, outputs at S x S.
And, for DeepStream's nvinfer (which always hands the network float pixel values, NCHW, after its
own resize), `nvinfer` (`model[.fp16|.int8].nvinfer<S>.onnx`): float32 (N, 3, S, S) pixel values
0-255 in, mean/std inside, so nvinfer runs with net-scale-factor=1 and offsets 0.

The conversion, resizes and normalisation stay in FP32 whatever the precision of the wrapped graph
(its own inputs and outputs are FP32). The resize down to the model is the contract's per-axis
rule as its definition says (llm4seg.contract.axis_weights): a (S, H) and a (S, W) weight matrix,
built in the graph from H and W with elementwise arithmetic (area: the overlap of each output
pixel's interval with each input pixel; linear: the two neighbours' weights), applied as two
MatMuls (height first, whole rows at a time; then width, which also lands the layout in NCHW):
onnxruntime runs them as GEMM and TensorRT as one kernel each, where a running sum (CumSum) and
gathers were a scan. The resize back to the frame is linear interpolation with Gather (two
neighbours and a weight), so its cost grows with the frame, not with frame x model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm4seg._optional import require
from llm4seg.contract import COLORS, FrameContract
from llm4seg.errors import ExportError

FORMS = ("any-size", "model-size")
ALL_FORMS = (*FORMS, "nvinfer")
MODEL_IN, MODEL_OUT = "image", "prob"  # the wrapped graph's own tensors (export/onnx_export.py)


def frames_name(artifact: str, form: str, size: int) -> str:
    """model.fp16.onnx -> model.fp16.frames.onnx (any size) or model.fp16.frames256.onnx (model size)."""
    stem = artifact[: -len(".onnx")]
    return {"any-size": f"{stem}.frames.onnx", "model-size": f"{stem}.frames{size}.onnx",
            "nvinfer": f"{stem}.nvinfer{size}.onnx"}[form]


class _Builder:
    """Nodes and constants of the wrapper, with unique names under one prefix."""

    def __init__(self, onnx) -> None:
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"frames/{hint}_{self.n}"

    def const(self, value, dtype=np.float32) -> str:
        name = self.name("c")
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.h.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    def split(self, x: str, sizes: list[int], axis: int) -> list[str]:
        """x cut along `axis` into pieces of `sizes` (one Split node, one output per piece)."""
        outs = [self.name("split") for _ in sizes]
        self.nodes.append(self.h.make_node("Split", [x, self.const(sizes, np.int64)], outs, name=self.name("Split"),
                                           axis=axis))
        return outs

    # -- small pieces ---------------------------------------------------------------------------
    def dim(self, x: str, axis: int) -> str:
        """int64 scalar: x.shape[axis] (Shape then Gather: no opset-15 Shape attributes, for TensorRT 10.3)."""
        return self.op("Gather", self.op("Shape", x), self.const(axis, np.int64), axis=0)

    def positions(self, n: str, offset: float) -> str:
        """float (n,): (i + offset) for i in range(n), n an int64 scalar."""
        i = self.op("Cast", self.op("Range", self.const(0, np.int64), n, self.const(1, np.int64)), to=1)
        return self.op("Add", i, self.const(offset))

    def gather_lerp(self, x: str, p: str, last: str, axis: int, trailing: int) -> str:
        """x sampled along `axis` at float positions p in [0, last]: neighbours and weight
        (`trailing`: how many axes follow `axis`, for broadcasting the weights)."""
        i0f = self.op("Floor", p)
        i1f = self.op("Min", self.op("Add", i0f, self.const(1.0)), last)
        f = self.reshape_for(self.op("Sub", p, i0f), trailing)
        i0, i1 = (self.op("Cast", v, to=7) for v in (i0f, i1f))
        a, b = self.op("Gather", x, i0, axis=axis), self.op("Gather", x, i1, axis=axis)
        return self.op("Add", a, self.op("Mul", self.op("Sub", b, a), f))

    def reshape_for(self, v: str, trailing: int) -> str:
        """A (n,) vector shaped (n, 1, ..., 1) to broadcast along an axis followed by `trailing` axes."""
        return self.op("Unsqueeze", v, self.const(list(range(1, trailing + 1)), np.int64)) if trailing else v

    # -- the contract's rules -------------------------------------------------------------------
    def linear(self, x: str, axis: int, src: str, dst: str, trailing: int) -> str:
        """Resample axis from src to dst pixels: half-pixel centres, edges clamped (OpenCV INTER_LINEAR)."""
        srcf, dstf = (self.op("Cast", v, to=1) for v in (src, dst))
        scale = self.op("Div", srcf, dstf)
        last = self.op("Sub", srcf, self.const(1.0))
        p = self.op("Sub", self.op("Mul", self.positions(dst, 0.5), scale), self.const(0.5))
        p = self.op("Min", self.op("Max", p, self.const(0.0)), last)
        return self.gather_lerp(x, p, last, axis, trailing)

    def area(self, x: str, axis: int, src: str, dst: str, trailing: int) -> str:
        """Mean over [i*s, (i+1)*s) per output pixel, s = src/dst: the integral F of the source
        (piecewise constant) at both ends, F(t) = E[j] + (t - j) * x[j] with j = min(floor(t),
        src - 1) and E the exclusive running sum (no full-frame copy to prepend a zero)."""
        running = self.op("CumSum", x, self.const(axis, np.int64), exclusive=1)
        srcf, dstf = (self.op("Cast", v, to=1) for v in (src, dst))
        s = self.op("Div", srcf, dstf)
        i = self.positions(dst, 0.0)
        last = self.op("Sub", srcf, self.const(1.0))

        def integral(t: str) -> str:
            jf = self.op("Min", self.op("Floor", t), last)
            j = self.op("Cast", jf, to=7)
            frac = self.reshape_for(self.op("Sub", t, jf), trailing)
            return self.op("Add", self.op("Gather", running, j, axis=axis),
                           self.op("Mul", frac, self.op("Gather", x, j, axis=axis)))

        lo = self.op("Mul", i, s)
        hi = self.op("Min", self.op("Mul", self.op("Add", i, self.const(1.0)), s), srcf)
        return self.op("Div", self.op("Sub", integral(hi), integral(lo)), s)

    def axis_matrix(self, src: str, dst: str, contract: FrameContract) -> str:
        """The contract's rule on one axis as a float (dst, src) matrix (contract.axis_weights): `area`
        where the axis shrinks, `linear` where it grows, picked by Where on the small matrix."""
        rules = {"area", "linear"}
        for rule in (contract.resize_down, contract.resize_up):
            if rule not in rules:
                raise ExportError(f"the frames graph has no resize rule {rule!r}",
                                  hint=f"frames graphs implement {sorted(rules)} (the contract's defaults)")
        srcf, dstf = (self.op("Cast", v, to=1) for v in (src, dst))
        s = self.op("Div", srcf, dstf)
        i = self.op("Unsqueeze", self.positions(dst, 0.0), self.const([1], np.int64))  # (dst, 1)
        j = self.op("Unsqueeze", self.positions(src, 0.0), self.const([0], np.int64))  # (1, src)
        zero, one = self.const(0.0), self.const(1.0)
        # area: overlap of [i*s, (i+1)*s) with [j, j+1), over s
        hi = self.op("Min", self.op("Add", j, one), self.op("Mul", self.op("Add", i, one), s))
        lo = self.op("Max", j, self.op("Mul", i, s))
        area = self.op("Div", self.op("Max", zero, self.op("Sub", hi, lo)), s)
        # linear: sample at (i + 0.5) * s - 0.5, clamped to [0, src - 1], between its two neighbours
        p = self.op("Sub", self.op("Mul", self.op("Add", i, self.const(0.5)), s), self.const(0.5))
        p = self.op("Min", self.op("Max", p, zero), self.op("Sub", srcf, one))
        linear = self.op("Max", zero, self.op("Sub", one, self.op("Abs", self.op("Sub", p, j))))
        chosen = {"area": area, "linear": linear}
        return self.op("Where", self.op("Greater", src, dst), chosen[contract.resize_down], chosen[contract.resize_up])

    def resize_axis(self, x: str, axis: int, src: str, dst: str, contract: FrameContract, trailing: int) -> str:
        """The contract's rule on one axis: `resize_down` where it shrinks, `resize_up` where it
        grows. Both are computed and Where picks one: an If with the two rules as branches ran in
        onnxruntime, but TensorRT-RTX 1.7's builder refused it (Myelin 'ssa_validation' check)."""
        rules = {"area": self.area, "linear": self.linear}
        for rule in (contract.resize_down, contract.resize_up):
            if rule not in rules:
                raise ExportError(f"the frames graph has no resize rule {rule!r}",
                                  hint=f"frames graphs implement {sorted(rules)} (the contract's defaults)")
        down = rules[contract.resize_down](x, axis, src, dst, trailing)
        up = rules[contract.resize_up](x, axis, src, dst, trailing)
        return self.op("Where", self.op("Greater", src, dst), down, up)


def _pre(b: _Builder, frames: str, contract: FrameContract, input_color: str, resize: bool,
         pixels_nchw: bool = False) -> str:
    """uint8 (N, H, W, 3) frames (or float32 (N, 3, S, S) pixel values, `pixels_nchw`) -> the wrapped
    graph's float32 (N, 3, S, S) input. The resize runs on the NHWC frame (no full-frame transpose),
    the colour order and layout change at the model's size. Shapes are read from the float copy
    ('frames/float'): TensorRT 10.3's Shape takes no UINT8 tensor."""
    if pixels_nchw:
        x = b.op("Identity", frames, out="frames/float")
    else:
        x = b.op("Cast", frames, to=1, out="frames/float")
        x = _resized_nchw(b, x, contract) if resize else b.op("Transpose", x, perm=[0, 3, 1, 2])
    if input_color != contract.color:
        x = b.op("Gather", x, b.const([2, 1, 0], np.int64), axis=1)
    scale, shift = contract.affine()
    return b.op("Add", b.op("Mul", x, b.const(scale.reshape(1, -1, 1, 1))), b.const(shift.reshape(1, -1, 1, 1)),
                out=MODEL_IN)


BANDS = 8  # output rows (columns) per resize pass are split into this many bands


def _band_bounds(b: _Builder, src: str, dst_size: int) -> tuple[list[tuple[int, int]], str, str]:
    """The BANDS bands of output pixels [(first, end), ...] and, for all of them at once, the int64
    (bands,) starts and ends of the input pixels each reads: each output pixel reads inputs within
    one pixel of [i*s, (i+1)*s), s = src/dst, for either rule (area: the interval; linear: two
    neighbours of (i + 0.5) s - 0.5). One vector per axis, not a dozen nodes per band: at BUSI
    sizes the wrapper's small nodes, not its arithmetic, were most of its time (issue 47)."""
    rows = -(-dst_size // BANDS)
    bands = [(k * rows, min(dst_size, (k + 1) * rows)) for k in range(BANDS) if k * rows < dst_size]
    srcf = b.op("Cast", src, to=1)
    s = b.op("Div", srcf, b.const(float(dst_size)))
    firsts, ends = (b.const([float(band[k]) for band in bands]) for k in (0, 1))
    lo = b.op("Max", b.op("Sub", b.op("Floor", b.op("Mul", firsts, s)), b.const(1.0)), b.const(0.0))
    hi = b.op("Min", b.op("Add", b.op("Ceil", b.op("Mul", ends, s)), b.const(1.0)), srcf)
    return bands, b.op("Cast", lo, to=7), b.op("Cast", hi, to=7)


def _banded(b: _Builder, x: str, weights: str, src: str, size: int, rows_axis: bool) -> str:
    """The resize pass as MatMuls of bands: each band of output pixels multiplies only the input
    pixels it reads (the weight matrix is a band, BANDS times fewer multiply-adds than one MatMul).
    `rows_axis`: weights (S, H) @ x (N, H, K) -> (N, S, K); else x (N, C, S, W) @ weights (W, S)."""
    bands, lo_all, hi_all = _band_bounds(b, src, size)
    out_axis, in_axis = (0, 1) if rows_axis else (1, 0)
    ones = [1] * len(bands)
    los, his = b.split(lo_all, ones, 0), b.split(hi_all, ones, 0)
    blocks = b.split(weights, [end - first for first, end in bands], out_axis)  # each band's rows (columns)
    parts = []
    for lo, hi, block in zip(los, his, blocks):
        w = b.op("Slice", block, lo, hi, b.const([in_axis], np.int64))
        if rows_axis:
            part = b.op("MatMul", w, b.op("Slice", x, lo, hi, b.const([1], np.int64)))
        else:
            part = b.op("MatMul", b.op("Slice", x, lo, hi, b.const([3], np.int64)), w)
        parts.append(part)
    return b.op("Concat", *parts, axis=1 if rows_axis else 3)


def _resized_nchw(b: _Builder, x: str, contract: FrameContract) -> str:
    """float (N, H, W, 3) frames -> float (N, 3, S, S), resized by the contract's rule as banded
    MatMuls: height first on (N, H, W*3) (whole rows, no full-frame transpose), then a transpose of
    the frame already S rows high to (N, 3, S, W) and the width pass, which leaves NCHW; rounded to
    8 bits, as training stores its resized images (Round: ties to even, as np.rint)."""
    s = contract.image_size
    size = b.const(s, np.int64)
    n, h, w = (b.dim("frames/float", a) for a in (0, 1, 2))
    wy = b.axis_matrix(h, size, contract)  # (S, H)
    wx = b.op("Transpose", b.axis_matrix(w, size, contract), perm=[1, 0])  # (W, S)
    unsq = lambda v: b.op("Unsqueeze", v, b.const([0], np.int64))  # noqa: E731  (a scalar as a (1,) shape piece)
    rows = b.op("Reshape", x, b.op("Concat", unsq(n), unsq(h), b.const([-1], np.int64), axis=0))  # (N, H, W*3)
    tall = _banded(b, rows, wy, h, s, rows_axis=True)  # (N, S, W*3)
    tall = b.op("Reshape", tall, b.op("Concat", unsq(n), unsq(size), unsq(w), b.const([3], np.int64), axis=0))
    nchw = _banded(b, b.op("Transpose", tall, perm=[0, 3, 1, 2]), wx, w, s, rows_axis=False)  # (N, 3, S, S)
    return b.op("Clip", b.op("Round", nchw), b.const(0.0), b.const(255.0))


def _post(b: _Builder, frames: str, model_prob: str, contract: FrameContract, resize: bool) -> tuple[str, str]:
    """The wrapped graph's (N, 1, S, S) probabilities -> (prob, mask) at the frames' size."""
    if contract.mask_resize != "linear" and resize:
        raise ExportError(f"the frames graph has no mask resize rule {contract.mask_resize!r}", hint="use 'linear'")
    p = model_prob
    if resize:
        size = b.const(contract.image_size, np.int64)
        p = b.linear(p, 3, size, b.dim("frames/float", 2), trailing=0)
        p = b.linear(p, 2, size, b.dim("frames/float", 1), trailing=1)
    prob = b.op("Identity", p, out="prob")
    mask = b.op("Cast", b.op("Greater", prob, b.const(contract.threshold)), to=2, out="mask")
    return prob, mask


def frames_graph_from_onnx(src: Path, dst: Path, contract: FrameContract, form: str = "any-size",
                           input_color: str = "BGR") -> Path:
    """Wrap the model graph at `src` (float32 (N, 3, S, S) 'image' -> 'prob') into a frames graph.

    Args:
        contract: the frame contract the model was trained with.
        form: 'any-size' (dynamic H, W; both resizes inside), 'model-size' (S x S uint8 frames) or
            'nvinfer' (float32 NCHW pixel values at S x S, as DeepStream's nvinfer hands them over).
        input_color: the channel order of the frames the graph takes ('BGR': OpenCV, PyAV bgr24).

    Returns:
        dst, written and checked by onnx.checker.
    """
    onnx = require("onnx", "writing frames graphs")
    if form not in ALL_FORMS or input_color not in COLORS:
        raise ExportError(f"frames graph form {form!r} / colour {input_color!r} is not known",
                          hint=f"forms: {', '.join(ALL_FORMS)}; colours: {', '.join(COLORS)}")
    model = onnx.load(str(src))
    g = model.graph
    if [i.name for i in g.input] != [MODEL_IN] or [o.name for o in g.output] != [MODEL_OUT]:
        raise ExportError(f"{src.name} has inputs {[i.name for i in g.input]} and outputs {[o.name for o in g.output]}",
                          hint=f"frames graphs wrap llm4seg's exported graphs ('{MODEL_IN}' -> '{MODEL_OUT}')")
    inner_prob = "model/prob"
    for node in g.node:  # the wrapped graph's output becomes an inner tensor; 'prob' is the frames' size now
        node.output[:] = [inner_prob if o == MODEL_OUT else o for o in node.output]
        node.input[:] = [inner_prob if i == MODEL_OUT else i for i in node.input]
    b = _Builder(onnx)
    resize = form == "any-size"
    s = contract.image_size
    h, w = ("height", "width") if resize else (s, s)
    pixels = form == "nvinfer"
    frames = (onnx.helper.make_tensor_value_info("frames", onnx.TensorProto.FLOAT, ["batch", 3, s, s]) if pixels else
              onnx.helper.make_tensor_value_info("frames", onnx.TensorProto.UINT8, ["batch", h, w, 3]))
    _pre(b, "frames", contract, input_color, resize, pixels)
    pre_nodes = b.nodes
    b.nodes = []
    _post(b, "frames", inner_prob, contract, resize)
    outputs = [onnx.helper.make_tensor_value_info("prob", onnx.TensorProto.FLOAT, ["batch", 1, h, w]),
               onnx.helper.make_tensor_value_info("mask", onnx.TensorProto.UINT8, ["batch", 1, h, w])]
    nodes = [*pre_nodes, *g.node, *b.nodes]
    value_info = [v for v in g.value_info if v.name not in (MODEL_IN, MODEL_OUT)]
    graph = onnx.helper.make_graph(nodes, f"{g.name}_frames", [frames], outputs,
                                   initializer=[*g.initializer, *b.inits], value_info=value_info)
    wrapped = onnx.helper.make_model(graph, opset_imports=model.opset_import, producer_name="llm4seg",
                                     ir_version=model.ir_version)
    onnx.checker.check_model(wrapped)
    onnx.save(wrapped, str(dst))
    return dst


def frames_profile(batch: tuple[int, int, int], size: int, form: str,
                   max_hw: tuple[int, int] = (1080, 1920)) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) NHWC input shapes of a TensorRT optimization profile for a frames graph:
    any-size graphs from 16 x 16 to `max_hw` (1080p by default), opt at 480 x 640."""
    if form == "model-size":
        return tuple((n, size, size, 3) for n in batch)
    if form == "nvinfer":
        return tuple((n, 3, size, size) for n in batch)
    return ((batch[0], 16, 16, 3), (batch[1], 480, 640, 3), (batch[2], *max_hw, 3))


__all__ = ["ALL_FORMS", "FORMS", "frames_graph_from_onnx", "frames_name", "frames_profile"]
