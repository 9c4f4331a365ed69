"""The doors into the frame runtime: video files, cameras and streams (`video`), GStreamer, NVIDIA
Holoscan and DeepStream, Triton Inference Server and DICOM. Each holds a frame runner and a mask
stage per stream (llm4seg.runtime.core); none repeats a step of them."""
