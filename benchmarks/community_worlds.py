"""New users in taste-community worlds that the report does not score: other simulator seeds of the benchmark's
community datasets, one split each, GMTRouter's backbone against the community-posterior reference by k shots.

    python -m benchmarks.community_worlds --sim-seeds 1,2 --set user_prior=2.0

The report's community worlds are simulator seed 0 (`gmtrouter bench`); a change to how communities are learnt
is judged here first, on worlds drawn with other seeds, so it is not tuned on the worlds the report scores.
Each job is the benchmark's own (`gmtrouter.bench.worker.run_job`, new users, 20% held out, every k scoring each
user's records after their first 20). Writes benchmarks/out/community_worlds.json; job files and logs go to a
scratch folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, save_json
from gmtrouter.bench.plan import parse_int_list, parse_value

SHOTS = (0, 1, 3, 5, 10, 20)
DATASETS = ("llmrouter-communities", "gsm8k-communities")


def run_world(task: tuple[str, int, int, dict[str, Any], Path, Path]) -> dict[str, Any]:
    """One dataset, simulator seed and split seed: GMTRouter's backbone fitted and scored at every k."""
    from gmtrouter.bench.datasets import prepare_dataset
    from gmtrouter.bench.plan import BenchConfig
    from gmtrouter.bench.worker import run_job

    dataset, sim_seed, split_seed, settings, data_dir, scratch = task
    config = BenchConfig(
        datasets=(dataset,),
        variants=(),
        seeds=(split_seed,),
        shots=SHOTS,
        data_dir=data_dir,
        out=scratch / f"sim{sim_seed}",
        users=100,
        sim_seed=sim_seed,
    )
    data = prepare_dataset(dataset, config)
    job = {
        "dataset": dataset,
        "split": "user",
        "seed": split_seed,
        "router": "gmtrouter",
        "settings": {"progress": False, "seed": split_seed, "residual": False, **settings},
        "shots": list(SHOTS),
        "test_frac": 0.2,
    }
    result_path = scratch / f"{dataset}-sim{sim_seed}-split{split_seed}.json"
    options = {"data": str(data.path), "result": str(result_path), "log": f"{result_path}.log"}
    run_job(job, options | {"community_model": asdict(data.community_model)})
    result = json.loads(result_path.read_text())
    if result["status"] != "ok":
        raise SystemExit(f"{dataset} simulator seed {sim_seed}: {result.get('error')}")
    evaluations = result["evaluations"]
    backbone = result["training_log"].get("backbone", {})
    return {
        "dataset": dataset,
        "sim_seed": sim_seed,
        "split_seed": split_seed,
        "accuracy": {k: evaluations[str(k)]["accuracy"] for k in SHOTS},
        "reference": {k: evaluations[str(k)]["community_posterior"]["accuracy"] for k in SHOTS},
        "taste_reference": {k: evaluations[str(k)]["community_taste"]["accuracy"] for k in SHOTS},
        "communities": backbone.get("communities"),
        "community_losses": backbone.get("community_losses"),
        "fit_seconds": result["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--sim-seeds", default="1,2", help="simulator seeds (the report's worlds are seed 0)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="a GMTRouter setting, key=value (repeatable)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    scratch = Path(tempfile.mkdtemp(prefix="gmtrouter-community-worlds-"))
    tasks = [
        (dataset, sim_seed, args.split_seed, settings, args.data_dir, scratch)
        for sim_seed in parse_int_list(args.sim_seeds, "--sim-seeds")
        for dataset in args.datasets.split(",")
    ]
    console = Console()
    with console.status(f"{len(tasks)} worlds"), ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_world, tasks))
    table = Table(
        title="new users, pairwise accuracy by k shots (in brackets: the community-posterior reference, then the "
        "community-taste reference that knows no answers)"
    )
    table.add_column("world")
    for k in SHOTS:
        table.add_column(f"k = {k}", justify="right")
    table.add_column("communities", justify="right")
    for r in results:
        cells = [f"{r['accuracy'][k]:.3f} ({r['reference'][k]:.3f}, {r['taste_reference'][k]:.3f})" for k in SHOTS]
        table.add_row(f"{r['dataset'].removesuffix('-communities')} sim {r['sim_seed']}", *cells, str(r["communities"]))
    means = [sum(r["accuracy"][k] for r in results) / len(results) for k in SHOTS]
    taste = [sum(r["taste_reference"][k] for r in results) / len(results) for k in SHOTS]
    table.add_row("mean", *[f"{m:.4f} ({t:.4f})" for m, t in zip(means, taste, strict=True)], "")
    console.print(table)
    save_json("community_worlds", {"settings": settings, "sim_seeds": args.sim_seeds, "results": results})


if __name__ == "__main__":
    main()
