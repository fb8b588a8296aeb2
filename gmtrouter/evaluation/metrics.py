"""Evaluation metrics (the contract in docs/architecture.md): pairwise accuracy, AUC, per-user summaries, top-1.

Pairs are taken in record order (i before j), so a router that sorted responses by rating would be caught.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from gmtrouter.data.schema import Interaction

MIN_USER_PAIRS = 5


@dataclass(frozen=True)
class Pairs:
    """Every pair (i < j, record order) of differently rated responses, flattened over records."""

    record: np.ndarray  # [P] index of the record a pair comes from
    user: np.ndarray  # [P] user id of that record
    label: np.ndarray  # [P] 1 if rating_i > rating_j else 0
    diff: np.ndarray  # [P] score_i - score_j

    @property
    def correct(self) -> np.ndarray:
        """A pair is right when the score order matches the rating order; a predicted tie is wrong."""
        return np.where(self.label == 1, self.diff > 0, self.diff < 0)


def rated_pairs(records: Sequence[Interaction], scores: Sequence[Sequence[float]]) -> Pairs:
    """Build the pairs of `records` whose ratings differ, with the score difference of each."""
    if len(records) != len(scores):
        raise ValueError(f"{len(records)} records but {len(scores)} score lists")
    rec_ix, users, labels, diffs = [], [], [], []
    for index, (record, score) in enumerate(zip(records, scores, strict=True)):
        n = len(record.responses)
        if len(score) != n:
            raise ValueError(f"record {index} has {n} responses but {len(score)} scores")
        if n < 2:
            continue
        i, j = np.triu_indices(n, k=1)
        rating = np.asarray(record.ratings, dtype=float)
        s = np.asarray(score, dtype=float)
        keep = rating[i] != rating[j]
        i, j = i[keep], j[keep]
        rec_ix.append(np.full(len(i), index))
        users.append(np.full(len(i), record.user, dtype=object))
        labels.append((rating[i] > rating[j]).astype(int))
        diffs.append(s[i] - s[j])
    if not rec_ix:
        empty = np.zeros(0)
        return Pairs(empty.astype(int), empty.astype(object), empty.astype(int), empty)
    return Pairs(np.concatenate(rec_ix), np.concatenate(users), np.concatenate(labels), np.concatenate(diffs))


def auc(label: np.ndarray, diff: np.ndarray) -> float:
    """ROC-AUC of score differences against pair labels; NaN when only one label occurs.

    Computed as the Mann-Whitney statistic on average ranks (tied scores count half), which is exactly
    scikit-learn's `roc_auc_score`, without its input checks: per-user AUCs call this hundreds of times.
    """
    label = np.asarray(label)
    if len(label) == 0 or label.min() == label.max():
        return float("nan")
    ranks = rankdata(np.asarray(diff, dtype=float))
    positive = label == 1
    n_pos = int(positive.sum())
    n_neg = len(label) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _summary(values: list[float]) -> dict[str, float]:
    clean = np.asarray([v for v in values if not np.isnan(v)])
    if len(clean) == 0:
        return {"mean": float("nan"), "median": float("nan"), "p10": float("nan")}
    return {
        "mean": float(clean.mean()),
        "median": float(np.median(clean)),
        "p10": float(np.percentile(clean, 10)),
    }


def per_user_values(pairs: Pairs, min_pairs: int = MIN_USER_PAIRS) -> dict[str, tuple[float, float]]:
    """(accuracy, AUC) of each user with at least `min_pairs` pairs: the distribution behind `per_user`."""
    values: dict[str, tuple[float, float]] = {}
    correct = pairs.correct
    order = np.argsort(pairs.user.astype(str), kind="stable")
    users = pairs.user[order].astype(str)
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    for start, end in itertools.pairwise(bounds):
        if end - start < min_pairs:
            continue
        idx = order[start:end]
        values[str(users[start])] = (float(correct[idx].mean()), auc(pairs.label[idx], pairs.diff[idx]))
    return values


def per_user(pairs: Pairs, min_pairs: int = MIN_USER_PAIRS) -> dict[str, object]:
    """Accuracy and AUC of each user with at least `min_pairs` pairs, summarised over those users."""
    values = list(per_user_values(pairs, min_pairs).values())
    accs, aucs = [a for a, _ in values], [u for _, u in values]
    return {"n_users": len(accs), "accuracy": _summary(accs), "auc": _summary(aucs)}


def top1_accuracy(records: Sequence[Interaction], scores: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Share of records with more than two responses whose unique top score is the unique top rating."""
    hits, total = 0, 0
    for record, score in zip(records, scores, strict=True):
        if len(record.responses) <= 2:
            continue
        rating = np.asarray(record.ratings, dtype=float)
        best = np.flatnonzero(rating == rating.max())
        if len(best) != 1:
            continue
        s = np.asarray(score, dtype=float)
        top = np.flatnonzero(s == s.max())
        total += 1
        hits += int(len(top) == 1 and top[0] == best[0])
    return (hits / total if total else float("nan")), total


def evaluate_scores(records: Sequence[Interaction], scores: Sequence[Sequence[float]]) -> dict[str, object]:
    """All contract metrics for scored records, as the dictionary `eval --json` prints."""
    pairs = rated_pairs(records, scores)
    top1, n_top1 = top1_accuracy(records, scores)
    return {
        "accuracy": float(pairs.correct.mean()) if len(pairs.label) else float("nan"),
        "auc": auc(pairs.label, pairs.diff),
        "n_pairs": len(pairs.label),
        "n_records": len(records),
        "n_users": len({r.user for r in records}),
        "per_user": per_user(pairs),
        "top1": top1,
        "n_top1": n_top1,
    }
