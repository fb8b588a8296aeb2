"""Every baseline on MT-Bench human votes: record splits (20% test) for a few seeds, accuracy and AUC.

    HF_HUB_OFFLINE=1 python benchmarks/baselines_mtbench.py --data-dir ../shared/data --seeds 0 1

It does what `gmtrouter data split --by record --test-frac 0.2 --seed S`, `gmtrouter train --router NAME`
and `gmtrouter eval --shots 0` do, in one process: each router is fitted with its defaults (tuned on the
10% of each user's training records held out), and scored with the training records as history.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gmtrouter.baselines import BASELINES
from gmtrouter.data.loaders import prepare
from gmtrouter.data.split import split_records
from gmtrouter.evaluate import evaluate_router
from gmtrouter.routers import make_router


def run(data_dir: Path, seeds: list[int], routers: list[str]) -> list[dict[str, object]]:
    """One row per (router, seed): accuracy, AUC, pairs, the tuned parameters and seconds to fit and score."""
    records = prepare("mt-bench", data_dir / "mt_bench")
    rows = []
    for seed in seeds:
        train, test = split_records(records, "record", 0.2, seed)
        for name in routers:
            started = time.perf_counter()
            router = make_router(name).fit(train)
            result = evaluate_router(router, train, test)
            row = {
                "router": name,
                "seed": seed,
                "accuracy": result["accuracy"],
                "auc": result["auc"],
                "n_pairs": result["n_pairs"],
                "params": router.training_log_["params"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]], seeds: list[int]) -> str:
    """A table: one line per router, accuracy / AUC per seed and their means."""
    head = ["router", *[f"seed {s}: acc / AUC" for s in seeds], "mean acc", "mean AUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["router"] for r in rows):
        mine = {r["seed"]: r for r in rows if r["router"] == name}
        cells = [f"{mine[s]['accuracy']:.3f} / {mine[s]['auc']:.3f}" for s in seeds]
        acc = np.mean([mine[s]["accuracy"] for s in seeds])
        auc = np.mean([mine[s]["auc"] for s in seeds])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {acc:.3f} | {auc:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="holds mt_bench/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--routers", nargs="+", default=[cls.name for cls in BASELINES])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the networks are small)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.data_dir, args.seeds, args.routers)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(markdown(rows, args.seeds))


if __name__ == "__main__":
    main()
