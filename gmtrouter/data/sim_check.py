"""How hard a simulated dataset is: three reference accuracies printed by `gmtrouter data simulate --check`.

- oracle: score each response by its true utility (`meta.utility`); below 1 only through the choice noise.
- global win rate: score each LLM by its share of won pairs over the whole file; what a router that ignores
  users can do. Far below the oracle when users genuinely disagree.
- per-user logistic: for each user, a logistic regression on [LLM one-hot, LLM one-hot x query category]
  differences, fitted on the user's first `train_frac` of records (file order) and scored on the rest. It
  sees only what a personalized router sees (query category, candidate LLMs, the user's past ratings), so it
  shows how much of the users' preferences can be learnt from their history.

- community posterior (worlds of taste communities only): the Bayes rule of `sim_posterior` at k shots, with
  the rule that is told each user's community (the limit of many shots) and the oracle on the same records.

All use the pairwise accuracy of the metrics contract: pairs i < j of a record with different ratings;
a predicted tie counts as wrong.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import COMMUNITY_KEY, COMMUNITY_UTILITY_KEY, UTILITY_KEY
from gmtrouter.data.sim_posterior import (
    CommunityModel,
    community_posterior_scores,
    community_posteriors,
    community_taste_scores,
    known_community_scores,
    true_community_mass,
)

COMMUNITY_SHOTS = (0, 1, 3, 5, 10, 20)


@dataclass(frozen=True)
class PairTable:
    """Every differently rated pair (i < j, record order) of a file, as flat arrays."""

    record: np.ndarray  # [P] record index
    user: np.ndarray  # [P] user index
    first: np.ndarray  # [P] LLM index of response i
    second: np.ndarray  # [P] LLM index of response j
    category: np.ndarray  # [P] category index of the record
    label: np.ndarray  # [P] 1 if response i was rated higher
    utility_diff: np.ndarray | None  # [P] utility_i - utility_j, when every record has meta.utility
    n_llms: int
    n_categories: int


def pair_table(records: Sequence[Interaction]) -> PairTable:
    """Flatten the rated pairs of `records`, records with the same number of responses in one batch."""
    llm_ix = {name: j for j, name in enumerate(sorted({llm for r in records for llm in r.llms}))}
    cat_ix = {name: c for c, name in enumerate(sorted({str(r.meta.get("category", "")) for r in records}))}
    user_ix = {name: u for u, name in enumerate(dict.fromkeys(r.user for r in records))}
    has_utility = bool(records) and all(UTILITY_KEY in r.meta for r in records)
    by_size: dict[int, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_size[len(record.responses)].append(index)
    parts: list[tuple[np.ndarray, ...]] = []
    for size, indices in sorted(by_size.items()):
        if size < 2:
            continue
        rating = np.asarray([records[n].ratings for n in indices], dtype=float)
        llm = np.asarray([[llm_ix[name] for name in records[n].llms] for n in indices])
        utility = (
            np.asarray([records[n].meta[UTILITY_KEY] for n in indices], dtype=float)
            if has_utility
            else np.zeros_like(rating)
        )
        i, j = np.triu_indices(size, k=1)
        rec = np.broadcast_to(np.asarray(indices)[:, None], (len(indices), len(i)))
        keep = rating[:, i] != rating[:, j]
        parts.append(
            (
                rec[keep],
                llm[:, i][keep],
                llm[:, j][keep],
                (rating[:, i] > rating[:, j])[keep].astype(int),
                (utility[:, i] - utility[:, j])[keep],
            )
        )
    if parts:
        record, first, second, label, diff = (np.concatenate(column) for column in zip(*parts, strict=True))
        order = np.argsort(record, kind="stable")  # record order, as the metrics contract pairs them
        record, first, second, label, diff = (a[order] for a in (record, first, second, label, diff))
    else:
        record = first = second = label = np.zeros(0, dtype=int)
        diff = np.zeros(0)
    users = np.asarray([user_ix[r.user] for r in records], dtype=int)
    cats = np.asarray([cat_ix[str(r.meta.get("category", ""))] for r in records], dtype=int)
    return PairTable(
        record=record,
        user=users[record] if len(record) else record,
        first=first,
        second=second,
        category=cats[record] if len(record) else record,
        label=label,
        utility_diff=diff if has_utility else None,
        n_llms=len(llm_ix),
        n_categories=len(cat_ix),
    )


def accuracy(label: np.ndarray, diff: np.ndarray) -> float:
    """Share of pairs whose score difference has the rating's sign; a zero difference is wrong."""
    if len(label) == 0:
        return float("nan")
    return float(np.where(label == 1, diff > 0, diff < 0).mean())


def win_rates(pairs: PairTable, mask: np.ndarray | None = None) -> np.ndarray:
    """[M] each LLM's share of won pairs (0.5 for an LLM without pairs)."""
    mask = np.ones(len(pairs.label), dtype=bool) if mask is None else mask
    m = pairs.n_llms
    winner = np.where(pairs.label == 1, pairs.first, pairs.second)[mask]
    games = np.bincount(pairs.first[mask], minlength=m) + np.bincount(pairs.second[mask], minlength=m)
    wins = np.bincount(winner, minlength=m)
    return np.where(games > 0, wins / np.maximum(games, 1), 0.5)


