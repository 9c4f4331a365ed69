"""Video through the runtime: sources (`sources`: PyAV, OpenCV, DICOM), sinks (`sinks`, `sink_base`),
GStreamer in and out (`gstreamer`), the three-thread pipeline (`pipeline`) and `llm4seg video` as a
Python API (`job`)."""
