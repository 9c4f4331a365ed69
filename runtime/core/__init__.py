"""The frame runtime: what every door goes through.

- `runner`: frames in, probabilities at each frame's size out (host contract, frames graph, or a
  served `segment`), and `load_runner` to pick one from a path or URL;
- the mask stage (threshold, region crop, smoothing, quality, area: `llm4seg.mask_stage`, in the
  core beside the frame contract because eval holds one too) and `stream.SegmentStream`, a runner
  plus one stream's mask stage;
- `segmenter`: the Python API over both; `backends`: tensors in, tensors out;
- `manifest` / `entry`: the manifest file and its typed entries; `comparator`: the one way
  artifacts are compared; `overlay`: drawing a mask; `stats`: latency percentiles.
The doors into it (video I/O, GStreamer, Holoscan, DeepStream, Triton, DICOM) are in
`llm4seg.runtime.doors`; tools around it (bench, adopt-engine) in `llm4seg.runtime.tools`.
"""
