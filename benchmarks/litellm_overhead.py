"""What asking gmtrouter adds to a LiteLLM request: latency of `litellm.Router.acompletion` alone and with gmtrouter.

    python benchmarks/litellm_overhead.py --data-dir ../shared/data --out runs/litellm-bench

Trains (once) a small GMTRouter on MT-Bench (the hashing encoder, as the tests do: the text encoder's cost is
measured in docs/benchmarks.md, section Service), starts the MT-Bench replay upstream and `gmtrouter serve` as
child processes on loopback ports, and sends --requests chat completions (MT-Bench questions, each user once a
question) through four LiteLLM Routers with the same three deployments, taking turns request by request: with
LiteLLM's own simple shuffle, with gmtrouter's routing plugin and its custom strategy asking the service, and
with the plugin asking a Router in this process. Requests go one at a time, so a latency is one request's.
Prints a Markdown table and writes latency.png and results.json under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import litellm  # noqa: E402

from gmtrouter.api import Router  # noqa: E402
from gmtrouter.data.loaders import prepare  # noqa: E402
from gmtrouter.data.schema import write_records  # noqa: E402
from gmtrouter.integrations.client import ServiceClient  # noqa: E402
from gmtrouter.integrations.litellm import GmtRouting  # noqa: E402
from gmtrouter.integrations.local import LocalClient  # noqa: E402
from tests.serve_support import ADMIN, server, train_small_model, upstream_process  # noqa: E402

DEPLOYED = ("gpt-4", "claude-v1", "vicuna-13b-v1.2")
USERS = ("taste-1", "taste-3", "taste-5", "expert_0")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def router_for(mode: str, replay: str, gmt: GmtRouting | None) -> litellm.Router:
    model_list = [
        {"model_name": "auto", "litellm_params": {"model": f"openai/{m}", "api_base": replay, "api_key": "-"}}
        for m in DEPLOYED
    ]
    if mode.startswith("plugin"):
        return litellm.Router(model_list=model_list, plugins=[gmt.plugin], num_retries=0)  # type: ignore[union-attr]
    router = litellm.Router(model_list=model_list, num_retries=0)
    if mode == "strategy, service":
        router.register_plugin(gmt.strategy(router))  # type: ignore[union-attr]
    return router


async def timed(routers: dict[str, litellm.Router], questions: list[str], requests: int) -> dict[str, list[float]]:
    """Seconds per request of each router; the modes take turns request by request, so that the machine's load
    (shared, and busy) falls on all of them alike."""
    seconds: dict[str, list[float]] = {mode: [] for mode in routers}
    for i in range(requests):
        user = USERS[i % len(USERS)]
        chat = [{"role": "user", "content": questions[(i // len(USERS)) % len(questions)]}]
        for mode, router in routers.items():
            start = time.perf_counter()
            await router.acompletion(model="auto", messages=chat, user=user, metadata={"user": user})
            seconds[mode].append(time.perf_counter() - start)
    return seconds


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    y = range(len(modes))
    ax.barh([i + 0.2 for i in y], [results[m]["median_ms"] for m in modes], height=0.4, label="median")
    ax.barh([i - 0.2 for i in y], [results[m]["p90_ms"] for m in modes], height=0.4, label="90th percentile")
    ax.set_yticks(list(y), modes)
    ax.invert_yaxis()
    ax.set_xlabel("ms per LiteLLM chat completion (replay upstream on loopback)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "litellm-bench")
    parser.add_argument("--requests", type=int, default=80)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    model = args.out / "model"
    if not (model / "config.json").is_file():
        records = args.out / "mt_bench.jsonl"
        write_records(records, prepare("mt-bench", args.data_dir / "mt_bench"))
        train_small_model(records, model)
    questions = [q.query for q in prepare("mt-bench", args.data_dir / "mt_bench") if q.turn == 1]
    questions = list(dict.fromkeys(questions))
    replay_args = [sys.executable, "-m", "gmtrouter", "serve", "replay-upstream"]
    replay_args += ["--data-dir", str(args.data_dir / "mt_bench")]
    results: dict[str, dict[str, float]] = {}
    with upstream_process(replay_args) as replay, server(model, f"sqlite:///{args.out / 'bench.db'}") as base:
        service = GmtRouting(ServiceClient(base, ADMIN, timeout=30))
        local = GmtRouting(LocalClient(Router.load(model)))
        modes = {
            "LiteLLM alone": None,
            "plugin, service": service,
            "strategy, service": service,
            "plugin, in process": local,
        }
        routers = {mode: router_for(mode, replay, gmt) for mode, gmt in modes.items()}
        asyncio.run(timed(routers, questions, 8))  # warm-up: connections, the replay's first answers
        for mode, seconds in asyncio.run(timed(routers, questions, args.requests)).items():
            ms = [1000 * s for s in seconds]
            results[mode] = {"median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90), "requests": len(ms)}
    alone = results["LiteLLM alone"]["median_ms"]
    print("| mode | median ms | p90 ms | median added |\n|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['median_ms'] - alone:+.1f} |")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "latency.png")


if __name__ == "__main__":
    main()
