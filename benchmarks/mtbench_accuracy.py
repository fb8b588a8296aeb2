"""Routers on MT-Bench human votes (known users): record splits, several seeds, accuracy and AUC.

    python -m benchmarks.mtbench_accuracy --seeds 0,1,2,3,4
    python -m benchmarks.mtbench_accuracy --seeds 0,1 --routers all-baselines
    python -m benchmarks.mtbench_accuracy --routers query-winrate --question-rate 5
    python -m benchmarks.mtbench_accuracy --routers gmtrouter --set residual=false

Each seed splits the votes by record (test 20%, every user keeps training records), trains both routers on
the training part and scores the test part with the training part as the users' history. Prints a table,
writes benchmarks/out/mtbench_accuracy.{json,png}, with each fit's wall time and the settings a baseline tuned.
It does in one process what `data split --by record --test-frac 0.2 --seed S`, `train --router NAME` and
`eval --shots 0` do for each router and seed; the seed is both the split's and the router's.
`--question-rate K` adds the plain shrunk per-question win rate, (wins + K x global win rate) /
(comparisons + K) of each LLM on the very question (the global win rate for an unseen one), as a reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, OUT, mt_bench, save_json
from gmtrouter.baselines import BASELINES
from gmtrouter.baselines.base import RecordTable
from gmtrouter.baselines.knn import win_counts
from gmtrouter.cli.common import parse_settings
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.evaluation.metrics import evaluate_scores
from gmtrouter.registry.routers import make_router

ROUTERS = ("global-winrate", "knn", "gmtrouter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--question-rate", type=float, default=None, metavar="K")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a gmtrouter setting")
    args = parser.parse_args()
    records = mt_bench(args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [cls.name for cls in BASELINES] if args.routers == "all-baselines" else args.routers.split(",")
    results: dict[str, list[dict]] = {name: [] for name in names}
    rate = args.question_rate
    if rate is not None:
        results[f"question-rate k={rate:g}"] = []
    for seed in seeds:
        train, test = split_records(records, "record", 0.2, seed)
        if rate is not None:
            result = evaluate_scores(test, question_rate_scores(train, test, rate))
            results[f"question-rate k={rate:g}"].append(
                {"seed": seed, "accuracy": result["accuracy"], "auc": result["auc"], "fit_seconds": 0.0}
            )
        for name in names:
            settings = {"progress": False, **parse_settings(args.set)} if name == "gmtrouter" else {}
            started = time.perf_counter()
            router = make_router(name, seed=seed, **settings).fit(train)
            seconds = time.perf_counter() - started
            result = evaluate_router(router, train, test)
            results[name].append(
                {
                    "seed": seed,
                    "accuracy": result["accuracy"],
                    "auc": result["auc"],
                    "n_pairs": result["n_pairs"],
                    "fit_seconds": seconds,
                    "tuned": router.training_log_.get("params"),
                }
            )
            Console(stderr=True).print(
                f"seed {seed} {name}: {result['accuracy']:.4f} / {result['auc']:.4f} ({seconds:.1f} s)"
            )
    table = Table(title=f"MT-Bench human votes, record split 80/20, seeds {args.seeds}")
    table.add_column("router", no_wrap=True)
    for column in ("accuracy (mean)", "AUC (mean)", "accuracy per seed", "fit s (median)"):
        table.add_column(column)
    for name, rows in results.items():
        acc = [r["accuracy"] for r in rows]
        auc = [r["auc"] for r in rows]
        table.add_row(
            name,
            f"{np.mean(acc):.4f}",
            f"{np.mean(auc):.4f}",
            " ".join(f"{a:.3f}" for a in acc),
            f"{np.median([r['fit_seconds'] for r in rows]):.1f}",
        )
    Console().print(table)
    save_json("mtbench_accuracy", results)
    _plot(results, seeds)


def question_rate_scores(train: list, test: list, k: float) -> list[np.ndarray]:
    """Scores of the shrunk per-question win rate for each test record's responses."""
    llms = sorted({m for r in [*train, *test] for m in r.llms})
    table = RecordTable.build(train, llms)
    wins, comparisons = win_counts(table, len(llms))
    overall = wins.sum(axis=0) / np.maximum(comparisons.sum(axis=0), 1e-9)
    rate = (wins + k * overall) / (comparisons + k)
    rows = {q: i for i, q in enumerate(table.queries)}
    index = {m: i for i, m in enumerate(llms)}
    return [
        np.array([rate[rows[r.query], index[x.llm]] if r.query in rows else overall[index[x.llm]] for x in r.responses])
        for r in test
    ]


def _plot(results: dict[str, list[dict]], seeds: list[int]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(results)
    for k, (name, rows) in enumerate(results.items()):
        for ax, metric in zip(axes, ("accuracy", "auc"), strict=True):
            ax.bar(np.arange(len(seeds)) + k * width, [r[metric] for r in rows], width, label=name)
    for ax, metric in zip(axes, ("pairwise accuracy", "AUC"), strict=True):
        ax.set_xticks(np.arange(len(seeds)) + width * (len(results) - 1) / 2, [f"seed {s}" for s in seeds])
        ax.set_ylabel(metric)
        ax.set_ylim(0.4, 0.95)
    axes[0].legend()
    fig.suptitle("MT-Bench human votes: held-out records of known users")
    fig.tight_layout()
    fig.savefig(OUT / "mtbench_accuracy.png", dpi=120)


if __name__ == "__main__":
    main()
