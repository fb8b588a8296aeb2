"""Where a round of the online benchmark goes: choose (route) and learn (observe one thumb) timed apart, and a
cProfile of the loop.

    python -m benchmarks.online_profile --matrix llmrouter --rounds 600                 # gmtrouter-greedy
    python -m benchmarks.online_profile --matrix llmrouter --rounds 6000 --policy linucb

`gmtrouter-greedy` starts from the warm-start model that `gmtrouter bench --online` trained (under
runs/bench/online/models/; run the benchmark's warm scenario first); LinUCB reads the query embeddings it wrote.
Seed 0's warm world of the matrix, one torch and one BLAS thread (as the benchmark's jobs). Prints the median and
90th percentile of choose and learn per round, and the functions that take most of the loop's time; writes
benchmarks/out/online_profile-POLICY-MATRIX.json.
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
from threadpoolctl import threadpool_limits

from benchmarks.common import save_json
from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy
from gmtrouter.bench.online.policies import LinUCB, Policy, WinRate
from gmtrouter.bench.online.scenarios import SCENARIOS
from gmtrouter.bench.online.world import WorldConfig, build_world
from gmtrouter.data.matrix import read_matrix
from gmtrouter.data.sim_features import build_features

OUT = Path("runs/bench/online")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="llmrouter", choices=("gsm8k", "mmlu", "llmrouter"))
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--policy", default="gmtrouter-greedy", choices=("gmtrouter-greedy", "win-rate", "linucb"))
    parser.add_argument("--out", type=Path, default=OUT, help="the online benchmark's --out/online folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        profile_loop(args)


def make_policy(name: str, matrix: str, out: Path) -> Policy:
    if name == "win-rate":
        return WinRate(0)
    if name == "linucb":
        found = sorted((out / "embeddings").glob(f"{matrix}-*.npy"))
        if not found:
            raise SystemExit(f"no query embeddings of {matrix} under {out}/embeddings; run the benchmark first")
        return LinUCB(np.load(found[0]), 0)
    models = [m for m in sorted((out / "models").glob(f"{matrix}-seed*")) if (m / "config.json").is_file()]
    if not models:
        raise SystemExit(f"no warm-start model of {matrix} under {out}/models; run the warm scenario first")
    return GmtrouterPolicy("gmtrouter-greedy", explore=False, seed=0, model_dir=models[0])


def profile_loop(args: argparse.Namespace) -> None:
    rows = read_matrix(args.out / "data" / f"{args.matrix}_matrix.jsonl")
    world = build_world(rows, build_features(rows), WorldConfig(), 0, SCENARIOS["warm"].change)
    policy = make_policy(args.policy, args.matrix, args.out)
    policy.start(world.stream, [])
    args.rounds = min(args.rounds, world.stream.rounds)
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
    history = getattr(getattr(policy, "router", None), "context", None)
    result = {
        "policy": args.policy,
        "matrix": args.matrix,
        "rounds": args.rounds,
        "history_records": len(history.history) if history is not None else None,
        "choose_ms": {"median": 1e3 * float(np.median(routes)), "p90": 1e3 * float(np.percentile(routes, 90))},
        "learn_ms": {"median": 1e3 * float(np.median(observes)), "p90": 1e3 * float(np.percentile(observes, 90))},
        "routes_per_second": args.rounds / (sum(routes) + sum(observes)),
    }
    print(text.getvalue())
    print(result)
    save_json(f"online_profile-{args.policy}-{args.matrix}", {**result, "profile": text.getvalue()})


if __name__ == "__main__":
    main()
