"""Does the ONNX int8 encoder route like the PyTorch one? MT-Bench accuracy and AUC of GMTRouter both ways.

    OMP_NUM_THREADS=1 python -m benchmarks.encoder_routing --seeds 0,1,2

Each seed splits MT-Bench's votes by record (test 20%, as benchmarks/mtbench_accuracy.py) and compares:

- served: GMTRouter trained on PyTorch vectors, routing every test record as the service does (`Router.route`
  path: the users' history encoded with PyTorch, each query embedded by the ONNX encoder), against the same
  model and path with the PyTorch encoder for the queries;
- trained: GMTRouter trained and evaluated with the ONNX encoder throughout (what `gmtrouter train` does by
  default now), against training and evaluating with PyTorch (`evaluate_router`, as `gmtrouter eval`).

Writes benchmarks/out/encoder_routing.json and prints a table; the gate is a difference within 0.005.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.common import DEFAULT_DATA, mt_bench, save_json
from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.evaluation.metrics import evaluate_scores
from gmtrouter.registry.routers import make_router
from gmtrouter.text.base import TextEncoder
from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.encoders import model_encoder
from gmtrouter.text.querycache import QueryCacheEncoder


def route_scores(model, history: list[Interaction], test: list[Interaction], queries: TextEncoder) -> dict:
    """Accuracy/AUC of routing each test record alone: history on the training encoder, queries on `queries`."""
    context = model.context(history)  # the history's vectors come from the encoder the model was trained with
    model.use_text_encoder(QueryCacheEncoder(queries))
    scores = []
    for record in test:
        model.text_encoder().encode_queries([record.query])
        scores.append(context.score(record.user, record.query, [r.llm for r in record.responses]))
    return evaluate_scores(test, scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = mt_bench(args.data_dir)
    exact = CachedEncoder(model_encoder(backend="torch"), progress=False)
    fast = CachedEncoder(model_encoder(backend="onnx"), progress=False)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        train, test = split_records(records, "record", 0.2, seed)
        model = make_router("gmtrouter", seed=seed, progress=False)
        model.use_text_encoder(exact)
        model.fit(train)
        served_exact = route_scores(model, train, test, exact)
        model.use_text_encoder(exact)
        served_fast = route_scores(model, train, test, fast)
        model.use_text_encoder(exact)
        trained_exact = evaluate_router(model, train, test)
        onnx_model = make_router("gmtrouter", seed=seed, progress=False)
        onnx_model.use_text_encoder(fast)
        onnx_model.fit(train)
        trained_fast = evaluate_router(onnx_model, train, test)
        for path, a, b in (("served", served_exact, served_fast), ("trained", trained_exact, trained_fast)):
            rows.append(
                {
                    "seed": seed,
                    "path": path,
                    "pytorch": {"accuracy": a["accuracy"], "auc": a["auc"]},
                    "onnx": {"accuracy": b["accuracy"], "auc": b["auc"]},
                    "n_pairs": a["n_pairs"],
                }
            )
            Console(stderr=True).print(
                f"seed {seed} {path}: PyTorch {a['accuracy']:.4f} / {a['auc']:.4f}, "
                f"ONNX {b['accuracy']:.4f} / {b['auc']:.4f}"
            )
    table = Table(title=f"GMTRouter on MT-Bench (record split), PyTorch vs ONNX int8 encoder, seeds {args.seeds}")
    for column in ("path", "seed", "accuracy PyTorch", "accuracy ONNX", "diff", "AUC PyTorch", "AUC ONNX", "diff"):
        table.add_column(column)
    for path in ("served", "trained"):
        chosen = [r for r in rows if r["path"] == path]
        for r in [*chosen, None]:
            picked = chosen if r is None else [r]
            mean = {
                f"{side}_{m}": float(np.mean([x[side][m] for x in picked]))
                for side in ("pytorch", "onnx")
                for m in ("accuracy", "auc")
            }
            table.add_row(
                path,
                "mean" if r is None else str(r["seed"]),
                f"{mean['pytorch_accuracy']:.4f}",
                f"{mean['onnx_accuracy']:.4f}",
                f"{mean['onnx_accuracy'] - mean['pytorch_accuracy']:+.4f}",
                f"{mean['pytorch_auc']:.4f}",
                f"{mean['onnx_auc']:.4f}",
                f"{mean['onnx_auc'] - mean['pytorch_auc']:+.4f}",
            )
    Console().print(table)
    save_json("encoder_routing", rows)


if __name__ == "__main__":
    main()
