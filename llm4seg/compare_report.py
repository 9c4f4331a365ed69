"""The comparison's report: report.json, report.md, per_image.csv and compare.png (IoU per variant,
one dot per run, lines joining the runs of the same split and seed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.fileio import atomic_path, write_json_atomic
from llm4seg.metrics import METRIC_NAMES
from llm4seg.paired import cell_name, paired


def _summary(results: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    mine = [r for r in results if r["variant"] == variant]
    out: dict[str, Any] = {"runs": len(mine)}
    for metric in ("iou", "dice"):
        values = np.array([r["metrics"][metric] for r in mine], dtype=float)
        out[metric] = {"mean": float(values.mean()) if len(values) else None,
                       "sd": float(values.std(ddof=1)) if len(values) > 1 else None}
    return out


def build_report(matrix: Any, results: list[dict[str, Any]], failures: list[Any] | None = None) -> dict[str, Any]:

    """The comparison report: per-variant means and sds, paired differences against the baseline
    over matched (split, seed) cells, and the cells still missing.
    """
    base = matrix.variants[0]
    done = {cell_name(r["variant"], None if r["split"] == "all" else r["split"], r["seed"]) for r in results}
    missing = [cell_name(*c) for c in matrix.cells() if cell_name(*c) not in done]
    return {
        "baseline": base, "data": matrix.data or "synthetic", "variants": matrix.variants,
        "splits": [s or "all" for s in matrix.splits], "seeds": matrix.seeds, "train": matrix.train,
        "runs": [{k: r[k] for k in ("variant", "split", "seed", "val", "n", "metrics")} for r in results],
        "per_variant": {v: _summary(results, v) for v in matrix.variants},
        "paired_vs_baseline": {v: {m: paired(results, base, v, m) for m in ("iou", "dice")} for v in matrix.variants[1:]},
        "missing": missing,
        "failed": [{"cell": f.cell, "attempts": f.attempts, "error": f.error} for f in failures or []],
        "units": "metrics and paired differences here are fractions (0-1); report.md shows them in % and "
                 "differences in percentage points",
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def settings_text(train: dict[str, Any], data: str) -> str:
    """The cells' training settings as the `llm4seg compare` flags that give them ('--epochs 300
    --image-size 256 ...'): flags set to false or unset are left out, and --synthetic-count when
    the cells train on a dataset folder (it applies to the synthetic set only)."""
    flags = []
    for key, value in train.items():
        if value is None or value is False or (key == "synthetic_count" and data != "synthetic"):
            continue
        flag = "--" + key.replace("_", "-")
        flags.append(flag if value is True else f"{flag} {value}")
    return " ".join(flags)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown document (tables of means and paired differences)."""
    lines = [f"# Comparison on {report['data']} (baseline: {report['baseline']})", "",
             f"Splits {', '.join(report['splits'])}; seeds {', '.join(map(str, report['seeds']))}; "
             f"settings `{settings_text(report['train'], report['data'])}`.", "",
             "| variant | runs | IoU mean (%) | IoU sd (%) | Dice mean (%) | Dice sd (%) |", "|---|---:|---:|---:|---:|---:|"]
    for v, s in report["per_variant"].items():
        lines.append(f"| {v} | {s['runs']} | {_pct(s['iou']['mean'])} | {_pct(s['iou']['sd'])} | "
                     f"{_pct(s['dice']['mean'])} | {_pct(s['dice']['sd'])} |")
    lines += ["", "Paired differences against the baseline (same split and seed), in percentage points, with a 95 % t interval:", "",
              "| variant | pairs | IoU delta | 95 % CI | Dice delta | 95 % CI |", "|---|---:|---:|---|---:|---|"]
    for v, p in report["paired_vs_baseline"].items():
        cells = []
        for m in ("iou", "dice"):
            d = p[m]
            ci = f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if "ci95" in d else "-"
            cells += [f"{100 * d['mean']:+.2f}" if "mean" in d else "-", ci]
        lines.append(f"| {v} | {p['iou']['n']} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    lines += ["", "| run | val | images | IoU | Dice |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['variant']} {r['split']} seed {r['seed']} | {r['val']} | {r['n']} | {_pct(r['metrics']['iou'])} | "
              f"{_pct(r['metrics']['dice'])} |" for r in report["runs"]]
    if report["missing"]:
        lines += ["", f"Missing runs (not estimated): {', '.join(report['missing'])}"]
    for failed in report.get("failed", []):
        lines += [f"- {failed['cell']} failed after {failed['attempts']} attempt(s): {failed['error']}"]
    return "\n".join(lines) + "\n"


