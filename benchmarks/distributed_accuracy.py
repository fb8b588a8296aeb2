"""GMTRouter trained on two processes against one on MT-Bench human votes (known users): accuracy and AUC.

    OMP_NUM_THREADS=1 python -m benchmarks.distributed_accuracy --seeds 0,1,2,3,4
    OMP_NUM_THREADS=1 python -m benchmarks.distributed_accuracy --set residual_margin=-1 --name distributed_residual

Everything goes through the command line, each step a child process in a work folder under runs/: `data prepare
mt-bench` once, then for each seed S `data split --by record --test-frac 0.2 --seed S`, `train --seed S` on one
process and `train --seed S --workers N` (torchrun, gloo over loopback) on the training part, and `eval --shots 0`
of each model on the test part (the training part is the users' history). Records per seed the pairwise accuracy,
the AUC, the fit's own time (tuning included, from the model's training log) and the wall time of `gmtrouter train`;
then the mean of each with its 95% t-interval over seeds, the paired difference (N processes minus one) with its
interval, and whether the N-process mean lies inside the one-process interval. `--set KEY=VALUE` goes to both
fits. Prints a table, writes benchmarks/out/distributed_accuracy.{json,png} (`--name` renames them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, OUT, save_json
from gmtrouter.bench.aggregate import Estimate, estimate

METRICS = ("accuracy", "auc")


def gmtrouter(*arguments: str, cwd: Path) -> str:
    """Run `gmtrouter ARGUMENTS` as a child process in `cwd`; its stdout (its stderr too when it fails)."""
    command = [sys.executable, "-m", "gmtrouter", *arguments]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def fit_and_score(work: Path, split: Path, seed: int, processes: int, settings: list[str]) -> dict:
    """Train on split/train.jsonl with `processes` processes, score split/test.jsonl; the figures of the run."""
    model = split / f"model_{processes}p"
    command = ["train", "--data", str(split / "train.jsonl"), "-o", str(model), "--seed", str(seed)]
    command += [a for s in ["progress=false", *settings] for a in ("--set", s)]
    if processes > 1:
        command += ["--workers", str(processes)]
    started = time.perf_counter()
    gmtrouter(*command, cwd=work)
    wall = time.perf_counter() - started
    result = json.loads(
        gmtrouter("eval", "--model", str(model), "--data", str(split / "test.jsonl"), "--json", cwd=work)
    )
    log = json.loads((work / model / "config.json").read_text())["state"].get("training_log", {})
    return {
        "accuracy": result["accuracy"],
        "auc": result["auc"],
        "n_pairs": result["n_pairs"],
        "fit_seconds": log.get("seconds"),
        "train_wall_seconds": round(wall, 2),
        "processes": log.get("processes"),
        "steps": log.get("steps"),
        "best_step": log.get("best_step"),
        "weights_sha256": hashlib.sha256((work / model / "weights.safetensors").read_bytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=2, help="processes of the distributed fit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a gmtrouter setting")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (splits, models) under runs/")
    parser.add_argument("--name", default="distributed_accuracy", help="stem of the JSON and PNG in benchmarks/out/")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    counts = (1, args.workers)
    Path("runs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="distributed_accuracy-", dir="runs")).resolve()
    console = Console(stderr=True)
    runs: list[dict] = []
    try:
        source = str(args.data_dir.resolve() / "mt_bench")
        gmtrouter("data", "prepare", "mt-bench", "--data-dir", source, "-o", "mt_bench.jsonl", cwd=work)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("fits", total=len(seeds) * len(counts))
            for seed in seeds:
                split = Path(f"seed{seed}")
                split_command = f"data split mt_bench.jsonl --by record --test-frac 0.2 --seed {seed} -o {split}"
                gmtrouter(*split_command.split(), cwd=work)
                row: dict = {"seed": seed}
                for processes in counts:
                    progress.update(task, description=f"seed {seed}, {processes} process{'es' * (processes > 1)}")
                    row[f"{processes}p"] = fit_and_score(work, split, seed, processes, args.set)
                    figures = row[f"{processes}p"]
                    progress.console.print(
                        f"seed {seed}, {processes} proc: accuracy {figures['accuracy']:.4f}, AUC {figures['auc']:.4f}"
                        f" (fit {figures['fit_seconds']} s, train {figures['train_wall_seconds']} s wall,"
                        f" best step {figures['best_step']})",
                        highlight=False,
                    )
                    progress.advance(task)
                row["same_weights"] = row["1p"]["weights_sha256"] == row[f"{args.workers}p"]["weights_sha256"]
                runs.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs, args.workers)
    print_tables(runs, summary, args.workers, args.seeds)
    save_json(
        args.name,
        {
            "seeds": seeds,
            "workers": args.workers,
            "settings": args.set,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "runs": runs,
            "summary": summary,
        },
    )
    _plot(runs, summary, args.workers, args.name, args.set)


def _interval(value: Estimate | None) -> dict:
    if value is None:
        return {"mean": None, "low": None, "high": None, "n": 0}
    half = value.half
    return {
        "mean": value.mean,
        "low": None if half is None else value.mean - half,
        "high": None if half is None else value.mean + half,
        "n": value.n,
    }


def summarise(runs: list[dict], workers: int) -> dict:
    """Per metric: mean and 95% t-interval of each process count, the paired difference, and the verdict."""
    summary: dict = {}
    for metric in (*METRICS, "fit_seconds", "train_wall_seconds"):
        one = [r["1p"][metric] for r in runs]
        many = [r[f"{workers}p"][metric] for r in runs]
        entry = {
            "1p": _interval(estimate(one)),
            f"{workers}p": _interval(estimate(many)),
            "difference": _interval(estimate([b - a for a, b in zip(one, many, strict=True)])),
        }
        low, high = entry["1p"]["low"], entry["1p"]["high"]
        mean = entry[f"{workers}p"]["mean"]
        if metric in METRICS:
            entry["inside_1p_interval"] = None if low is None else bool(low <= mean <= high)
        summary[metric] = entry
    return summary


def _span(entry: dict, digits: int = 4) -> str:
    if entry["low"] is None:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def print_tables(runs: list[dict], summary: dict, workers: int, seeds: str) -> None:
    many = f"{workers}p"
    table = Table(title=f"GMTRouter, 1 vs {workers} processes: MT-Bench human votes, record split 80/20, seeds {seeds}")
    for column in ("seed", "accuracy 1p", f"accuracy {many}", "AUC 1p", f"AUC {many}", "fit s 1p", f"fit s {many}"):
        table.add_column(column, justify="right")
    table.add_column("same weights")
    for r in runs:
        table.add_row(
            str(r["seed"]),
            *(f"{r[p][m]:.4f}" for m in METRICS for p in ("1p", many)),
            *(f"{r[p]['fit_seconds']:.1f}" for p in ("1p", many)),
            "yes" if r["same_weights"] else "no",
        )
    Console().print(table)
    verdicts = Table(title="Mean and 95% t-interval over seeds")
    for column in ("metric", "1 process", f"{workers} processes", f"difference ({workers} - 1)", f"{many} mean in 1p"):
        verdicts.add_column(column, justify="right")
    for metric in (*METRICS, "fit_seconds"):
        entry = summary[metric]
        inside = entry.get("inside_1p_interval")
        digits = 1 if metric == "fit_seconds" else 4
        verdicts.add_row(
            metric,
            _span(entry["1p"], digits),
            _span(entry[many], digits),
            _span(entry["difference"], digits),
            "" if metric == "fit_seconds" else "n/a" if inside is None else "yes" if inside else "NO",
        )
    Console().print(verdicts)


def _plot(runs: list[dict], summary: dict, workers: int, name: str, settings: list[str]) -> None:
    many = f"{workers}p"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, metric, label in zip(axes, METRICS, ("pairwise accuracy", "AUC"), strict=True):
        for r in runs:
            ax.plot([0, 1], [r["1p"][metric], r[many][metric]], color="0.75", zorder=1)
        for x, key, colour in ((0, "1p", "tab:blue"), (1, many, "tab:orange")):
            values = [r[key][metric] for r in runs]
            ax.scatter([x] * len(values), values, color=colour, zorder=2, label="per seed" if x == 0 else None)
            entry = summary[metric][key]
            error = None if entry["low"] is None else [[entry["mean"] - entry["low"]], [entry["high"] - entry["mean"]]]
            ax.errorbar(
                x + 0.12,
                entry["mean"],
                yerr=error,
                fmt="D",
                color="black",
                capsize=5,
                zorder=3,
                label="mean, 95% t-interval" if x == 0 else None,
            )
        low, high = summary[metric]["1p"]["low"], summary[metric]["1p"]["high"]
        if low is not None:
            ax.axhspan(low, high, color="tab:blue", alpha=0.12, label="1-process interval")
        ax.set_xticks([0, 1], ["1 process", f"{workers} processes"])
        ax.set_xlim(-0.4, 1.5)
        ax.set_ylabel(label)
        ax.set_title(label)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False)
    extra = f" ({', '.join(settings)})" if settings else ""
    fig.suptitle(f"GMTRouter on MT-Bench human votes (known users): 1 vs {workers} training processes{extra}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(OUT / f"{name}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
