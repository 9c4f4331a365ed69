"""`llm4seg bench`: latency, throughput, memory and Dice of artifacts, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import CompileOpt, DataOpt, JsonOpt, SplitOpt, check_compile
from llm4seg.cli.render import print_json, print_table, stderr, stdout


def _load_frames(data: str | None, split: str | None, limit: int):
    """Frames at their native size (RGB) and masks, or synthetic frames without masks."""
    if data is None:
        from llm4seg.data.synthetic import synthetic_dataset

        images, masks, _ = synthetic_dataset(8, 320, seed=3)
        return list(images), None
    from llm4seg.data.folder import read_pairs, scan_folder

    root = Path(data)
    images, masks, _, _ = read_pairs(scan_folder(root, split), skip_bad=False, root=root, limit=limit)
    return images, masks


def bench(
    engine: Annotated[list[Path], typer.Option("--engine", help="Artifact: .onnx, .plan or .pt2 from `llm4seg export`, or a served model "
                                                "grpc://HOST:8001/NAME (repeatable).")],
    data: DataOpt = None,
    split: SplitOpt = None,
    batch: Annotated[list[int], typer.Option("--batch", help="Batch sizes to time (repeatable).")] = [1],
    iterations: Annotated[int, typer.Option("--iterations", help="Timed runs per artifact and batch size.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs first (allocations, autotuning).")] = 3,
    limit: Annotated[int, typer.Option("--limit", help="Images of --data to score.")] = 64,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for bench.json and PNG plots.")] = None,
    interleave: Annotated[bool, typer.Option("--interleave", help="Load all artifacts and time them in turns "
                                             "(fair ratios on machines whose speed drifts; RSS is then the process's).")] = False,
    compile_with: CompileOpt = None,
    streams: Annotated[list[int], typer.Option("--streams", help="Concurrent ordered frame streams per engine "
                                               "(repeatable); reports aggregate frames/s and per-stream latency.")] = [],
    stream_frames: Annotated[int, typer.Option("--stream-frames", help="Frames each stream sends.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Benchmark one or more artifacts (or models on a Triton server) on this machine; frames are
    RGB at their native size.

    \b
    Examples:
      llm4seg bench --engine art/model.onnx --engine art/model.int8.onnx --batch 1 --batch 8 --interleave
      llm4seg bench --engine art/model.pt2 --compile aoti --batch 1 --batch 64
      llm4seg bench --engine grpc://127.0.0.1:8001/segment --engine art/model.onnx --streams 1 --streams 4
    """
    from llm4seg.runtime.tools.bench import bench_engines, machine_info

    _check_counts(list(batch), iterations, warmup, limit)
    check_compile(compile_with, list(engine))
    images, masks = _load_frames(data, split, limit)
    if streams:
        from llm4seg.cli.bench_streams_render import run_streams

        run_streams(list(engine), images, list(streams), stream_frames, out, json_out)
        return
    results = bench_engines(list(engine), list(batch), iterations, warmup, images, masks, interleave, compile_with)
    payload = {"machine": machine_info(), "data": data, "split": split,
               "scored_images": len(images) if masks is not None else 0, "results": results}
    if json_out:
        print_json(payload)
    else:
        _render(payload, results, masks is not None, len(images), data, limit)
    _write_outputs(out, payload, json_out)


def _check_counts(batches: list[int], iterations: int, warmup: int, limit: int) -> None:
    """Refuse counts below their minimum, naming the flag."""
    from llm4seg.errors import ConfigError

    for name, values, low in (("--batch", batches, 1), ("--iterations", [iterations], 1), ("--warmup", [warmup], 0),
                              ("--limit", [limit], 1)):
        bad = [v for v in values if v < low]
        if bad:
            raise ConfigError(f"{name} {bad[0]} must be at least {low}",
                              hint=f"e.g. {name} {max(low, 1) * 8 if name == '--batch' else 20}")


