"""`llm4seg compare`: a matrix of variants x splits x seeds, trained and scored the same way, with
paired deltas against the baseline.

The paper's gains (< 1 IoU point) are smaller than BUSI's split-to-split spread (~2.4), so only
paired differences (same split, same seed, different variant) say anything. Every cell is an
ordinary run folder (`runs/<variant>-<split>-s<seed>/`), so a killed matrix continues where it
stopped: finished cells (scored) are kept, started ones resume, the rest start. Several cells
can run at once as separate processes (`parallel`), which is how one GPU serves small models.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from llm4seg.compare_cell import Matrix, run_cell
from llm4seg.errors import ConfigError, Llm4SegError
from llm4seg.executors import CellFailure, ExecutorOptions, attempts_of, check_shared_path, run_cells
from llm4seg.fileio import write_json_atomic
from llm4seg.paired import cell_name, paired, t975  # noqa: F401  (re-exported)


def seeds_from_text(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; a ConfigError naming the first entry that is not an integer."""
    seeds = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if not item.lstrip("-").isdigit():
            raise ConfigError(f"--seeds {text!r}: {item!r} is not an integer", hint="e.g. --seeds 0,1,2")
        seeds.append(int(item))
    return seeds


def check_run_options(parallel: int, stop_after_min: float | None) -> None:
    """Refuse a --parallel below 1 or a negative --stop-after (minutes)."""
    if parallel < 1:
        raise ConfigError(f"--parallel {parallel} must be at least 1", hint="e.g. --parallel 3 on a GPU")
    if stop_after_min is not None and stop_after_min < 0:
        raise ConfigError(f"--stop-after {stop_after_min:g} must be at least 0 minutes", hint="e.g. --stop-after 7")


def _check(matrix: Matrix) -> None:
    from llm4seg.models.registry import list_models

    unknown = [v for v in matrix.variants if v not in list_models()]
    if unknown or len(matrix.variants) < 2:
        raise ConfigError(f"--variants {','.join(matrix.variants)}: {'unknown ' + ', '.join(unknown) if unknown else 'need at least 2'}",
                          hint=f"the first is the baseline; choose from {', '.join(list_models())}")
    if not matrix.seeds:
        raise ConfigError("--seeds is empty", hint="e.g. --seeds 0,1")


def _die_with_parent() -> None:
    """In the cell's process (Linux): SIGTERM it when the compare process dies, even by SIGKILL, so
    no orphaned cell goes on writing its run folder. Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _subprocess_cell(matrix: Matrix, out: Path, cell: tuple[str, str | None, int]) -> dict[str, Any]:
    spec = out / "compare.json"
    # `python -c` puts the working directory first on sys.path: a folder named llm4seg there (a
    # clone's parent) would shadow the installed package, so that entry is dropped first.
    code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            "import json; from pathlib import Path; from llm4seg.executors import cell_job; "
            "m = json.loads(Path(sys.argv[1]).read_text())['matrix']; "
            "cell_job(m, sys.argv[2], (sys.argv[3], None if sys.argv[4] == '-' else sys.argv[4], int(sys.argv[5])))")
    variant, split, seed = cell
    proc = subprocess.run([sys.executable, "-c", code, str(spec), str(out), variant, split or "-", str(seed)],
                          capture_output=True, text=True, preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        raise Llm4SegError(f"cell {cell_name(*cell)} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
                           hint=f"see {out / 'runs' / cell_name(*cell) / 'train.log'}; rerun `llm4seg compare` to continue")
    return json.loads((out / "runs" / cell_name(*cell) / "scores.json").read_text())


def run_matrix(matrix: Matrix, out: Path, parallel: int = 1,
               on_cell: Callable[[dict[str, Any]], None] | None = None,
               stop_after_s: float | None = None,
               on_epoch: Callable[[str], None] | None = None,
               executor: ExecutorOptions | None = None) -> dict[str, Any]:
    """Run every cell (continuing a killed matrix) and write the report; returns the report.

    Args:
        stop_after_s: start no cell after this many seconds (started ones finish); the report then
            lists the cells not run as missing, and a rerun continues with them.
        on_epoch: gets one line per finished epoch of any cell (cell, epoch, val IoU, time left).
        executor: where cells run (llm4seg/executors.py): local (default), ray or slurm.
    """
    _check(matrix)
    executor = executor or ExecutorOptions(parallel=parallel)
    executor.check()
    if executor.kind != "local" and stop_after_s is not None:
        raise ConfigError("--stop-after applies to --executor local", hint="a cluster runs every cell; drop --stop-after")
    check_shared_path(matrix.data, "--data")
    out = Path(out)
    spec = out / "compare.json"
    if spec.is_file():
        saved = json.loads(spec.read_text())["matrix"]
        wanted = json.loads(json.dumps(asdict(matrix)))
        if saved != wanted:
            diff = "; ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now"
                             for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k))
            raise ConfigError(f"{out} holds another comparison ({diff})",
                              hint="rerun with the same options to continue it, or pass another --out")
    write_json_atomic(spec, {"format": "llm4seg-compare", "matrix": asdict(matrix)})
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s

    def cell_result(cell: tuple[str, str | None, int]) -> dict[str, Any] | None:
        scored = out / "runs" / cell_name(*cell) / "scores.json"
        if scored.is_file():  # finished earlier: kept whatever the deadline
            return json.loads(scored.read_text())
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if parallel <= 1:
            return run_cell(matrix, out, cell)
        for attempt in range(executor.retries + 1):  # a cell process that dies is run again (it resumes)
            try:
                return _subprocess_cell(matrix, out, cell)
            except Llm4SegError as exc:
                if attempt == executor.retries:
                    return CellFailure(cell_name(*cell), len(attempts_of(out, cell)), exc.message)
        return None

    results, failures = [], []
    from llm4seg.compare_progress import CellWatcher
    from llm4seg.training.config import TrainConfig

    epochs = int(matrix.train.get("epochs", TrainConfig.epochs))
    watcher = CellWatcher(out, matrix.cells(), epochs, on_epoch) if on_epoch else nullcontext()
    # One cell at a time runs in this thread, so Ctrl-C reaches the training loop, which keeps its state.
    cells = matrix.cells()
    done = {c: json.loads((out / "runs" / cell_name(*c) / "scores.json").read_text()) for c in cells
            if (out / "runs" / cell_name(*c) / "scores.json").is_file()}
    with watcher, ThreadPoolExecutor(parallel) if parallel > 1 and executor.kind == "local" else nullcontext() as pool:
        if executor.kind != "local":  # scored cells are read back; the others go to the cluster
            todo = [c for c in cells if c not in done]
            finished = itertools.chain((done[c] for c in cells if c in done),
                                       run_cells(asdict(matrix), out, todo, executor, cell_result))
        else:
            finished = pool.map(cell_result, cells) if pool else map(cell_result, cells)
        for result in finished:
            if isinstance(result, CellFailure):
                failures.append(result)
            elif result is not None:
                results.append(result)
                if on_cell:
                    on_cell(result)
    from llm4seg.compare_report import write_report

    return write_report(matrix, results, out, failures)

