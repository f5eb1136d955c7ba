"""Cleansing benchmark: the whole ``cleansed`` group on a generated account, timed and measured.

    uv run python benchmarks/bench_cleanse.py                       # seed scale, then 1 M persons
    uv run python benchmarks/bench_cleanse.py --only seed --cores 2

For each dataset (the ``seed`` scale account, and a persons/organizations-only account of
1 M persons and 300 k organizations from ``generate_contacts``) it generates the data,
extracts it through the sandbox into raw tables (both cached under ``benchmarks/results/``:
extraction is not what is measured), then materialises every asset of the group in a child
process pinned to ``--cores`` CPUs. It reports the group's wall time, the peak resident memory
of the child and its worker processes together (sampled from /proc), and the pairwise
precision and recall of the duplicate clusters against the generator's ``truth.json``, as a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cleanse"
sys.path.insert(0, str(ROOT))

DATASETS = {"seed": ("seed", None), "1m": ("contacts", (1_000_000, 300_000))}


def generate(name: str, seed: int) -> Path:
    """The dataset folder, generated on first use."""
    from migration_pipeline.sandbox.generator import ensure_dataset, generate_contacts

    kind, sizes = DATASETS[name]
    if sizes is None:
        return ensure_dataset(RESULTS / "datasets", kind, seed)
    folder = RESULTS / "datasets" / f"{name}-seed{seed}"
    if not (folder / "manifest.json").exists():
        generate_contacts(*sizes, seed, folder)
    return folder


def extract_raw(dataset: Path, target: Path) -> Path:
    """Raw tables of ``dataset``, extracted through the sandbox with the real extractor (the
    sandbox's rate limits opened wide: extraction is not what is measured)."""
    if target.exists():
        return target
    os.environ.update(
        MIGRATION_DATA_DIR=str(target.parent / "sandbox-data"),
        MIGRATION_SANDBOX_FROM_DIR=str(dataset),
        MIGRATION_SANDBOX_PIPEDRIVE_BURST="1000000",
        MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS="1000000000",
        MIGRATION_SANDBOX_BAN_AFTER="0",
    )
    from migration_pipeline.extract.engine import extract
    from migration_pipeline.extract.specs import SPECS
    from migration_pipeline.resources import PipedriveResource

    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with PipedriveResource().client() as client:
        for spec in SPECS:
            extract(client, partial, spec, progress=lambda message: None)
    partial.rename(target)
    return target


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        node = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == node]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def run_group(raw_db: Path, work: Path, cores: int) -> dict:
    """Materialise the group on a copy of ``raw_db`` in a child process; its wall time and the
    peak memory of its process tree."""
    work.mkdir(parents=True, exist_ok=True)
    db = work / "migration.duckdb"
    shutil.copy(raw_db, db)
    command = [sys.executable, __file__, "--child", str(db), str(work / "data"), str(cores)]
    peak = 0
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"the cleansed group failed (exit {child.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    return report | {"process_wall_s": time.monotonic() - started, "peak_rss_bytes": peak}


def child(db: str, data_dir: str, cores: int) -> None:
    """In the child: pin to ``cores`` CPUs, materialise the group, print its timings as JSON."""
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[:cores]))
    os.environ["MIGRATION_DATA_DIR"] = data_dir
    import dagster as dg

    from migration_pipeline.db import Warehouse
    from migration_pipeline.defs.cleanse.assets import cleanse_assets

    started = time.monotonic()
    result = dg.materialize(
        cleanse_assets,
        resources={"warehouse": Warehouse(path=db)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    wall = time.monotonic() - started
    steps = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    }
    print(json.dumps({"success": result.success, "group_wall_s": wall, "steps": steps}))
    sys.exit(0 if result.success else 1)


def quality(db: Path, truth: dict) -> dict[str, dict]:
    import duckdb

    from migration_pipeline.cleanse.dedup import pairwise_quality

    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for entity in ("person", "organization"):
            clusters = [
                row[0]
                for row in con.execute(
                    f"select list(id) from clean.{entity}_duplicates group by survivor_id"
                ).fetchall()
            ]
            out[entity] = pairwise_quality(clusters, truth[f"{entity}s"])
        out["counts"] = dict(
            con.execute(
                "select 'persons', count(*) from raw.persons "
                "union all select 'organizations', count(*) from raw.organizations "
                "union all select 'person pairs scored', count(*) from clean.person_pairs "
                "union all select 'organization pairs scored', count(*) "
                "from clean.organization_pairs"
            ).fetchall()
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    rows = []
    for name in args.only or list(DATASETS):
        dataset = generate(name, args.seed)
        print(f"{name}: dataset {dataset}", file=sys.stderr, flush=True)
        raw_db = extract_raw(dataset, RESULTS / f"{name}-seed{args.seed}.duckdb")
        print(f"{name}: raw tables {raw_db}; running the group", file=sys.stderr, flush=True)
        run = run_group(raw_db, RESULTS / "runs" / name, args.cores)
        found = quality(RESULTS / "runs" / name / "migration.duckdb", json.loads(
            (dataset / "truth.json").read_text()
        ))  # fmt: skip
        slowest = sorted(run["steps"].items(), key=lambda item: -item[1])[:3]
        rows.append(
            (
                name,
                f"{found['counts']['persons']:,}",
                f"{found['counts']['organizations']:,}",
                f"{run['group_wall_s']:.1f}",
                f"{run['peak_rss_bytes'] / 2**30:.2f}",
                f"{found['person']['precision']:.4f} / {found['person']['recall']:.4f}",
                f"{found['organization']['precision']:.4f} / {found['organization']['recall']:.4f}",
                f"{found['counts']['person pairs scored']:,}",
                ", ".join(f"{step.split('__')[-1]} {seconds:.1f}s" for step, seconds in slowest),
            )
        )
    header = (
        "dataset",
        "persons",
        "organizations",
        f"group wall (s, {args.cores} cores)",
        "peak RSS (GiB, with workers)",
        "persons P / R",
        "organizations P / R",
        "person pairs scored",
        "slowest assets",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
