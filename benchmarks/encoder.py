"""Text encoder throughput: texts per second cold (nothing cached), warm from disk, and warm in memory.

    python -m benchmarks.encoder --data-dir ../shared/data --texts 600 --backend onnx
    python -m benchmarks.encoder --data-dir ../shared/data --texts 600 --backend torch

Texts are MT-Bench queries and answers (real lengths). Cold encodes with all-MiniLM-L6-v2 into an empty
cache; "disk" is a new process-level encoder reading the SQLite cache; "memory" is the same encoder again.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gmtrouter.data.loaders import prepare
from gmtrouter.text.base import DEFAULT_ENCODER
from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.encoders import BACKENDS, model_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    args = parser.parse_args()

    records = prepare("mt-bench", args.data_dir / "mt_bench")
    texts = list(dict.fromkeys([r.query for r in records] + [x.text for r in records for x in r.responses if x.text]))
    texts = texts[: args.texts]
    mean_chars = sum(map(len, texts)) / len(texts)
    model = model_encoder(args.encoder, backend=args.backend)
    model.encode(texts[:8])  # load and warm up the network outside the timings
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        cold = CachedEncoder(model, Path(cache), progress=False)
        rows.append(("cold (encode + write cache)", _rate(cold, texts)))
        rows.append(("warm, same encoder (memory)", _rate(cold, texts)))
        rows.append(
            ("warm, new encoder (SQLite cache)", _rate(CachedEncoder(model, Path(cache), progress=False), texts))
        )
    table = Table(
        title=f"{args.encoder} ({type(model).__name__}): {len(texts)} texts, {mean_chars:.0f} characters on "
        f"average, {torch.get_num_threads()} torch threads"
    )
    table.add_column("case")
    table.add_column("texts/s", justify="right")
    table.add_column("seconds", justify="right")
    for case, (rate, seconds) in rows:
        table.add_row(case, f"{rate:,.0f}", f"{seconds:.3f}")
    Console().print(table)


def _rate(encoder: CachedEncoder, texts: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    return len(texts) / seconds, seconds


if __name__ == "__main__":
    main()
