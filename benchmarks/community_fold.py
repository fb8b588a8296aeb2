"""What taste communities cost a round of the online loop: route and fold with the communities a cold router's
refits kept, then with them dropped, on the same router.

    python -m benchmarks.community_fold --matrix llmrouter --warm-up 1700 --rounds 300 --out <bench out>

The cold `gmtrouter-explore` policy of the online benchmark runs `--warm-up` rounds of seed 0's cold world
(its refits at 200, 400, 800, 1,600 records choosing priors and communities), then refits no more: `--rounds`
rounds with the communities it kept, then `--rounds` more with none. One torch and one BLAS thread; the matrix
is the one `gmtrouter bench --online` put under `--out`/online/data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from benchmarks.common import save_json
from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy
from gmtrouter.bench.online.world import WorldConfig, build_world
from gmtrouter.data.matrix import read_matrix
from gmtrouter.data.sim_features import build_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="llmrouter", choices=("gsm8k", "mmlu", "llmrouter"))
    parser.add_argument("--warm-up", type=int, default=1700)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="the online benchmark's --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        rows = read_matrix(args.out / "online" / "data" / f"{args.matrix}_matrix.jsonl")
        world = build_world(rows, build_features(rows), WorldConfig(), 0, None)
        policy = GmtrouterPolicy("gmtrouter-explore", explore=True, seed=0)
        policy.start(world.stream, [])

        def play(start: int, stop: int) -> float:
            """ms a round over rounds start..stop."""
            began = time.perf_counter()
            for t in range(start, stop):
                llm = policy.choose(t, world.stream.candidates(t))
                policy.learn(t, llm, float(world.truth.thumbs[t, llm]))
            return (time.perf_counter() - began) / (stop - start) * 1e3

        play(0, args.warm_up)
        router = policy.router
        kept = router.model.training_log_["backbone"]["communities"]  # type: ignore[attr-defined]
        router.refit_after = None
        with_them = play(args.warm_up, args.warm_up + args.rounds)
        router.model.communities_ = None  # type: ignore[attr-defined]
        router.context.refresh()
        without = play(args.warm_up + args.rounds, args.warm_up + 2 * args.rounds)
    print(f"{kept} communities: {with_them:.1f} ms a round with them, {without:.1f} ms without")
    save_json(
        f"community_fold-{args.matrix}",
        {"matrix": args.matrix, "communities": kept, "ms_with": with_them, "ms_without": without},
    )


if __name__ == "__main__":
    main()