def _write_outputs(out: Path | None, payload: dict, json_out: bool) -> None:
    """bench.json, then the optional plot (results are already printed when the plot is tried)."""
    if not out:
        if not json_out:
            stdout.print("pass --out DIR to write bench.json and latency/Dice plots")
        return
    _write_json(out, payload)
    plotted = _write_plot(out, payload)
    if not json_out:
        stdout.print(f"wrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if plotted else ""), soft_wrap=True)


def _render(payload: dict, results: list[dict], scored: bool, n_images: int, data, limit) -> None:
    headers = ["artifact", "backend", "prec", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "pre/inf/post ms",
               "RSS MB", "Dice"]
    rows = []
    for r in results:
        lat, br = r["latency_ms"], r["breakdown_ms"]
        backend = r["backend"] + (f"+{r['compiled']['compiler']}" if r.get("compiled") else "")
        rows.append([Path(r["artifact"]).name, backend, str(r["precision"]), str(r["batch"]), f"{lat['p50']:.1f}",
                     f"{lat['p90']:.1f}", f"{lat['p99']:.1f}", f"{r['throughput_ips']:.1f}",
                     f"{br['preprocess']:.1f}/{br['inference']:.1f}/{br['postprocess']:.1f}", f"{r['peak_rss_mb']:.0f}",
                     f"{r['dice']:.4f}" if "dice" in r else "-"])
    print_table(f"llm4seg bench on {payload['machine'].get('cpu')}", headers, rows)
    if scored:
        where = f"split {payload['split']} of {data}" if payload.get("split") else f"{data} (every image: no --split)"
        stdout.print(f"Dice scored on {n_images} image(s) of {where} (--limit {limit})", soft_wrap=True)
    compiled: dict[str, dict] = {}  # one line per artifact: its first row's compile
    for r in results:
        if r.get("compiled"):
            compiled.setdefault(r["artifact"], r["compiled"])
    for artifact, c in compiled.items():
        if c["compile_s"] is None:  # Inductor compiles at the first call (within the warm-up runs)
            how = "compiled at its first call, kernels cached"
        else:
            how = "loaded from the cache" if c["cache_hit"] else f"compiled in {c['compile_s']:.1f} s and cached"
        stdout.print(f"{Path(artifact).name}: {c['compiler']} {how}")


def _write_json(out: Path, payload: dict) -> None:
    from llm4seg.fileio import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", payload)


def _write_plot(out: Path, payload: dict) -> bool:
    """bench.png where matplotlib imports (the `plot` extra); a runtime-only install skips it, saying so."""
    from llm4seg._optional import require
    from llm4seg.errors import BackendUnavailableError

    try:
        matplotlib = require("matplotlib", "bench plots")
    except BackendUnavailableError as exc:
        stderr.print(f"bench.png not written: matplotlib is not installed ({exc.hint})", soft_wrap=True, markup=False)
        return False
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    results = payload["results"]
    # Per-image latency, so rows of different batch sizes compare on one axis.
    labels = [f"{Path(r['artifact']).name} b{r['batch']}" for r in results]
    p50 = [r["latency_ms"]["p50"] / r["batch"] for r in results]
    p99 = [r["latency_ms"]["p99"] / r["batch"] for r in results]
    ax1.barh(labels, p50, label="p50")
    ax1.barh(labels, [b - a for a, b in zip(p50, p99)], left=p50, alpha=0.5, label="p50..p99")
    ax1.set_xlabel("latency per image (ms)")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)  # below the axes, off the bars
    scored = [r for r in results if "dice" in r]
    for r in scored:  # one legend entry per point: labels beside near-equal points would overlap
        ax2.scatter(r["latency_ms"]["p50"] / r["batch"], r["dice"],
                    label=f"{Path(r['artifact']).name} b{r['batch']}: Dice {r['dice']:.4f}, "
                          f"agreement {r['dice_agreement_with_first']:.4f}")
    if scored:
        ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7)
    ax2.set_ylim(0, 1)  # the full scale: differences of 0.0005 must not look like gaps
    ax2.set_xlim(0, 1.15 * max([r["latency_ms"]["p50"] / r["batch"] for r in scored], default=1.0))
    ax2.set_xlabel("ms per image (p50)")
    ax2.set_ylabel("Dice vs masks")
    if not scored:
        ax2.text(0.5, 0.5, "no --data: Dice not scored", ha="center", va="center", transform=ax2.transAxes)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=90, bbox_inches="tight")  # the legends sit below the axes
    plt.close(fig)
    return True
