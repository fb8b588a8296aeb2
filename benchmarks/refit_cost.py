"""What a cold router's refit costs: choosing the backbone's priors, topics and taste communities again by
cross-validation over the thumbs gathered so far (`Router.refit`, which a cold router runs at 200, 400, 800, ...
records).

    python -m benchmarks.refit_cost --matrix llmrouter --sizes 800,1600,3200 [--repeat 1]

The history is the online benchmark's cold world of seed 0 (`gmtrouter bench --online` puts the matrix under
`--out`/online/data), routed at random: one thumb on one answer per round. Prints the seconds of each refit, the
priors and the number of communities it chose, and a digest of the fitted backbone (equal digests: the same
fit), and writes benchmarks/out/refit_cost-MATRIX.json. One torch and one BLAS thread, as the benchmark's jobs.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from benchmarks.common import save_json
from gmtrouter.api import Router
from gmtrouter.bench.online.world import WorldConfig, build_world
from gmtrouter.data.matrix import read_matrix
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.data.sim_features import build_features

console = Console()


def random_history(matrix: Path, rounds: int, seed: int = 0) -> tuple[list[str], list[Interaction]]:
    """(the LLMs, `rounds` thumbs of the cold world of `seed`, each on an answer of a random candidate)."""
    rows = read_matrix(matrix)
    world = build_world(rows, build_features(rows), WorldConfig(rounds=max(rounds, 2)), seed, None)
    stream, rng = world.stream, np.random.default_rng(seed)
    records = []
    for t in range(rounds):
        llm = int(rng.choice(stream.candidates(t)))
        user = stream.user_names[stream.user[t]]
        records.append(
            Interaction(
                user=user,
                conversation=f"{user}/round-{t}",
                turn=1,
                query=stream.queries[stream.row[t]],
                responses=[Response(llm=stream.llms[llm], rating=float(world.truth.thumbs[t, llm]))],
            )
        )
    return stream.llms, records


def digest(router: Router) -> str:
    """A short hash of the fitted backbone's arrays: two refits with the same digest fitted the same."""
    arrays = router.context.prior.arrays()  # type: ignore[attr-defined]
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(np.asarray(arrays[name], dtype=np.float64)).tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="llmrouter", choices=("gsm8k", "mmlu", "llmrouter"))
    parser.add_argument("--sizes", default="800,1600,3200")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="the online benchmark's --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    table = Table("records", "seconds", "user prior", "query prior", "own prior", "communities", "digest")
    results = []
    with threadpool_limits(1):
        llms, history = random_history(args.out / "online" / "data" / f"{args.matrix}_matrix.jsonl", max(sizes))
        for size in sizes:
            router = Router.cold(llms, refit_after=None, seed=0)
            router.observe_many(history[:size])
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                router.refit()
                times.append(time.perf_counter() - began)
            log = router.model.training_log_["backbone"]  # type: ignore[attr-defined]
            row = {
                "records": size,
                "seconds": min(times),
                "user_prior": log["user_prior"],
                "query_prior": log["query_prior"],
                "own_prior": log["own_prior"],
                "communities": log["communities"],
                "digest": digest(router),
            }
            results.append(row)
            table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    save_json(f"refit_cost-{args.matrix}", {"matrix": args.matrix, "results": results})


if __name__ == "__main__":
    main()
