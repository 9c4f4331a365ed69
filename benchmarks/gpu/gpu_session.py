"""One time-boxed device call: every GPU check of this project, in order of value.

1. BUSI split 1 training step speed, authors' way vs this project's (gpu_train_busi.py).
2. A real `llm4seg train` run on BUSI split 1 with the LLaMA-1B-shaped layer: as many of the
   paper's 300 epochs as fit the budget (all 300 when the measured speed allows), timed end to
   end; its best checkpoint comes back packed (checkpoint_transfer.py) for CPU export checks.
3. Runtime latency and throughput (gpu_runtime.py), beside the torch.compile one-liner; then the
   warm start (a fresh process loading the AOTInductor package that stage compiled); then the
   trained BUSI checkpoint exported and its AOTInductor package's masks on val1 against the FP32
   ONNX graph's (the issue's Dice agreement >= 0.999).
4. If time is left: 1, 3 and 6 concurrent training runs (concurrent_runs.py), then the
   torch.compile training case.

Each stage runs in its own process under a timeout, so one failure leaves the others' results.
Files under --out stay within the device tool's limits (8 files, 16 MiB each): every stage's JSON is
folded into one session.json (key: the stage's file name) as soon as the stage ends, so a session
cut short keeps what ran; the packed checkpoint (busi_run/, 4 files) is the rest.

Run there (device tool, carry .device_carry; the image has torch but not this package, and
llm4seg.export / llm4seg.runtime live in export/ and runtime/, so assemble one package, with
benchmarks/ beside it, and run from there):
  mkdir -p /tmp/pkg && cp -r llm4seg benchmarks /tmp/pkg/ && cp -r export /tmp/pkg/llm4seg/export \
    && cp -r runtime /tmp/pkg/llm4seg/runtime && export PYTHONUNBUFFERED=1 && REPO=$PWD && cd /tmp/pkg \
    && python3 -m benchmarks.gpu.gpu_session --npz $REPO/.device_carry/busi_256.npz --out $OUT --budget-s 470
(--npz: device_dataset.py's pack of every split, 26 MB, which the comparison slots carry too.)
Smoke here: python -m benchmarks.gpu.gpu_session --npz ... --out /tmp/s --device cpu --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llm4seg.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parents[2]  # the repository: stages run as `python -m benchmarks...` from it
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


def fold_results(out: Path) -> None:
    """Move every top-level *.json under `out` into out/session.json (one file back, not many)."""
    bundle = out / "session.json"
    merged = json.loads(bundle.read_text()) if bundle.is_file() else {}
    loose = [p for p in sorted(out.glob("*.json")) if p != bundle]
    for path in loose:
        try:
            merged[path.name] = json.loads(path.read_text())
        except ValueError:
            merged[path.name] = {"unreadable": path.read_text()[-2000:]}
    if loose:
        write_json_atomic(bundle, merged)
        for path in loose:
            path.unlink()


def run_stage(name: str, cmd: list[str], timeout_s: float, out: Path | None = None) -> tuple[int, float]:
    """Run one stage under a timeout; with `out`, fold its JSON into session.json afterwards."""
    log(f"{name}: {' '.join(cmd)} (timeout {timeout_s:.0f} s)")
    t = time.monotonic()
    try:
        rc = subprocess.run(cmd, timeout=max(timeout_s, 1), cwd=ROOT).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    wall_s = time.monotonic() - t
    log(f"{name}: rc={rc} in {wall_s:.1f} s")
    if out is not None:
        fold_results(out)
    return rc, wall_s


def fresh_work(work: Path) -> None:
    """Empty what an earlier call left in `work`: a warm device keeps /tmp between calls, and a
    second call must neither fail on the old run folder nor pack it, report its export, or time
    warm compile caches as cold ones (Inductor's own cache moves into `work` for the same reason)."""
    for stale in ("run", "busi_art", "runtime", "inductor"):
        shutil.rmtree(work / stale, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor")  # inherited by every stage


def folder_from_npz(npz: str, root: Path) -> None:
    """The packed dataset (device_dataset.py's pack of every split) as a dataset folder."""
    from benchmarks.gpu.device_dataset import unpack

    unpack(Path(npz), root)


def fastest_step_mode(train_json: Path) -> str:
    """'graph' when the speed stage ran the CUDA-graph step and it beat eager, else 'eager' (a
    capture that failed there must not cost the long training run)."""
    try:
        results = {r["way"]: r for r in json.loads(train_json.read_text())["results"]}
        eager = next(r for w, r in results.items() if w.startswith("project") and "graph" not in w)
        graph = next(r for w, r in results.items() if "graph" in w)
        return "graph" if graph["it_per_s"] > eager["it_per_s"] else "eager"
    except (OSError, ValueError, StopIteration, KeyError):
        return "eager"


def epochs_that_fit(train_json: Path, budget_s: float, cap: int, step_mode: str = "eager") -> int:
    """From the measured step speed; 1.25x for the loop's logging, metrics and checkpoint writes."""
    try:
        results = json.loads(train_json.read_text())["results"]
        ways = [r for r in results if r["way"].startswith("project") and ("graph" in r["way"]) == (step_mode == "graph")]
        r = ways[0]
        epoch_s = r["steps_per_epoch"] / r["it_per_s"] + r["val_s"]
    except (OSError, ValueError, IndexError, KeyError):
        return 30  # no speed measured: a short run still yields a trained model
    return int(max(1, min(cap, budget_s / (1.25 * epoch_s))))


def busi_agreement(py: str, best: Path, work: Path, out: Path, device: str, smoke: bool) -> None:
    """The issue's mask check on real data: the trained BUSI checkpoint exported, then its
    AOTInductor package (FP16 on the GPU) against the FP32 ONNX graph (onnxruntime, CPU) on the
    val1 images: Dice of the masks against ground truth and agreement with the FP32 masks."""
    art = work / "busi_art"
    rc, _ = run_stage("export-busi", [py, "-m", "llm4seg.cli.main", "export", str(best), "--out", str(art), "--pt2"], 150)
    if rc != 0:
        return
    cmd = [py, "-m", "llm4seg.cli.main", "bench", "--engine", str(art / "model.onnx"), "--engine", str(art / "model.pt2"),
           "--compile", "aoti", "--data", str(work / "busi"), "--split", "val1", "--limit", "16" if smoke else "195",
           "--batch", "8", "--iterations", "3", "--warmup", "1", "--json"]
    log("agreement: " + " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        result = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-1000:]}
    except (subprocess.TimeoutExpired, ValueError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    (out / "busi_agreement.json").write_text(json.dumps(result, indent=1))
    fold_results(out)
    for row in result.get("results", []):
        log(f"agreement: {Path(row['artifact']).name} Dice {row.get('dice')} agreement {row.get('dice_agreement_with_first')}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--npz", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=480, help="Wall time for all stages together.")
    p.add_argument("--train-budget-s", type=float, default=220)
    p.add_argument("--smoke", action="store_true", help="Tiny sizes, for a CPU check of the script itself.")
    args = p.parse_args()
    out, work = Path(args.out), Path("/tmp/llm4seg_gpu_session")
    out.mkdir(parents=True, exist_ok=True)
    fresh_work(work)
    py, smoke = sys.executable, args.smoke
    folder_from_npz(args.npz, work / "busi")
    log("dataset folder written")
    tiny = ["--limit", "16", "--iterations", "2", "--warmup", "1"] if smoke else ["--iterations", "40", "--warmup", "10"]
    run_stage("train-speed", [py, "-m", "benchmarks.gpu.gpu_train_busi", "--npz", args.npz, "--out", str(out),
                              "--device", args.device, "--ways", "authors,project,graph", *tiny], 150)

    step_mode = fastest_step_mode(out / "gpu_train.json")
    epochs = 1 if smoke else epochs_that_fit(out / "gpu_train.json", args.train_budget_s, 300, step_mode)
    log(f"train-busi: {epochs} epochs, --step-mode {step_mode}")
    run_dir = work / "run"
    train_cmd = [py, "-m", "llm4seg.cli.main", "train", "--model", "llm4seg_random", "--llm", "shape:llama-3.2-1b",
                 "--data", str(work / "busi"), "--split", "train1", "--epochs", str(epochs), "--out", str(run_dir),
                 "--device", args.device, "--step-mode", step_mode, "--json", *(["--image-size", "64"] if smoke else [])]
    left = args.budget_s - (time.monotonic() - T0)
    rc, wall_s = run_stage("train-busi", train_cmd, min(args.train_budget_s + 90, left - 60))
    (out / "busi_train_wall.json").write_text(json.dumps({"epochs": epochs, "step_mode": step_mode, "rc": rc,
                                                          "wall_s": wall_s}))
    fold_results(out)  # gpu_train.json (read above) and busi_train_wall.json
    best = run_dir / "checkpoints" / "best"
    if best.is_dir():
        run_stage("pack", [py, "-m", "benchmarks.gpu.checkpoint_transfer", "pack", str(best), str(out / "busi_run")], 120)
        if (run_dir / "metrics.jsonl").is_file():
            (out / "busi_run" / "metrics.jsonl").write_bytes((run_dir / "metrics.jsonl").read_bytes())

    left = args.budget_s - (time.monotonic() - T0)
    small = ["--image-size", "32", "--large-batch", "2", "--iterations", "2", "--warmup", "1"] if smoke else ["--iterations", "30"]
    run_stage("runtime", [py, "-m", "benchmarks.gpu.gpu_runtime", "--out", str(out), "--device", args.device,
                          "--skip-onnx", "--work", str(work / "runtime"), *small], min(400 if smoke else 210, left - 10), out)
    pt2 = work / "runtime" / "art" / "model.pt2"
    if pt2.is_file() and any((work / "runtime" / "cache").glob("compiled/*/model.aoti.pt2")):
        # The warm-start target: a fresh process loading the package the stage above compiled.
        try:
            warm = subprocess.run([py, "-m", "benchmarks.compile_warm_start", "--pt2", str(pt2), "--device", args.device,
                                   "--warm-only", str(work / "runtime" / "cache")], capture_output=True, text=True,
                                  timeout=120, cwd=ROOT)
            line = (warm.stdout.strip().splitlines() or [json.dumps({"error": warm.stderr[-300:]})])[-1]
        except subprocess.TimeoutExpired:
            line = json.dumps({"error": "warm start took over 120 s"})
        (out / "warm_start.json").write_text(line + "\n")
        fold_results(out)
        log(f"warm start: {line}")
    left = args.budget_s - (time.monotonic() - T0)
    if best.is_dir() and left > 220:
        busi_agreement(py, best, work, out, args.device, smoke)
    left = args.budget_s - (time.monotonic() - T0)
    if left > 120:
        levels = ["--levels", "1,2", "--epochs", "1", "--image-size", "32", "--synthetic-count", "16"] if smoke else \
            ["--levels", "1,3,6", "--epochs", "2", "--data", str(work / "busi"), "--split", "train1"]
        run_stage("concurrent-runs", [py, "-m", "benchmarks.concurrent_runs", "--model", "llm4seg_random", "--llm",
                                      "shape:llama-3.2-1b", "--device", args.device, "--out", str(out),
                                      "--step-mode", step_mode, *levels], min(200, left - 60), out)
    left = args.budget_s - (time.monotonic() - T0)
    if left > 100:
        run_stage("train-speed-compile", [py, "-m", "benchmarks.gpu.gpu_train_busi", "--npz", args.npz, "--out", str(out),
                                          "--device", args.device, "--ways", "compile",
                                          "--json-name", "gpu_train_compile.json", *tiny], left - 10, out)
    fold_results(out)
    log("done; files: " + ", ".join(str(f.relative_to(out)) for f in sorted(out.rglob("*")) if f.is_file()))


if __name__ == "__main__":
    main()
