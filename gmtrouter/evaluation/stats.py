"""What is in a records or matrix file: the numbers `gmtrouter data stats` prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from gmtrouter.data.matrix import MatrixRow, score_table
from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import UTILITY_KEY
from gmtrouter.evaluation.metrics import evaluate_scores


def record_stats(records: Sequence[Interaction]) -> dict[str, object]:
    """Counts of users, conversations, turns, records, LLMs, pairs and ties; interactions per user."""
    per_user = np.array(list(Counter(r.user for r in records).values()))
    rated = ties = 0
    for record in records:
        ratings = np.asarray(record.ratings)
        i, j = np.triu_indices(len(ratings), k=1)
        equal = int((ratings[i] == ratings[j]).sum())
        ties += equal
        rated += len(i) - equal
    stats: dict[str, object] = {
        "records": len(records),
        "users": len(per_user),
        "conversations": len({r.conversation for r in records}),
        "max_turn": max(r.turn for r in records),
        "multi_turn_records": sum(r.turn > 1 for r in records),
        "queries": len({r.query for r in records}),
        "llms": len({llm for r in records for llm in r.llms}),
        "responses": sum(len(r.responses) for r in records),
        "rated_pairs": rated,
        "ties": ties,
        "single_response_records": sum(len(r.responses) == 1 for r in records),
        "interactions_per_user": {
            "min": int(per_user.min()),
            "median": float(np.median(per_user)),
            "max": int(per_user.max()),
        },
    }
    oracle = oracle_metrics(records)
    if oracle is not None:
        stats["oracle_accuracy"] = oracle["accuracy"]
        stats["oracle_auc"] = oracle["auc"]
    return stats


def oracle_metrics(records: Sequence[Interaction]) -> dict[str, object] | None:
    """Metrics of scoring each response by the true utility the simulator wrote into `meta`, if it did."""
    if not records or any(UTILITY_KEY not in r.meta for r in records):
        return None
    return evaluate_scores(records, [r.meta[UTILITY_KEY] for r in records])


def matrix_stats(rows: Sequence[MatrixRow]) -> dict[str, object]:
    """Queries, LLMs and each LLM's mean score and mean cost."""
    llms, table = score_table(rows)
    costs = {
        llm: [row.responses[llm].cost for row in rows if llm in row.responses and row.responses[llm].cost is not None]
        for llm in llms
    }
    return {
        "queries": len(rows),
        "llms": len(llms),
        "mean_score": {llm: float(np.nanmean(table[:, j])) for j, llm in enumerate(llms)},
        "mean_cost": {llm: (float(np.mean(c)) if c else None) for llm, c in costs.items()},
        "best_single_llm": llms[int(np.nanargmax(np.nanmean(table, axis=0)))],
        "oracle_score": float(np.nanmean(np.nanmax(table, axis=1))),
    }