MIN_SPAN_POINTS = 10.0  # the IoU axis spans at least this: a 0.7-point gap must not look like a cliff


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = require("matplotlib.pyplot")
    fig = compare_figure(report)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def compare_figure(report: dict[str, Any]) -> Any:
    """compare.png's figure: IoU per run on an axis spanning at least MIN_SPAN_POINTS, and the
    paired differences against the baseline with their intervals (the figure is the caller's)."""
    matplotlib = require("matplotlib", "the comparison plot")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    variants = report["variants"]
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(3.6 + 2.4 * len(variants), 4),
                                   gridspec_kw={"width_ratios": [len(variants), max(1, len(variants) - 1)]})
    by_pair: dict[tuple[str, int], dict[str, float]] = {}
    for r in report["runs"]:
        by_pair.setdefault((r["split"], r["seed"]), {})[r["variant"]] = 100 * r["metrics"]["iou"]
    for (split, seed), values in sorted(by_pair.items()):
        xs = [i for i, v in enumerate(variants) if v in values]
        ax.plot(xs, [values[variants[i]] for i in xs], marker="o", alpha=0.7, label=f"{split} s{seed}")
    all_values = [v for values in by_pair.values() for v in values.values()] or [0.0]
    middle, span = (max(all_values) + min(all_values)) / 2, max(MIN_SPAN_POINTS, max(all_values) - min(all_values) + 2)
    ax.set_ylim(middle - span / 2, middle + span / 2)
    ax.set_xticks(range(len(variants)), variants, rotation=15)
    ax.set_ylabel(f"val IoU (%); the axis spans {span:.0f} points")
    ax.set_title("IoU per run; lines join the same split and seed", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    _plot_paired(ax_d, report)
    fig.tight_layout()
    return fig


def _plot_paired(ax: Any, report: dict[str, Any]) -> None:
    """Paired IoU differences against the baseline with their 95 % t intervals, and the zero line."""
    others = list(report["paired_vs_baseline"])
    for i, v in enumerate(others):
        d = report["paired_vs_baseline"][v]["iou"]
        if "mean" not in d:
            continue
        low, high = d.get("ci95", (d["mean"], d["mean"]))
        ax.errorbar([i], [100 * d["mean"]], yerr=[[100 * (d["mean"] - low)], [100 * (high - d["mean"])]],
                    fmt="o", capsize=6, color="black")
        ax.annotate(f"{100 * d['mean']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]", (i, 100 * d["mean"]),
                    textcoords="offset points", xytext=(8, 0), fontsize=7, va="center")
    ax.axhline(0.0, color="grey", lw=1)
    ax.set_xticks(range(len(others)), others, rotation=15)
    ax.set_xlim(-0.5, len(others) - 0.2)
    ax.set_ylabel(f"IoU minus {report['baseline']} (points)")
    ax.set_title("paired difference, 95 % CI", fontsize=9)


def write_report(matrix: Any, results: list[dict[str, Any]], out: Path, failures: list[Any] | None = None) -> dict[str, Any]:
    """Write report.json, report.md and per_image.csv into `out`, each atomically; returns the report
    (cells that failed after their retries listed under `failed`, with attempts and error)."""
    report = build_report(matrix, results, failures)
    write_json_atomic(out / "report.json", report)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(report))
    with atomic_path(out / "per_image.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["variant", "split", "seed", "stem", *METRIC_NAMES])
            writer.writeheader()
            for r in results:
                for row in r["per_image"]:
                    writer.writerow({"variant": r["variant"], "split": r["split"], "seed": r["seed"], **row})
    _plot(report, out / "compare.png")
    report["files"] = [str(out / n) for n in ("report.md", "report.json", "per_image.csv", "compare.png")]
    return report
