"""Many streams on Triton vs in-process, dynamic batching on and off, in one run (issue 21, item 4).

    python -m benchmarks.triton_streams --artifact ART/model.onnx [--streams 1,4,16] [--frames 30]
    python -m benchmarks.triton_streams --artifact ART/model.onnx --compare segment   (issue 32)
    python -m benchmarks.triton_streams --artifact ART/model.onnx --compare transport (issue 47)

Two tritonservers serve the export folder of ART (its `segment` model) on free local ports,
started together: with `--compare batching` one repository with dynamic batching and one without
(`segment` on ART); with `--compare segment` both batching, `segment` on the frames graph
(model.frames.onnx: no host preprocessing in the stub) and on ART (the Segmenter's host contract);
with `--compare transport` one server (batching, `segment` on its default artifact) and two kinds of
client: frames and probabilities through gRPC, and through system shared memory (`shm_key_file`).
Then for each stream count the three targets run in turns (the two servers and the in-process
Segmenter on ART the streams share), `--rounds` times, so the VM's drifting speed hits them alike.
Frames: BUSI images at their native size ($LLM4SEG_DATA or ../shared/datasets), else synthetic;
`--size 256` resizes them all to one shape (Triton's dynamic batcher only batches equal shapes).
Prints frames/s (all streams), the median stream's p50 and the worst stream's p99, errors, and each
target's frames/s and p50 as ratios to the in-process Segmenter's in the same rounds.
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


LOCAL = "in-process Segmenter"


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


def make_servers(args: argparse.Namespace, art: Path, work: Path) -> dict[str, TritonServer]:
    """The servers `--compare` asks for, by name (not started)."""
    if args.compare == "segment":
        frames_graph = args.artifact.name.replace(".onnx", ".frames.onnx")
        return {"triton, frames graph": server(art, work, "graph", True, frames_graph),
                "triton, Segmenter + graph": server(art, work, "host", True, args.artifact.name)}
    if args.compare == "transport":
        return {"triton": server(art, work, "one", True)}
    return {"triton, dynamic batching": server(art, work, "on", True, args.artifact.name),
            "triton, no batching": server(art, work, "off", False, args.artifact.name)}


def targets_for(args: argparse.Namespace, servers: dict[str, TritonServer]) -> dict[str, tuple[str, dict]]:
    """name -> (engine, backend options): the servers' clients and the in-process Segmenter last."""
    if args.compare == "transport":
        s = servers["triton"]
        url = f"{s.urls['grpc']}/segment"
        targets = {"triton, gRPC": (url, {}), "triton, shared memory": (url, {"shm_key_file": s.key_file})}
    else:
        targets = {name: (f"{s.urls['grpc']}/segment", {}) for name, s in servers.items()}
    return {**targets, LOCAL: (str(args.artifact), {})}


def print_rows(runs: dict[str, list[dict]], n: int) -> None:
    """One row per target: medians over the rounds, and ratios to the in-process Segmenter's."""
    med = {}
    for name, rs in runs.items():
        med[name] = (statistics.median(r["fps"] for r in rs),
                     statistics.median(statistics.median(s["p50"] for s in r["per_stream"]) for r in rs),
                     statistics.median(max(s["p99"] for s in r["per_stream"]) for r in rs),
                     sum(r["errors"] for r in rs))
    fps0, p50_0 = med[LOCAL][0], med[LOCAL][1]
    for name, (fps, p50, p99, errors) in med.items():
        print(f"{name:>28} {n:>7} {fps:>9.1f} {p50:>8.1f} {p99:>8.1f} {errors:>6} {fps / fps0:>11.3f} "
              f"{p50_0 / p50:>9.3f} {p99 / p50:>7.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--streams", default="1,4,16")
    parser.add_argument("--frames", type=int, default=30, help="frames per stream")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", choices=("batching", "segment", "transport"), default="batching",
                        help="batching: dynamic batching on vs off; segment: `segment` on the frames graph vs on ART; "
                        "transport: gRPC vs shared memory to one server")
    parser.add_argument("--size", type=int, help="resize every frame to SIZE x SIZE (one probe type: Triton batches "
                        "only requests of the same shape); default: native sizes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triton_streams_"))
    images = frames()
    if args.size:
        images = [cv2.resize(im, (args.size, args.size), interpolation=cv2.INTER_AREA) for im in images]
    art = args.artifact.parent
    servers = make_servers(args, art, work)
    for s in servers.values():
        s.start()
    try:
        for s in servers.values():
            s.wait_ready()
        targets = targets_for(args, servers)
        print(f"artifact {args.artifact}; {len(images)} frames at {f'{args.size} px' if args.size else 'native size'}; "
              f"{args.frames} frames per stream; {args.rounds} interleaved rounds, medians")
        print(f"{'target':>28} {'streams':>7} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'fps x local':>11} {'local/p50':>9} {'p99/p50':>7}")
        for n in [int(x) for x in args.streams.split(",")]:
            runs = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (engine, options) in targets.items():
                    runs[name].append(bench_streams(engine, images, n, args.frames, **options))
            print_rows(runs, n)
    finally:
        for s in servers.values():
            s.stop()
            s.remove_workdir(keep_log=False)


if __name__ == "__main__":
    main()
