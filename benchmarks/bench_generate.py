"""Generator benchmark: how long each sandbox scale takes to generate, and how big it is.

    uv run python benchmarks/bench_generate.py [--scales tiny,small,seed,large]
                                               [--contacts 1000000x300000] [--seed 1]

Each scale is generated into a temporary folder by a fresh process (so Faker's pools are built
inside the measurement and peak memory is that scale's own), then deleted. Prints a Markdown
table: wall time, record counts, size on disk, peak memory. ``--contacts PxO`` adds a row for
the persons-only mode (P persons, O organizations) used by the dedup benchmark.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = ("deals", "organizations", "persons", "activities", "notes", "deal_mail_messages")


def measure(scale: str, seed: int, contacts: tuple[int, int] | None) -> dict[str, object]:
    """Generate one dataset in this (child) process; time, counts, bytes and peak RSS."""
    from migration_pipeline.sandbox.generator import generate, generate_contacts

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        out = Path(tmp) / "dataset"
        started = time.perf_counter()
        if contacts:
            counts = generate_contacts(contacts[0], contacts[1], seed, out)
        else:
            counts = generate(scale, seed, out)
        seconds = time.perf_counter() - started
        size = sum(path.stat().st_size for path in out.iterdir())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "counts": counts, "bytes": size, "peak_mib": peak_mib}


def run(scale: str, seed: int, contacts: tuple[int, int] | None = None) -> dict[str, object]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(measure, (scale, seed, contacts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="tiny,small,seed,large")
    parser.add_argument("--contacts", help="persons-only row, e.g. 1000000x300000")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rows = [(scale, run(scale, args.seed)) for scale in args.scales.split(",") if scale]
    if args.contacts:
        persons, orgs = (int(n) for n in args.contacts.lower().split("x"))
        rows.append((f"contacts {args.contacts}", run("contacts", args.seed, (persons, orgs))))

    header = ("scale", "wall s", *COLUMNS, "all records", "size MiB", "peak RSS MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
    for name, result in rows:
        counts: dict[str, int] = result["counts"]  # type: ignore[assignment]
        cells = [
            name,
            f"{result['seconds']:.1f}",
            *(f"{counts[c]:,}" if c in counts else "–" for c in COLUMNS),
            f"{sum(counts.values()):,}",
            f"{result['bytes'] / 2**20:.1f}",
            f"{result['peak_mib']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
