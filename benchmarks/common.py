"""Shared helpers of the benchmark scripts: data preparation with caching, result output, plots."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from gmtrouter.data.loaders import prepare
from gmtrouter.data.schema import Interaction, read_records, write_records

DEFAULT_DATA = Path(os.environ.get("GMTROUTER_DATA_DIR", "../shared/data"))
OUT = Path("benchmarks/out")


def mt_bench(data_dir: Path) -> list[Interaction]:
    """MT-Bench human votes as records (prepared once into benchmarks/out/)."""
    path = OUT / "mt_bench.jsonl"
    if not path.exists():
        write_records(path, prepare("mt-bench", data_dir / "mt_bench"))
    return read_records(path)


def synthetic_users(data_dir: Path, dataset: str, seed: int = 0) -> list[Interaction]:
    """The simulator's default users over a benchmark matrix (prepared once into benchmarks/out/)."""
    from gmtrouter.data.matrix import write_matrix
    from gmtrouter.data.sim_config import SimConfig
    from gmtrouter.data.simulate import simulate

    path = OUT / f"{dataset}_users_seed{seed}.jsonl"
    if not path.exists():
        rows = prepare(dataset, data_dir / dataset)
        write_matrix(OUT / f"{dataset}_matrix.jsonl", rows)
        write_records(path, simulate(rows, SimConfig(seed=seed)).records)
    return read_records(path)


def save_json(name: str, payload: object) -> Path:
    path = OUT / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def synthetic_arguments(description: str) -> argparse.Namespace:
    """The options of the synthetic-user scripts: data folder, benchmark matrix, seeds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="gsm8k", choices=["gsm8k", "mmlu", "llmrouter"])
    parser.add_argument("--seeds", default="0,1,2")
    return parser.parse_args()
