"""Deviations fitted group by group (users, topics, queries): MAP Bradley-Terry fits against what the rest of
the model expects, with their Laplace posterior and evidence, under priors whose precisions are `Priors`."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gmtrouter.model.bradley_terry import bradley_terry, laplace
from gmtrouter.model.comparisons import Comparisons


@dataclass(frozen=True)
class Priors:
    """Precisions of the priors on the deviations (inf: that deviation off), Gaussian but for the user's."""

    user: float
    query: float
    topic: float = math.inf  # the user's deviation on one topic of queries, beyond their overall one
    task: float = math.inf  # everybody's deviation on one topic of queries: which LLM is good at what
    user_tail: float = math.inf  # degrees of freedom of the user prior's Student-t (inf: Gaussian)
    stay: float = math.inf  # a user's stickiness to the previous turn's LLM, beyond everybody's
    own: float = math.inf  # a user's own verdict on one query, beyond their taste; what is left is the query's


@dataclass
class GroupFit:
    """Each group's MAP deviation [n_groups, L], with (where asked) its posterior variance [n_groups, L] and the
    log evidence of the group's comparisons [n_groups] (0 for a group without any)."""

    mean: np.ndarray
    variance: np.ndarray | None = None
    evidence: np.ndarray | None = None


class FitCache:
    """Group fits already made, by a digest of everything a fit reads (each comparison's group, sides, outcome
    and expected margin; the prior). Cross-validating priors refits the same parts again and again (every
    query prior tried refits the same users' deviations first); a fit is a function of its inputs alone, so the
    cached one is the very fit. Holds the newest fits up to `max_bytes` of arrays: a fit spans every group of
    the table (every query, every user's verdict on one), so on a large history a few fits are already large."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes, self.bytes, self.hits = max_bytes, 0, 0
        self.fits = OrderedDict[bytes, GroupFit]()

    @staticmethod
    def key(*parts: np.ndarray | float | int | bool) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
            digest.update(b"|")
        return digest.digest()

    def get(self, key: bytes) -> GroupFit | None:
        found = self.fits.get(key)
        if found is not None:
            self.fits.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: bytes, fit: GroupFit) -> None:
        self.fits[key] = fit
        self.bytes += _size(fit)
        while self.bytes > self.max_bytes and self.fits:
            self.bytes -= _size(self.fits.popitem(last=False)[1])


def _size(fit: GroupFit) -> int:
    return sum(a.nbytes for a in (fit.mean, fit.variance, fit.evidence) if a is not None)


def fit_groups(
    groups: np.ndarray,
    n_groups: int,
    comparisons: Comparisons,
    expected: np.ndarray,
    prior: float,
    tail: float = math.inf,
    posterior: bool = False,
    cache: FitCache | None = None,
    blocks: np.ndarray | None = None,
) -> GroupFit:
    """Each group's MAP deviation from what is `expected` of its comparisons; with `posterior`, its variance
    (Laplace; a group without comparisons keeps the prior's 1 / `prior`, a deviation that is off has 0) and the
    log evidence of its comparisons under this prior (`bradley_terry.laplace`).

    `groups` [table records] names the group of every record (a user, a query, a user's topic);
    `expected` [C, L + 1] holds, for each comparison, the scores the rest of the model gives every LLM and
    (last column) the virtual average opponent. Groups without comparisons (and every group when `prior` is
    infinite) stay at 0. A finite `tail` makes the prior a Student-t with that many degrees of freedom.
    `blocks` [n_groups]: groups that make independent fits side by side (`bradley_terry`'s blocks).
    """
    num_llms = expected.shape[1] - 1
    if not np.isfinite(prior) or len(comparisons.record) == 0:
        zeros = np.zeros((n_groups, num_llms))
        if not posterior:
            return GroupFit(zeros)
        spread = np.full((n_groups, num_llms), 1 / prior if np.isfinite(prior) else 0.0)
        return GroupFit(zeros, spread, np.zeros(n_groups))
    offset = comparisons.margin(expected)
    if cache is None:
        return _fit(groups, n_groups, comparisons, offset, num_llms, prior, tail, posterior, blocks)
    parts = (groups[comparisons.record], comparisons.first, comparisons.second, comparisons.target, offset)
    key = cache.key(*parts, n_groups, num_llms, prior, tail, posterior, -1 if blocks is None else blocks)
    if (found := cache.get(key)) is None:
        found = _fit(groups, n_groups, comparisons, offset, num_llms, prior, tail, posterior, blocks)
        cache.put(key, found)
    return found


def fit_side_by_side(
    groups: np.ndarray,
    n_groups: int,
    comparisons: Comparisons,
    expected: list[np.ndarray],
    prior: float,
    tail: float = math.inf,
) -> list[GroupFit]:
    """`fit_groups` (with the posterior) of the same comparisons against each of several `expected`, in one
    call: the fits are stacked as blocks of groups (record r of fit b becomes record b x records + r), each
    block stopping on its own, so every fit is exactly the one a call of its own gives. Taste communities fit
    every user under each community's prior this way: one Newton solve for all of them, not one per community."""
    count, records = len(expected), len(groups)
    shift = np.arange(count)
    stacked = Comparisons(
        record=(shift[:, None] * records + comparisons.record[None]).ravel(),
        first=np.tile(comparisons.first, count),
        second=np.tile(comparisons.second, count),
        target=np.tile(comparisons.target, count),
    )
    stacked_groups = (shift[:, None] * n_groups + np.asarray(groups)[None]).ravel()
    blocks = np.repeat(shift, n_groups)
    fitted = fit_groups(
        stacked_groups, count * n_groups, stacked, np.concatenate(expected), prior, tail, True, blocks=blocks
    )
    assert fitted.variance is not None and fitted.evidence is not None
    mean = fitted.mean.reshape(count, n_groups, -1)
    variance = fitted.variance.reshape(count, n_groups, -1)
    evidence = fitted.evidence.reshape(count, n_groups)
    return [GroupFit(mean[b], variance[b], evidence[b]) for b in range(count)]


def _fit(
    groups: np.ndarray,
    n_groups: int,
    comparisons: Comparisons,
    offset: np.ndarray,
    num_llms: int,
    prior: float,
    tail: float,
    posterior: bool,
    blocks: np.ndarray | None = None,
) -> GroupFit:
    """`fit_groups` once its trivial cases are out of the way: the MAP fit and, with `posterior`, its Laplace
    variance and evidence."""
    present, compact = np.unique(groups[comparisons.record], return_inverse=True)
    # The virtual opponent's column (a user's overall rating bias) keeps a Gaussian prior: with a heavy
    # tail it could take all of a user's thumbs at once, and a thumb on one LLM would undo those on another.
    tails = np.append(np.full(num_llms, tail), math.inf)
    args = (compact, comparisons.first, comparisons.second)
    fitted = bradley_terry(
        *args,
        comparisons.target,
        len(present),
        num_llms + 1,
        prior,
        offset,
        iterations=20,
        tol=1e-6,
        tail=tails,
        blocks=None if blocks is None else blocks[present],
    )
    out = np.zeros((n_groups, num_llms))
    out[present] = fitted[:, :num_llms]
    if not posterior:
        return GroupFit(out)
    variance = np.full((n_groups, num_llms), 1 / prior)
    evidence = np.zeros(n_groups)
    spread, explained = laplace(fitted, *args, comparisons.target, prior, offset, tails)
    variance[present] = spread[:, :num_llms]
    evidence[present] = explained
    return GroupFit(out, variance, evidence)


def deviations(
    groups: np.ndarray,
    n_groups: int,
    comparisons: Comparisons,
    expected: np.ndarray,
    prior: float,
    tail: float = math.inf,
    posterior: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`fit_groups`'s deviations [n_groups, L], with their variances where `posterior`."""
    fitted = fit_groups(groups, n_groups, comparisons, expected, prior, tail, posterior)
    return (fitted.mean, fitted.variance) if posterior else fitted.mean


def stay_deviations(
    groups: np.ndarray, n_groups: int, comparisons: Comparisons, margin: np.ndarray, stay: np.ndarray, prior: float
) -> np.ndarray:
    """[n_groups] each group's MAP preference for staying with the previous turn's LLM, beyond the `margin` [C]
    the rest of the model gives each comparison (first minus second); `stay` [C] is `Comparisons.stay`.

    It is a Bradley-Terry fit of two options, "stay" and "switch", over the comparisons that put the previous
    LLM against another: the strength difference is the stickiness (its prior precision is `prior` / 2)."""
    use = stay != 0
    if not np.isfinite(prior) or not use.any():
        return np.zeros(n_groups)
    present, compact = np.unique(groups[comparisons.record[use]], return_inverse=True)
    first = (stay[use] < 0).astype(np.int64)  # option 0 is "stay": it is the first side where stay = +1
    strengths = bradley_terry(
        compact, first, 1 - first, comparisons.target[use], len(present), 2, prior, margin[use], tol=1e-6
    )
    out = np.zeros(n_groups)
    out[present] = strengths[:, 0] - strengths[:, 1]
    return out


def preference_after(votes: int, prior: float, tail: float, preference: float = 0.8) -> float:
    """One user's P(B > A) after `votes` consistent votes for B, where the population prefers A at
    `preference`, under a user prior of precision `prior` and `tail`."""
    wins = np.ones(votes)
    index = np.zeros(votes, dtype=np.int64)
    offset = -math.log(preference / (1 - preference))
    theta = bradley_terry(index, index + 1, index, wins, 1, 2, prior, offset, tol=1e-6, tail=tail)[0]
    return float(1 / (1 + math.exp(-(offset + theta[1] - theta[0]))))


def responsive(prior: float, tail: float) -> bool:
    """Whether a user prior keeps feedback visible: against an 80% population preference, three consistent votes
    bring the user's P(B > A) to at least 0.35 and ten votes past 0.5."""
    return preference_after(3, prior, tail) >= 0.35 and preference_after(10, prior, tail) > 0.5


def rows(table: np.ndarray, ids: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """Rows of `table` for ids, `missing` where an id is -1 or beyond the table."""
    known = (ids >= 0) & (ids < len(table))
    rows = table[np.where(known, ids, 0)] if len(table) else np.zeros((len(ids), table.shape[1]))
    return np.where(known[:, None], rows, missing)