def _design(pairs: PairTable, index: np.ndarray) -> np.ndarray:
    """[len(index), M * (1 + C)] features of pair differences: LLM one-hot and LLM x category one-hot."""
    m = pairs.n_llms
    x = np.zeros((len(index), m * (1 + pairs.n_categories)))
    rows = np.arange(len(index))
    cat = pairs.category[index]
    for llm, sign in ((pairs.first[index], 1.0), (pairs.second[index], -1.0)):
        np.add.at(x, (rows, llm), sign)
        np.add.at(x, (rows, m * (1 + cat) + llm), sign)
    return x


def user_ranks(records: Sequence[Interaction]) -> tuple[np.ndarray, dict[str, int]]:
    """([N] each record's place among its user's records in file order, from 0; user -> number of records)."""
    rank = np.zeros(len(records), dtype=int)
    size: dict[str, int] = defaultdict(int)
    for index, record in enumerate(records):
        rank[index] = size[record.user]
        size[record.user] += 1
    return rank, dict(size)


def per_user_logistic_diffs(
    pairs: PairTable, records: Sequence[Interaction], train_frac: float = 0.7, c: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(held-out mask [P], predicted score differences [P]) of one logistic regression per user, fitted on
    the pairs of the user's first `train_frac` records. Each training pair is also added swapped, so the
    model is antisymmetric and a user who always picks the same side still gets a fit."""
    rank, size = user_ranks(records)
    cut = np.asarray([round(train_frac * size[r.user]) for r in records])
    held = rank[pairs.record] >= cut[pairs.record]
    diff = np.zeros(len(pairs.label))
    x = _design(pairs, np.arange(len(pairs.label)))
    order = np.argsort(pairs.user, kind="stable")
    bounds = np.flatnonzero(np.r_[True, pairs.user[order][1:] != pairs.user[order][:-1], True])
    for start, stop in itertools.pairwise(bounds):
        mine = order[start:stop]
        train, test = mine[~held[mine]], mine[held[mine]]
        if len(train) == 0 or len(test) == 0:
            continue
        model = LogisticRegression(C=c, fit_intercept=False, solver="liblinear")
        model.fit(np.concatenate([x[train], -x[train]]), np.r_[pairs.label[train], 1 - pairs.label[train]])
        diff[test] = x[test] @ model.coef_[0]
    return held, diff


def community_reference(
    records: Sequence[Interaction], model: CommunityModel, shots: Sequence[int] = COMMUNITY_SHOTS
) -> dict[str, object]:
    """The community-posterior rule's accuracy at each k of `shots` (that leaves a record to score): each
    user's first k records are the history, and every k scores the same records, each user's after the
    largest k. With the oracle and the rule told each user's community on those records, the community-taste
    reference at each k (the rule knowing the tastes by LLM and task, not the answers), and the mean posterior
    probability of the user's own community at each k."""
    rank, size = user_ranks(records)
    usable = [k for k in shots if k < min(size.values())]
    after = max(usable)
    scored = [r for r, n in zip(records, rank, strict=True) if n >= after]
    pairs = pair_table(scored)  # two responses a record (the rule refuses others): one pair per rated record

    def scored_by(scores: Sequence[Sequence[float]]) -> float:
        margin = np.asarray([first - second for first, second in scores])
        return accuracy(pairs.label, margin[pairs.record])

    communities = {r.user: int(r.meta[COMMUNITY_KEY]) for r in records}
    n_communities = len(records[0].meta[COMMUNITY_UTILITY_KEY])
    by_k, by_taste, found = {}, {}, {}
    for k in usable:
        history = [r for r, n in zip(records, rank, strict=True) if n < k]
        by_k[str(k)] = scored_by(community_posterior_scores(history, scored, model))
        by_taste[str(k)] = scored_by(community_taste_scores(history, scored, model))
        posteriors = community_posteriors(history, model, n_communities)
        found[str(k)] = true_community_mass(posteriors, communities) if posteriors else 1.0 / n_communities
    return {
        "scored_after": after,
        "pairs": len(pairs.label),
        "oracle_accuracy": scored_by([r.meta[UTILITY_KEY] for r in scored]),
        "known_community_accuracy": scored_by(known_community_scores(scored, model)),
        "accuracy": by_k,
        "taste_accuracy": by_taste,
        "own_community_posterior": found,
    }


def check(
    records: Sequence[Interaction], train_frac: float = 0.7, community_model: CommunityModel | None = None
) -> dict[str, object]:
    """The three reference accuracies over all pairs, and again over the held-out pairs that the per-user
    model is scored on (oracle and win rate repeated there for a like-for-like comparison); in a world of
    taste communities (given its `community_model`), the community-posterior reference as well."""
    pairs = pair_table(records)
    nan = float("nan")
    rates = win_rates(pairs)
    rate_diff = rates[pairs.first] - rates[pairs.second]
    held, logistic_diff = per_user_logistic_diffs(pairs, records, train_frac)
    utility = pairs.utility_diff
    result: dict[str, object] = {
        "pairs": len(pairs.label),
        "oracle_accuracy": accuracy(pairs.label, utility) if utility is not None else nan,
        "win_rate_accuracy": accuracy(pairs.label, rate_diff),
        "held_out": {
            "train_frac": train_frac,
            "pairs": int(held.sum()),
            "oracle_accuracy": accuracy(pairs.label[held], utility[held]) if utility is not None else nan,
            "win_rate_accuracy": accuracy(pairs.label[held], rate_diff[held]),
            "per_user_logistic_accuracy": accuracy(pairs.label[held], logistic_diff[held]),
        },
    }
    if community_model is not None:
        result["community_posterior"] = community_reference(records, community_model)
    return result
