"""Training time on MT-Bench and in-process routing latency of GMTRouter.

    python -m benchmarks.speed --threads 2

Training: GMTRouter with default settings on the 80% record split of MT-Bench (seed 0), text embeddings
already cached (the cache is warmed first, outside the timing). Routing: `Router.route` for known users
with candidates = all six LLMs, (a) on queries whose embeddings are cached, (b) on queries never seen, so
each call embeds its query with all-MiniLM-L6-v2, (c) on such new queries routed once before (the router's
query cache). Also `Router.observe` (one new rated record of a known user, folded in incrementally).
`--history N` grows the router's history to N records with copies of the training records under new user
names (the model is trained on the real ones). Writes benchmarks/out/speed.json.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, mt_bench, save_json
from gmtrouter.api import Router
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.data.split import split_records
from gmtrouter.registry.routers import make_router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--history", type=int, default=0, help="grow the routing history to this many records")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = mt_bench(args.data_dir)
    train, _ = split_records(records, "record", 0.2, 0)

    router = make_router("gmtrouter", seed=0, progress=False)
    router.text_encoder().encode(sorted({r.query for r in records} | {x.text for r in records for x in r.responses}))
    started = time.perf_counter()
    router.fit(train)
    fit_seconds = time.perf_counter() - started

    history = list(train)
    while len(history) < args.history:
        copy = len(history) // len(train)
        history += [r.model_copy(update={"user": f"{r.user}~{copy}"}) for r in train][: args.history - len(history)]
    api = Router(router, history)
    rng = random.Random(0)
    users = sorted({r.user for r in train})
    queries = sorted({r.query for r in records})
    cached = _times(lambda i: api.route(rng.choice(users), rng.choice(queries)), args.requests)
    run = uuid.uuid4().hex[:8]  # new texts on every run: the encoder's disk cache has never seen them
    fresh = _times(lambda i: api.route(rng.choice(users), f"{rng.choice(queries)} ({run}-{i})"), args.requests // 5)
    for i in range(20):
        api.route(users[0], f"{queries[i]} ({run}-{i})")
    repeated = _times(lambda i: api.route(rng.choice(users), f"{queries[i % 20]} ({run}-{i % 20})"), args.requests)
    llms = api.llms

    def feedback(i: int) -> None:
        a, b = rng.sample(llms, 2)
        api.observe(
            Interaction(
                user=rng.choice(users),
                conversation=f"bench/{i}",
                turn=1,
                query=rng.choice(queries),
                responses=[Response(llm=a, rating=1.0), Response(llm=b, rating=0.0)],
            )
        )

    observe = _times(feedback, 100)
    rows = {
        f"fit (MT-Bench, {len(train):,} records, embeddings cached)": {
            "seconds": fit_seconds,
            "steps": router.training_log_["steps"],
        },
        "route, cached query": cached,
        "route, query embedded": fresh,
        "route, new query routed before": repeated,
        "observe one record (incremental)": observe,
    }
    table = Table(title=f"GMTRouter speed, {args.threads} torch thread(s), history of {len(history):,} records")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("seconds / steps", justify="right")
    for name, value in rows.items():
        if "seconds" in value:
            table.add_row(name, "", "", f"{value['seconds']:.1f} s, {value['steps']} steps")
        else:
            table.add_row(name, f"{value['median_ms']:.2f}", f"{value['p95_ms']:.2f}", "")
    Console().print(table)
    save_json("speed", {"threads": args.threads, "history_records": len(history), **rows})


def _times(call, count: int) -> dict[str, float]:
    call(-1)  # warm-up
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append(1000 * (time.perf_counter() - started))
    return {"median_ms": float(np.median(samples)), "p95_ms": float(np.percentile(samples, 95)), "n": count}


if __name__ == "__main__":
    main()
