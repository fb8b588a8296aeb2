"""`Router.profile` and `Router.history` of one user against the size of the history.

    python -m benchmarks.profile_scale --records 100000,1000000

The history is MT-Bench's records copied under new user names, 50 records a user (records of 20,000 users at
1M), behind a fitted `global-winrate` router: what profile and history cost is reading one user's records,
which does not depend on the router. Each size times `--users` random users (median and p95 ms), once through
the per-user index (built with the router's context; one build is timed apart) and once by the scan of the
whole history it replaced. Writes benchmarks/out/profile_scale.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_DATA, mt_bench, save_json
from gmtrouter.api import Router
from gmtrouter.registry.routers import make_router

PER_USER = 50


def timed(call, users: list[str]) -> dict[str, float]:
    times = []
    for user in users:
        started = time.perf_counter()
        call(user)
        times.append(1000 * (time.perf_counter() - started))
    return {"median_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="100000,1000000")
    parser.add_argument("--users", type=int, default=200, help="users timed per size")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    base = mt_bench(args.data_dir)
    model = make_router("global-winrate").fit(base)
    rng = np.random.default_rng(0)
    out = []
    for size in (int(s) for s in args.records.split(",")):
        history = [
            base[i % len(base)].model_copy(update={"user": f"user-{i // PER_USER}"}) for i in range(size)
        ]  # shallow copies: the texts are shared
        router = Router(model, history)
        users = [f"user-{u}" for u in rng.choice(size // PER_USER, size=args.users, replace=False)]
        del router.context._by_user  # built with the context: built again here, to time it
        started = time.perf_counter()
        router.context.records_of(users[0])
        build = 1000 * (time.perf_counter() - started)
        row = {
            "records": size,
            "index_build_ms": build,
            "profile": timed(router.profile, users),
            "history": timed(router.history, users),
            "scan": timed(lambda u, h=history: [r for r in h if r.user == u], users[:20]),
        }
        out.append(row)
        print(
            f"{size:>9,} records: profile {row['profile']['median_ms']:.3f} ms median "
            f"({row['profile']['p95_ms']:.3f} p95), history {row['history']['median_ms']:.3f} ms, "
            f"the index built in {build:.0f} ms (with the context), the old scan {row['scan']['median_ms']:.1f} ms"
        )
        del router, history
    save_json("profile_scale", out)


if __name__ == "__main__":
    main()
