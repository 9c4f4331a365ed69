"""Frames/s and per-stage latency of the video paths on one clip, side by side (issue 22, item 5).

    python -m benchmarks.video_paths --artifact ART/model.onnx [--clip clip.mp4] [--rounds 3]

Paths: OpenCV in and out (the fallback), PyAV in and H.264 out (the default), GStreamer in and
x264enc out, and the Holoscan example application (PyAV in, SegmentOp, H.264 out). All share one
onnxruntime Segmenter and run in turns, round after round, so the VM's drifting speed hits each
alike; ratios are to the OpenCV path of the same round. Without --clip, a 60-frame 256x256 H.264
clip is written from BUSI images ($LLM4SEG_DATA or ../shared/datasets), else synthetic frames.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np

from llm4seg.runtime import Segmenter, VideoPipeline
from llm4seg.runtime.doors.video.pipeline import open_sink

DATASETS = Path(os.environ.get("LLM4SEG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


def clip_frames(n: int, size: int) -> list[np.ndarray]:
    """BUSI images (the first n, sorted) as BGR frames, else synthetic ones."""
    images = sorted((DATASETS / "busi" / "images").glob("*.png"))[:n]
    if len(images) == n:
        return [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
                for p in images]
    from llm4seg.data.synthetic import synthetic_dataset

    return [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in synthetic_dataset(n, size, seed=0)[0]]


def write_clip(path: Path, n: int = 60, size: int = 256) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in clip_frames(n, size):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run_pipeline(seg: Segmenter, source: str, out: str, reader: str, writer: str) -> dict:
    pipeline = VideoPipeline(seg, source, sink=lambda f: None, reader=reader)
    pipeline.sink = open_sink(out, pipeline.fps, writer=writer)
    summary = pipeline.run().summary()
    summary["codec"] = pipeline.sink.codec
    return summary


def run_holoscan(seg: Segmenter, clip: Path, out: Path, workdir: Path) -> dict:
    import yaml

    from llm4seg.runtime.doors.holoscan import EXAMPLE_CONFIG, run_app

    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["source"]["source"], config["sink"]["out"] = str(clip), str(out)
    path = workdir / "app.yaml"
    path.write_text(yaml.safe_dump(config))
    report = run_app(path, {"segment": {"artifact": None, "segmenter": seg}})
    e2e = next(iter(report["e2e_latency_ms"].values()), {})
    stages = {"decode": "source", "infer": "segment", "encode": "sink"}
    return {"fps": report["fps"], "frames_out": report["frames_out"], "codec": report["codec"],
            "latency_ms": {**{k: report["operator_latency_ms"][v] for k, v in stages.items()},
                           "end_to_end": {"p50": e2e.get("avg", float("nan")), "note": "Holoscan tracker average"}}}
    # Holoscan's rows: per-operator latency from its data-flow tracking (receive to publish), and
    # its tracker's average end-to-end latency in the p50 column.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the per-round figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="video_paths_"))
    clip = args.clip or write_clip(work / "clip.mp4")
    paths = {
        "opencv": lambda seg: run_pipeline(seg, str(clip), str(work / "cv.mp4"), "opencv", "opencv"),
        "pyav": lambda seg: run_pipeline(seg, str(clip), str(work / "av.mp4"), "pyav", "pyav"),
        "gstreamer": lambda seg: run_pipeline(
            seg, f"gst:filesrc location={clip} ! decodebin", f"gst:appsrc ! videoconvert ! x264enc "
            f"speed-preset=veryfast ! mp4mux ! filesink location={work / 'gst.mp4'}", "auto", "auto"),
        "holoscan": lambda seg: run_holoscan(seg, clip, work / "holo.mp4", work),
    }
    rounds: list[dict] = []
    with Segmenter(args.artifact) as seg:
        seg.segment_one(clip_frames(1, 64)[0])  # load and warm the session outside the timings
        for _ in range(args.rounds):
            rounds.append({name: run(seg) for name, run in paths.items()})
    print(f"clip: {clip} ({rounds[0]['opencv']['frames_out']} frames); artifact: {args.artifact}; "
          f"{args.rounds} interleaved rounds, medians")
    print(f"{'path':>10} {'codec':>8} {'frames/s':>9} {'x opencv':>9} {'decode p50':>11} {'infer p50':>10} "
          f"{'encode p50':>11} {'e2e p50':>8}  (ms)")
    for name in paths:
        fps = statistics.median(r[name]["fps"] for r in rounds)
        ratio = statistics.median(r[name]["fps"] / r["opencv"]["fps"] for r in rounds)
        lat = {k: statistics.median(r[name]["latency_ms"][k]["p50"] for r in rounds)
               for k in ("decode", "infer", "encode", "end_to_end")}
        print(f"{name:>10} {rounds[0][name]['codec']:>8} {fps:>9.1f} {ratio:>9.2f} {lat['decode']:>11.2f} "
              f"{lat['infer']:>10.1f} {lat['encode']:>11.2f} {lat['end_to_end']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1, default=float))


if __name__ == "__main__":
    main()
