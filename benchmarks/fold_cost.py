"""What one thumb costs the service: the fold time per feedback, against the size of the history.

    python -m benchmarks.fold_cost --sizes 10000,100000 [--feedback 40] [--work runs/scaling]

For each size N it takes the synthetic LLMRouter users and the model of `benchmarks.scaling` (simulating and
training them first where `--work` has none), then, in a process of its own, starts the service's `Engine` on
the model over a fresh SQLite store and sends it `--feedback` thumbs, one at a time, each on the one answer of a
known user (a random LLM, up or down): each is committed through the store as the API commits it, folded by
the fold thread, and timed by the engine's own `on_fold` hook (what `gmtrouter_fold_seconds` exports). A fold
updates the user's own deviations, the query's, and what everybody shares (the population's strengths). Writes
benchmarks/out/fold_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, OUT, save_json
from benchmarks.scaling import simulate_records, watched

console = Console()

FOLD_SCRIPT = """
import json, random, sys, tempfile, threading, time
from pathlib import Path
import numpy as np
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.serve.engine import Engine
from gmtrouter.serve.store import Store

model, count = Path(sys.argv[1]), int(sys.argv[2])
folds, done = [], threading.Event()
def on_fold(seconds, records):
    folds.append(seconds)
    done.set()
with tempfile.TemporaryDirectory() as folder:
    store = Store(f"sqlite:///{folder}/fold.db")
    started = time.perf_counter()
    engine = Engine(store, model, on_fold=on_fold, sync_seconds=0)
    load = time.perf_counter() - started
    history = engine.router.context.history
    rng = random.Random(0)
    picks = [history[rng.randrange(len(history))] for _ in range(count)]
    llms = engine.router.llms
    waits = []
    for k, seen in enumerate(picks):
        record = Interaction(user=seen.user, conversation=f"fold/{k}", turn=1, query=seen.query,
                             responses=[Response(llm=rng.choice(llms), rating=float(rng.random() < 0.5))])
        row, _ = store.add_feedback(f"fold:{k}", record.user, "thumbs", record)
        done.clear()
        begin = time.perf_counter()
        engine.observe([row])
        done.wait(600)
        waits.append(time.perf_counter() - begin)
    engine.close()
    store.close()
print(json.dumps({
    "load_seconds": load,
    "history": len(history),
    "fold_seconds_median": float(np.median(folds)),
    "fold_seconds_p95": float(np.percentile(folds, 95)),
    "live_seconds_median": float(np.median(waits)),
    "folds": len(folds),
}))
"""


def measure(size: int, data_dir: Path, work: Path, count: int, budget: float, memory_gb: float) -> dict:
    data, model = work / f"llmrouter-{size}.jsonl", work / f"model-{size}"
    simulate_records(data_dir, size, data)
    row: dict = {"records": size}
    if not (model / "config.json").is_file():
        console.print(f"training the {size:,}-record model (benchmarks.scaling's, with default settings)")
        train = [sys.executable, "-m", "gmtrouter", "train", "--data", str(data), "-o", str(model)]
        trained = watched(train, budget, memory_gb * 1024)
        if trained["stopped"]:
            return {**row, "stopped": f"training {trained['stopped']}"}
    folded = watched([sys.executable, "-c", FOLD_SCRIPT, str(model), str(count)], budget, memory_gb * 1024)
    if folded["stopped"]:
        return {**row, "stopped": f"folding {folded['stopped']}"}
    return {**row, **json.loads(folded["stdout"].strip().splitlines()[-1]), "peak_mb": folded["peak_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    parser.add_argument("--feedback", type=int, default=40, help="thumbs folded at each size")
    parser.add_argument("--work", type=Path, default=Path("runs/scaling"), help="benchmarks.scaling's folder")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds a phase may take")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="resident memory a phase may use")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    earlier = OUT / "fold_cost.json"
    rows = {r["records"]: r for r in json.loads(earlier.read_text())["rows"]} if earlier.exists() else {}
    for size in (int(s) for s in args.sizes.split(",")):
        rows[size] = measure(size, args.data_dir, args.work, args.feedback, args.budget, args.memory_gb)
        ordered = [rows[k] for k in sorted(rows)]
        save_json("fold_cost", {"feedback_per_size": args.feedback, "rows": ordered})
        out = Table(title="the service's fold time per thumb")
        for column in ("records", "load s", "fold ms median", "fold ms p95", "thumb to live ms", "peak GB"):
            out.add_column(column, justify="right")
        for r in ordered:
            if "stopped" in r:
                out.add_row(f"{r['records']:,}", r["stopped"], "", "", "", "")
                continue
            out.add_row(
                f"{r['records']:,}",
                f"{r['load_seconds']:.1f}",
                f"{1000 * r['fold_seconds_median']:.1f}",
                f"{1000 * r['fold_seconds_p95']:.1f}",
                f"{1000 * r['live_seconds_median']:.1f}",
                f"{r['peak_mb'] / 1024:.2f}",
            )
        console.print(out)
    console.print(f"wrote {earlier}")


if __name__ == "__main__":
    main()
