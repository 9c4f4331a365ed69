"""One device slot of a comparison matrix (issue 11): continue `llm4seg compare` where the last
slot stopped, for at most --minutes, and bring back what the next slot needs.

The device keeps nothing between slots and returns at most 8 files of 16 MiB, so a slot carries
in the packed dataset (device_dataset.py), the one-layer LLM folder (one_layer_folder.py) and the
previous slot's state archive, and sends back: compare_state.tgz (compare.json and each finished
run's scores.json, all a rerun needs to skip those runs), report.md, report.json, compare.png.
Runs unfinished when the slot ends start again in the next slot (their checkpoints are too big to
send back); `--stop-after` keeps new runs from starting too late to finish.

Run there (device tool, carry .device_carry; assemble the package as gpu_session.py shows):
  python3 -m benchmarks.gpu.gpu_compare_slot --npz .device_carry/busi_256.npz --llm .device_carry/smollm2_l27 \
    --state .device_carry/compare_state.tgz --splits train1,train2,train3 --seeds 0 \
    --variants cmunext,llm4seg,llm4seg_random --parallel 3 --step-mode graph --minutes 9 --out $OUT
Then here: copy $OUT's compare_state.tgz to .device_carry/ for the next slot.
Smoke here: python -m benchmarks.gpu.gpu_compare_slot --npz D.npz --seeds 0 --variants cmunext_s,cmunext \
    --epochs 1 --image-size 32 --device cpu --minutes 5 --out /tmp/slot
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from llm4seg.fileio import file_sha256, write_json_atomic

ROOT = Path(__file__).resolve().parents[2]  # the repository, where `python -m benchmarks...` runs


def restore(state: Path | None, cmp_dir: Path, data: Path, npz_sha256: str) -> int:
    """Unpack the previous slot's archive into the comparison folder; returns the runs restored.
    The archive must come from the same packed dataset; the comparison's data path is then
    pointed at this slot's unpacked copy (the folder may differ between machines)."""
    if state is None or not state.is_file():
        return 0
    with tarfile.open(state) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and not Path(m.name).is_absolute() and ".." not in m.name]
        tar.extractall(cmp_dir, members=members)
    origin = json.loads((cmp_dir / "slot_data.json").read_text())["npz_sha256"]
    if origin != npz_sha256:
        sys.exit(f"{state} was made with another packed dataset (sha256 {origin[:12]}, this one {npz_sha256[:12]})")
    spec = json.loads((cmp_dir / "compare.json").read_text())
    spec["matrix"]["data"] = str(data)
    (cmp_dir / "compare.json").write_text(json.dumps(spec))
    return sum(1 for m in members if m.name.endswith("scores.json"))


def save(cmp_dir: Path, out: Path, npz_sha256: str) -> list[str]:
    """compare_state.tgz + the report files into `out`; returns the finished runs."""
    finished = sorted(str(p.relative_to(cmp_dir)) for p in cmp_dir.glob("runs/*/scores.json"))
    (cmp_dir / "slot_data.json").write_text(json.dumps({"npz_sha256": npz_sha256}))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".compare_state.tgz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for name in ["compare.json", "slot_data.json", *finished]:
            if (cmp_dir / name).is_file():
                tar.add(cmp_dir / name, arcname=name)
    tmp.replace(out / "compare_state.tgz")
    for name in ("report.md", "report.json", "compare.png"):
        if (cmp_dir / name).is_file():
            shutil.copyfile(cmp_dir / name, out / name)
    return finished


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--npz", required=True, help="dataset packed by device_dataset.py")
    p.add_argument("--llm", default=None)
    p.add_argument("--state", default=None, help="compare_state.tgz of the previous slot, if any")
    p.add_argument("--variants", default="cmunext,llm4seg,llm4seg_random")
    p.add_argument("--splits", default=None)
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--parallel", type=int, default=3)
    p.add_argument("--step-mode", default="eager")
    p.add_argument("--device", default="cuda")
    p.add_argument("--paper-double-scaling", action="store_true", help="the authors' extra /255 (compare's option)")
    p.add_argument("--minutes", type=float, default=9.0, help="the slot's wall budget for the comparison")
    p.add_argument("--start-by", type=float, default=None,
                   help="minutes after which no run starts (default: half of --minutes; set it from the run time seen)")
    p.add_argument("--work", default="/tmp/llm4seg_compare_slot")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    t0 = time.monotonic()
    work, out = Path(args.work), Path(args.out)
    data, cmp_dir = work / "data", work / "cmp"
    if not (data / "splits").is_dir():
        subprocess.run([sys.executable, "-m", "benchmarks.gpu.device_dataset", "unpack", "--npz", args.npz, "--out", str(data)],
                       check=True, cwd=ROOT)
    npz_sha256 = file_sha256(Path(args.npz))
    restored = restore(Path(args.state) if args.state else None, cmp_dir, data, npz_sha256)
    print(f"restored {restored} finished run(s) from {args.state}", flush=True)
    start_by = args.start_by if args.start_by is not None else args.minutes / 2
    cmd = [sys.executable, "-m", "llm4seg.cli.main", "compare", "--data", str(data), "--variants", args.variants,
           "--seeds", args.seeds, "--epochs", str(args.epochs), "--image-size", str(args.image_size),
           "--parallel", str(args.parallel), "--step-mode", args.step_mode, "--device", args.device,
           "--stop-after", f"{start_by:g}", "--out", str(cmp_dir), "--json"]
    cmd += ["--splits", args.splits] if args.splits else []
    cmd += ["--llm", args.llm] if args.llm else []
    cmd += ["--paper-double-scaling"] if args.paper_double_scaling else []
    left_s = 60 * args.minutes - (time.monotonic() - t0)
    try:
        proc = subprocess.run(cmd, timeout=max(left_s, 1), capture_output=True, text=True)
        rc, tail = proc.returncode, proc.stderr[-2000:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, "slot time over: runs in progress are lost and start again in the next slot"
    if rc:  # the report of what did finish: --stop-after 0 starts nothing and only reports
        stop = cmd.index("--stop-after")
        subprocess.run(cmd[:stop + 1] + ["0"] + cmd[stop + 2:], capture_output=True, timeout=120)
    finished = save(cmp_dir, out, npz_sha256)
    summary = {"rc": rc, "restored": restored, "finished": finished, "wall_s": time.monotonic() - t0,
               "start_by_min": start_by, "stderr_tail": tail}
    write_json_atomic(out / "slot.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "stderr_tail"}), flush=True)
    if rc:
        print(tail, file=sys.stderr)


if __name__ == "__main__":
    main()
