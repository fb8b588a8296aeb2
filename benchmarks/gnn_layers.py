"""Which message-passing layer and normalisation let `personalizedrouter` learn users from their ratings.

    python benchmarks/gnn_layers.py --steps 80 --seeds 0 1 2 3

The world is the test suite's: ten users with opposite tastes (alpha over beta, or beta over alpha) on the
same queries, a third LLM that always loses, and nothing but the ratings to tell the users apart. Each
(layer, norm) is fitted for every seed and both default grid points; a run "learns" when its held-out
pairwise accuracy reaches 0.9 (a router that cannot tell users apart gets about 0.55).
"""

from __future__ import annotations

import argparse

import torch

from gmtrouter.baselines.gnn import LAYERS, NORMS
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.registry.routers import make_router
from tests.test_baselines import taste_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--layers", nargs="+", default=list(LAYERS))
    parser.add_argument("--norms", nargs="+", default=list(NORMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    users = [f"a{k}" for k in range(5)] + [f"b{k}" for k in range(5)]
    train, test = split_records(taste_records(users, 24, seed=0, tag="known"), "record", 0.25, 0)
    grids = [{"hidden": 32, "dropout": 0.1}, {"hidden": 64, "dropout": 0.3}]
    print("| layer | norm | runs that learn | accuracies |")
    print("|---|---|---|---|")
    for norm in args.norms:
        for layer in args.layers:
            accuracies = []
            for seed in args.seeds:
                for grid in grids:
                    router = make_router(
                        "personalizedrouter",
                        encoder="hashing-64",
                        layer=layer,
                        norm=norm,
                        grid=grid,
                        steps=args.steps,
                        seed=seed,
                    ).fit(train)
                    accuracies.append(float(evaluate_router(router, train, test)["accuracy"]))
            learned = sum(a >= 0.9 for a in accuracies)
            shown = " ".join(f"{a:.2f}" for a in accuracies)
            print(f"| {layer} | {norm} | {learned}/{len(accuracies)} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
