"""How training, loading and routing grow with the number of records: synthetic users over the LLMRouter matrix.

    python -m benchmarks.scaling --sizes 10000,100000 [--budget 1800] [--memory-gb 20]
    python -m benchmarks.scaling --sizes 1000000 --reuse-models           # load and serve the trained model again
    python -m benchmarks.scaling --sizes 10000,1000000 --train-only --set users_per_step=100 \
        --work runs/scaling-100 --name scaling_users_per_step_100   # steps of the same users at both sizes

For each size N (users x 50 records, the simulator's defaults otherwise) it simulates the records once, then
runs each phase as its own process, so that every peak memory is that phase's alone:

- train: `gmtrouter train` with default settings: wall time, the training log's seconds per step and backbone
  tuning time, peak memory;
- load and route: `Router.load` (reading the history and building the routing context), then `Router.route`
  for known users on cached queries (median ms), then `Router.observe` of one rated record of a known user
  (median of 7: what a thumbs sent to the service costs before that user's next route), peak memory;
- serve: `gmtrouter serve` on the model, seconds until `/healthz` answers.

A phase past `--budget` seconds or `--memory-gb` of resident memory is stopped, and the table says so: the
point of the benchmark is where today's code stops scaling. Writes benchmarks/out/scaling.json and a log-log
plot, benchmarks/out/scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, OUT, save_json

RECORDS_PER_USER = 50
console = Console()

ROUTE_SCRIPT = """
import json, random, resource, sys, time
import numpy as np
from gmtrouter.api import Router
started = time.perf_counter()
router = Router.load(sys.argv[1])
load = time.perf_counter() - started
users = sorted({r.user for r in router.context.history[:20000]})
queries = sorted({r.query for r in router.context.history[:20000]})
rng = random.Random(0)
picks = [(rng.choice(users), rng.choice(queries)) for _ in range(300)]
for user, query in picks:
    router.route(user, query)
times = []
for user, query in picks:
    begin = time.perf_counter()
    router.route(user, query)
    times.append(1000 * (time.perf_counter() - begin))
