"""Records on disk: JSONL against Parquet, file size and the seconds to write and read them back.

    python -m benchmarks.records_io --data runs/scaling/llmrouter-100000.jsonl [--repeats 3]

Reads the records once, then for each format writes them (`write_records`) and reads them back
(`read_records`, which checks every record) `--repeats` times, keeping the fastest. Writes
benchmarks/out/records_io.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import save_json
from gmtrouter.data.schema import read_records, write_records

console = Console()


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="records (JSONL or Parquet)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    records = read_records(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for suffix in ("jsonl", "parquet"):
            path = Path(folder) / f"records.{suffix}"
            write = best_of(args.repeats, lambda path=path: write_records(path, records))
            read = best_of(args.repeats, lambda path=path: read_records(path))
            assert read_records(path) == records
            rows.append(
                {"format": suffix, "mb": path.stat().st_size / 1e6, "write_seconds": write, "read_seconds": read}
            )
    table = Table(title=f"{len(records):,} records from {args.data}")
    for column in ("format", "MB", "write s", "read s"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["format"], f"{row['mb']:.1f}", f"{row['write_seconds']:.2f}", f"{row['read_seconds']:.2f}")
    console.print(table)
    save_json("records_io", {"data": str(args.data), "records": len(records), "rows": rows})


if __name__ == "__main__":
    main()
