"""Where a round of the online benchmark goes for gmtrouter: route and observe (one thumb) timed apart, and a
cProfile of the loop.

    python -m benchmarks.online_profile --matrix llmrouter --rounds 600

Runs `gmtrouter-greedy` from the warm-start model that `gmtrouter bench --online` trained (under
runs/bench/online/models/; run the benchmark's warm scenario first), on seed 0's warm world of the matrix, one
torch thread. Prints the median and 90th percentile of `Router.route` and `Router.observe` per round, and the
functions that take most of the loop's time; writes benchmarks/out/online_profile.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import save_json
from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy
from gmtrouter.bench.online.scenarios import SCENARIOS
from gmtrouter.bench.online.world import WorldConfig, build_world
from gmtrouter.data.matrix import read_matrix
from gmtrouter.data.sim_features import build_features

OUT = Path("runs/bench/online")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="llmrouter", choices=("gsm8k", "mmlu", "llmrouter"))
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--out", type=Path, default=OUT, help="the online benchmark's --out/online folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = read_matrix(args.out / "data" / f"{args.matrix}_matrix.jsonl")
    models = sorted((args.out / "models").glob(f"{args.matrix}-seed*"))
    models = [m for m in models if (m / "config.json").is_file()]
    if not models:
        raise SystemExit(f"no warm-start model of {args.matrix} under {args.out}/models; run the warm scenario first")
    world = build_world(rows, build_features(rows), WorldConfig(), 0, SCENARIOS["warm"].change)
    policy = GmtrouterPolicy("gmtrouter-greedy", explore=False, seed=0, model_dir=models[0])
    policy.start(world.stream, [])
    routes, observes = [], []
    profile = cProfile.Profile()
    thumbs = world.truth.thumbs
    for t in range(args.rounds):
        profile.enable()
        began = time.perf_counter()
        llm = policy.choose(t, world.stream.candidates(t))
        routed = time.perf_counter()
        policy.learn(t, llm, float(thumbs[t, llm]))
        done = time.perf_counter()
        profile.disable()
        routes.append(routed - began)
        observes.append(done - routed)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(12)
    result = {
        "matrix": args.matrix,
        "rounds": args.rounds,
        "history_records": len(policy.router.context.history),
        "route_ms": {"median": 1e3 * float(np.median(routes)), "p90": 1e3 * float(np.percentile(routes, 90))},
        "observe_ms": {"median": 1e3 * float(np.median(observes)), "p90": 1e3 * float(np.percentile(observes, 90))},
        "routes_per_second": args.rounds / (sum(routes) + sum(observes)),
    }
    print(text.getvalue())
    print(result)
    save_json("online_profile", {**result, "profile": text.getvalue()})


if __name__ == "__main__":
    main()
