"""Randomized fault trials: N small migrations, each under faults drawn from its seed, re-run
until done and checked for duplicates, missing entities and failed partitions.

    uv run python benchmarks/bench_trials.py --trials 100 [--start-seed 0] [--jobs 2]
        [--max-minutes M] [--work-dir DIR] [--keep]

Each trial is :func:`migration_pipeline.trials.run_trial` (see that module for what a trial
does); ``--jobs`` trials run at once, each in its own process. ``--max-minutes`` starts no new
trial after that much wall time, so a time box still ends with a complete table of the trials
that ran. Passing trials' worlds are deleted unless ``--keep``; failing ones are kept under
``--work-dir`` as evidence. Prints Markdown: totals, faults by kind (trials in which each
occurred and how often), and every failure with its seed and problems.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migration_pipeline.trials import FAULT_KINDS, TrialResult, run_trial  # noqa: E402

FAULT_NAMES = {
    "429": "429 (injected and over the server's limit)",
    "5xx": "5xx",
    "timeout": "timeout",
    "lost": "answer lost after commit",
    "ban": "403 ban (runs stopped)",
    "kill": "run SIGKILLed mid-partition",
    "duckdb_lock": "DuckDB file held by another process",
}


def run_all(
    seeds: list[int], work_dir: Path, jobs: int, max_seconds: float | None, keep: bool
) -> tuple[list[TrialResult], float]:
    """Run the trials of ``seeds``, ``jobs`` at a time, until done or out of time."""
    started = time.monotonic()
    results: list[TrialResult] = []
    pending = list(seeds)
    running: dict[Future[TrialResult], int] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        while pending or running:
            in_time = max_seconds is None or time.monotonic() - started < max_seconds
            while pending and in_time and len(running) < jobs:
                seed = pending.pop(0)
                running[pool.submit(run_trial, seed, work_dir, keep=keep)] = seed
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                seed = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a harness crash fails its trial only
                    problem = f"harness: the trial raised {type(exc).__name__}: {exc}"
                    result = TrialResult(seed, work_dir / f"trial-{seed}", [], problems=[problem])
                results.append(result)
                verdict = "ok" if result.passed else "FAILED"
                print(
                    f"trial {result.seed}: {verdict} in {result.seconds:.0f} s, "
                    f"{result.partitions} partitions, {result.occurred}",
                    file=sys.stderr,
                    flush=True,
                )
    return sorted(results, key=lambda r: r.seed), time.monotonic() - started


def report(results: list[TrialResult], wall: float, jobs: int) -> str:
    failed = [r for r in results if not r.passed]
    trials_with: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for result in results:
        for kind, n in result.occurred.items():
            trials_with[kind] += 1
            events[kind] += n
    runs = sum(len(r.runs) for r in results)
    lines = [
        "| figure | value |",
        "| --- | ---: |",
        f"| trials | {len(results)} |",
        f"| passed | {len(results) - len(failed)} |",
        f"| failed | {len(failed)} |",
        f"| load runs (every round) | {runs} |",
        f"| partitions loaded | {sum(r.partitions for r in results)} |",
        f"| wall time ({jobs} at once) | {wall / 60:.1f} min |",
        f"| one trial's wall time (mean) | {sum(r.seconds for r in results) / max(1, len(results)):.0f} s |",
        "",
        "| fault | trials | times |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {FAULT_NAMES[k]} | {trials_with[k]} | {events[k]} |" for k in FAULT_KINDS]
    if failed:
        lines += ["", "| seed | faults drawn | problems |", "| ---: | --- | --- |"]
        for result in failed:
            problems = "<br>".join(
                p.replace("|", "\\|").replace("\n", " ") for p in result.problems
            )
            lines.append(f"| {result.seed} | {'; '.join(result.faults)} | {problems} |")
        lines.append(f"\nFailed trials' worlds are kept under {failed[0].root.parent}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--start-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="trials at once (processes)")
    parser.add_argument("--max-minutes", type=float, help="start no trial after this")
    parser.add_argument("--work-dir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep passing trials' worlds too")
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-trials-"))
    seeds = list(range(args.start_seed, args.start_seed + args.trials))
    max_seconds = args.max_minutes * 60 if args.max_minutes else None
    results, wall = run_all(seeds, work_dir, args.jobs, max_seconds, args.keep)
    print(report(results, wall, args.jobs))


if __name__ == "__main__":
    main()
