"""GMTRouter on synthetic users (simulator defaults): known users against the oracle and the win-rate
rules, and new users from k shots against known users.

    python -m benchmarks.synthetic_users --dataset gsm8k --seeds 0,1,2

Known users: `data split --by record` (test 20%), the training records are the users' history. The oracle
scores each response by the true utility the simulator wrote into the record. New users: `data split --by
user` (20% of users held out whole); each new user's first k records are history, the rest are scored; the
ratio compares the 5-shot accuracy with the known-user accuracy of the same seed. Writes
benchmarks/out/synthetic_users_<dataset>.{json,png}.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.common import OUT, save_json, synthetic_arguments, synthetic_users
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.evaluation.stats import oracle_metrics
from gmtrouter.registry.routers import make_router

BASELINES = ("global-winrate", "user-winrate")
SHOTS = (0, 1, 2, 5, 10, 20)


def main() -> None:
    args = synthetic_arguments(__doc__.splitlines()[0])
    records = synthetic_users(args.data_dir, args.dataset)
    log = Console(stderr=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train, test = split_records(records, "record", 0.2, seed)
        row: dict[str, object] = {"seed": seed, "oracle": oracle_metrics(test)["accuracy"]}
        for name in BASELINES:
            row[name] = evaluate_router(make_router(name, seed=seed).fit(train), train, test)["accuracy"]
        started = time.perf_counter()
        model = make_router("gmtrouter", seed=seed, progress=False).fit(train)
        row["fit_seconds"] = time.perf_counter() - started
        row["gmtrouter"] = evaluate_router(model, train, test)["accuracy"]
        new_train, new_test = split_records(records, "user", 0.2, seed)
        new_model = make_router("gmtrouter", seed=seed, progress=False).fit(new_train)
        row["new_users"] = {k: evaluate_router(new_model, new_train, new_test, shots=k)["accuracy"] for k in SHOTS}
        row["new_user_ratio_5"] = row["new_users"][5] / row["gmtrouter"]
        rows.append(row)
        log.print(row)
    _report(args.dataset, rows)


def _report(dataset: str, rows: list[dict]) -> None:
    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    table = Table(title=f"synthetic users over {dataset} (simulator defaults), seeds {[r['seed'] for r in rows]}")
    table.add_column("what")
    table.add_column("accuracy (mean)", justify="right")
    table.add_column("per seed")
    for key in ("oracle", *BASELINES, "gmtrouter"):
        table.add_row(key, f"{mean(key):.4f}", " ".join(f"{r[key]:.3f}" for r in rows))
    for k in SHOTS:
        values = [r["new_users"][k] for r in rows]
        table.add_row(
            f"gmtrouter, new users, {k} shots", f"{np.mean(values):.4f}", " ".join(f"{v:.3f}" for v in values)
        )
    table.add_row("new users 5 shots / known users", f"{mean('new_user_ratio_5'):.3f}", "")
    table.add_row("gmtrouter - oracle", f"{mean('gmtrouter') - mean('oracle'):+.4f}", "")
    table.add_row("gmtrouter - global-winrate", f"{mean('gmtrouter') - mean('global-winrate'):+.4f}", "")
    Console().print(table)
    save_json(f"synthetic_users_{dataset}", rows)

    fig, ax = plt.subplots(figsize=(6, 4))
    shots = list(SHOTS)
    ax.plot(shots, [np.mean([r["new_users"][k] for r in rows]) for k in shots], "o-", label="GMTRouter, new users")
    for key, style in (("gmtrouter", "-"), ("oracle", ":"), ("user-winrate", "--"), ("global-winrate", "-.")):
        ax.axhline(
            mean(key),
            linestyle=style,
            color="grey" if key != "gmtrouter" else "C0",
            label=f"{key} (known users)" if key != "oracle" else "oracle",
        )
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots (history records of a new user)")
    ax.set_ylabel("pairwise accuracy")
    ax.set_title(f"Synthetic users over {dataset}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / f"synthetic_users_{dataset}.png", dpi=120)


if __name__ == "__main__":
    main()