observed = []
for k, (user, query) in enumerate(picks[:7]):
    votes = [{"llm": m, "rating": float(i == 0)} for i, m in enumerate(router.llms[k % 3 : k % 3 + 2])]
    record = {"user": user, "conversation": f"scaling/{k}", "turn": 1, "query": query, "responses": votes}
    begin = time.perf_counter()
    router.observe(record)
    observed.append(time.perf_counter() - begin)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "load_seconds": load,
    "route_ms_median": float(np.median(times)),
    "observe_seconds_median": float(np.median(observed)),
    "peak_mb": peak,
}))
"""


def simulate_records(data_dir: Path, records: int, path: Path) -> float:
    """Write `records` synthetic records to `path` (once); the seconds it took (0 when it was there)."""
    if path.exists():
        return 0.0
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records
    from gmtrouter.data.sim_config import SimConfig
    from gmtrouter.data.simulate import simulate

    started = time.perf_counter()
    rows = prepare("llmrouter", data_dir / "llmrouter")
    users = max(1, records // RECORDS_PER_USER)
    write_records(path, simulate(rows, SimConfig(users=users, records_per_user=RECORDS_PER_USER)).records)
    return time.perf_counter() - started


def _rss_peak_mb(pid: int) -> float:
    """The process's resident high-water mark (Linux VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def watched(command: list[str], budget: float, memory_mb: float, ready: Any = None) -> dict[str, Any]:
    """Run `command`, polling its peak memory; stop it past the budget or the memory cap, or (with `ready`, a
    function) as soon as `ready()` is true. Returns wall seconds, peak MB, exit code, stdout and why it stopped."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, stopped = 0.0, None
    while process.poll() is None:
        peak = max(peak, _rss_peak_mb(process.pid))
        elapsed = time.perf_counter() - started
        if ready is not None and ready():
            stopped = "ready"
        elif elapsed > budget:
            stopped = f"stopped after {budget:.0f} s (budget)"
        elif peak > memory_mb:
            stopped = f"stopped at {peak / 1024:.1f} GB (memory cap)"
        if stopped:
            wall = time.perf_counter() - started
            process.kill()
            process.wait()
            return {"seconds": wall, "peak_mb": peak, "code": None, "stdout": "", "stopped": stopped}
        time.sleep(0.25)
    stdout, stderr = process.communicate()
    result = {"seconds": time.perf_counter() - started, "peak_mb": peak, "code": process.returncode}
    result["stdout"] = stdout
    result["stopped"] = None if process.returncode == 0 else f"failed: {stderr.strip().splitlines()[-1:]}"
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def measure(size: int, data: Path, args: argparse.Namespace, earlier: dict | None) -> dict:
    """Every phase at one size; without `earlier` (this size's row of an earlier run) it trains the model,
    with it the training figures are that row's and the model is the one that run saved."""
    gmtrouter = [sys.executable, "-m", "gmtrouter"]
    work, budget, memory_mb = args.work, args.budget, args.memory_gb * 1024
    model = work / f"model-{size}"
    row: dict[str, Any] = {"records": size, "settings": args.settings}
    if earlier is None:
        settings = [part for pair in args.settings for part in ("--set", pair)]
        train = watched([*gmtrouter, "train", "--data", str(data), "-o", str(model), *settings], budget, memory_mb)
        row["train"] = {k: v for k, v in train.items() if k != "stdout"}
        if train["stopped"]:
            return row
        log = json.loads((model / "config.json").read_text())["state"].get("training_log", {})
        row["train"].update(
            steps=log.get("steps"),
            seconds_per_step=log.get("seconds_per_step"),
            tuning_seconds=log.get("tuning_seconds"),
        )
    else:
        row["train"] = earlier["train"]
    if args.train_only:
        return row
    route = watched([sys.executable, "-c", ROUTE_SCRIPT, str(model)], budget, memory_mb)
    row["route"] = {k: v for k, v in route.items() if k != "stdout"}
    if not route["stopped"]:
        row["route"].update(json.loads(route["stdout"].strip().splitlines()[-1]))
    port = _free_port()
    serve = [*gmtrouter, "serve", "--model", str(model), "--db", f"sqlite:///{work / f'serve-{size}.db'}"]
    started = watched([*serve, "--port", str(port)], min(budget, 600), memory_mb, ready=lambda: _healthy(port))
    row["serve"] = {"healthz_seconds": started["seconds"] if started["stopped"] == "ready" else None, **started}
    row["serve"].pop("stdout", None)
    return row


def _cell(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="scaling: synthetic users over the LLMRouter matrix")
    columns = ("records", "s / step", "tuning s", "fit s", "fit GB", "load s", "route ms", "observe s", "load GB")
    for column in (*columns, "serve s"):
        out.add_column(column, justify="right")
    for row in rows:
        train, route, serve = row.get("train", {}), row.get("route", {}), row.get("serve", {})
        out.add_row(
            f"{row['records']:,}",
            _cell(train.get("seconds_per_step"), ".3f"),
            _cell(train.get("tuning_seconds"), ".1f"),
            train.get("stopped") or _cell(train.get("seconds"), ".1f"),
            _cell(train.get("peak_mb", 0) / 1024, ".2f"),
            route.get("stopped") or _cell(route.get("load_seconds"), ".1f"),
            _cell(route.get("route_ms_median"), ".2f"),
            _cell(route.get("observe_seconds_median"), ".2f"),
            _cell(route.get("peak_mb", 0) / 1024, ".2f") if route else "–",
            _cell(serve.get("healthz_seconds"), ".1f") if serve else "–",
        )
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    series = {
        "fit, s": lambda r: r.get("train", {}).get("seconds") if not r.get("train", {}).get("stopped") else None,
        "s / step x 100": lambda r: (r.get("train", {}).get("seconds_per_step") or 0) * 100 or None,
        "backbone tuning, s": lambda r: r.get("train", {}).get("tuning_seconds"),
        "load (history + context), s": lambda r: r.get("route", {}).get("load_seconds"),
        "serve to /healthz, s": lambda r: r.get("serve", {}).get("healthz_seconds"),
        "route, ms": lambda r: r.get("route", {}).get("route_ms_median"),
        "observe one record, s": lambda r: r.get("route", {}).get("observe_seconds_median"),
        "peak memory of fit, GB": lambda r: r.get("train", {}).get("peak_mb", 0) / 1024 or None,
    }
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for name, get in series.items():
        points = [(r["records"], get(r)) for r in rows if get(r)]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records in the training data (users x 50)")
    ax.set_ylabel("seconds, ms or GB (see legend)")
    ax.set_title("gmtrouter at scale (2 cores; stopped phases are left out)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds a phase may take")
    parser.add_argument("--memory-gb", type=float, default=20.0, help="resident memory a phase may use")
    parser.add_argument("--work", type=Path, default=Path("runs/scaling"))
    parser.add_argument("--set", dest="settings", action="append", default=[], help="KEY=VALUE for train")
    parser.add_argument("--train-only", action="store_true", help="measure training only (no load, route, serve)")
    parser.add_argument("--name", default="scaling", help="name of the JSON and PNG written into benchmarks/out")
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="measure loading and serving the models an earlier run trained (keeping its training figures)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    earlier = OUT / f"{args.name}.json"  # rows of other sizes from an earlier run are kept
    before = {r["records"]: r for r in json.loads(earlier.read_text())["rows"]} if earlier.exists() else {}
    rows = [r for size, r in before.items() if size not in sizes]
    for size in sizes:
        data = args.work / f"llmrouter-{size}.jsonl"
        seconds = simulate_records(args.data_dir, size, data)
        console.print(f"[bold]{size:,} records[/] ({data}{f', simulated in {seconds:.0f} s' if seconds else ''})")
        reused = before.get(size) if args.reuse_models and (args.work / f"model-{size}").is_dir() else None
        rows.append(measure(size, data, args, reused))
        rows.sort(key=lambda row: row["records"])
        console.print(table(rows))
        save_json(args.name, {"budget_seconds": args.budget, "memory_gb": args.memory_gb, "rows": rows})
    plot(rows, OUT / f"{args.name}.png")
    console.print(f"wrote {OUT / f'{args.name}.json'} and {OUT / f'{args.name}.png'}")


if __name__ == "__main__":
    main()
