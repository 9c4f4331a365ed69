"""Many streams on Triton vs in-process, dynamic batching on and off, in one run (issue 21, item 4).

    python -m benchmarks.triton_streams --artifact ART/model.onnx [--streams 1,4,16] [--frames 30]
    python -m benchmarks.triton_streams --artifact ART/model.onnx --compare segment   (issue 32)

Two tritonservers serve the export folder of ART (its `segment` model) on free local ports,
started together: with `--compare batching` one repository with dynamic batching and one without
(`segment` on ART); with `--compare segment` both batching, `segment` on the frames graph
(model.frames.onnx: no host preprocessing in the stub) and on ART (the Segmenter's host contract).
Then for each stream count the three targets run in turns (the two servers and the in-process
Segmenter on ART the streams share), `--rounds` times, so the VM's drifting speed hits them alike.
Frames: BUSI images at their native size ($LLM4SEG_DATA or ../shared/datasets), else synthetic;
`--size 256` resizes them all to one shape (Triton's dynamic batcher only batches equal shapes).
Prints frames/s (all streams), the median stream's p50 and the worst stream's p99, and errors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np

from llm4seg.runtime.tools.bench_streams import bench_streams
from llm4seg.runtime.doors.triton.repository import RepositoryOptions, write_repository
from llm4seg.runtime.doors.triton.server import TritonServer, free_port

DATASETS = Path(os.environ.get("LLM4SEG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


def frames(n: int = 32) -> list[np.ndarray]:
    paths = sorted((DATASETS / "busi" / "images").glob("*.png"))[:n]
    if paths:
        return [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]
    from llm4seg.data.synthetic import synthetic_dataset

    return list(synthetic_dataset(n, 320, seed=3)[0])


def server(art: Path, work: Path, name: str, batching: bool, segment: str | None = None) -> TritonServer:
    repo = write_repository(art, work / name, RepositoryOptions(segment_artifact=segment, dynamic_batching=batching))
    return TritonServer(repo.folder, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                        models=["segment"], log_path=work / f"{name}.tritonserver.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--streams", default="1,4,16")
    parser.add_argument("--frames", type=int, default=30, help="frames per stream")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", choices=("batching", "segment"), default="batching",
                        help="batching: dynamic batching on vs off; segment: `segment` on the frames graph vs on ART")
    parser.add_argument("--size", type=int, help="resize every frame to SIZE x SIZE (one probe type: Triton batches "
                        "only requests of the same shape); default: native sizes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triton_streams_"))
    images = frames()
    if args.size:
        images = [cv2.resize(im, (args.size, args.size), interpolation=cv2.INTER_AREA) for im in images]
    art = args.artifact.parent
    if args.compare == "segment":
        frames_graph = args.artifact.name.replace(".onnx", ".frames.onnx")
        servers = {"triton, frames graph": server(art, work, "graph", True, frames_graph),
                   "triton, Segmenter + graph": server(art, work, "host", True, args.artifact.name)}
    else:
        servers = {"triton, dynamic batching": server(art, work, "on", True, args.artifact.name),
                   "triton, no batching": server(art, work, "off", False, args.artifact.name)}
    for s in servers.values():
        s.start()
    try:
        for s in servers.values():
            s.wait_ready()
        targets = {name: f"{s.urls['grpc']}/segment" for name, s in servers.items()}
        targets["in-process Segmenter"] = str(args.artifact)
        print(f"artifact {args.artifact}; {len(images)} frames at {f'{args.size} px' if args.size else 'native size'}; {args.frames} frames per stream; "
              f"{args.rounds} interleaved rounds, medians; gRPC")
        print(f"{'target':>26} {'streams':>7} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for n in [int(x) for x in args.streams.split(",")]:
            runs = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, engine in targets.items():
                    runs[name].append(bench_streams(engine, images, n, args.frames))
            for name, rs in runs.items():
                fps = statistics.median(r["fps"] for r in rs)
                p50 = statistics.median(statistics.median(s["p50"] for s in r["per_stream"]) for r in rs)
                p99 = statistics.median(max(s["p99"] for s in r["per_stream"]) for r in rs)
                print(f"{name:>26} {n:>7} {fps:>9.1f} {p50:>8.1f} {p99:>8.1f} {sum(r['errors'] for r in rs):>6}")
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
