"""What everybody shares: the population strengths of the LLMs, learnt from the users, one voice a user."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.bradley_terry import bradley_terry, prior_curvature
from gmtrouter.model.comparisons import Comparisons, usable_previous, with_average
from gmtrouter.model.deviations import Priors, fit_groups, stay_deviations

POPULATION_PRIOR = 1.0  # the precision of the prior on the population strengths
USER_PRIOR = 1.0  # the precision of the users' taste that everybody's stickiness is read beyond


@dataclass
class Population:
    """What everybody shares: the strengths θ of the LLMs, the average LLM's score against which a lone thumb is
    read (`thumb_bias`: the odds of a thumbs up for an average answer, as a logit), everybody's stickiness σ to
    the previous turn's LLM, and how sure the strengths are (`variance`, where a routing context has read it
    from its users: `with_users`)."""

    strengths: np.ndarray  # [L]
    thumb_bias: float = 0.0
    stay: float = 0.0
    variance: np.ndarray | None = None  # [L]

    @classmethod
    def fit(cls, table: InteractionTable, records: np.ndarray, conversation: bool, l2: float = 1.0) -> Population:
        """Bradley-Terry strengths over every comparison in `records`, all users pooled: pairs of answers, and
        lone rated answers (thumbs) against the average LLM, whose strength is fitted beside them."""
        comparisons = Comparisons.of(table, records)
        num_llms = len(table.llms)
        group = np.zeros(len(comparisons.record), dtype=np.int64)
        fitted = bradley_terry(group, comparisons.first, comparisons.second, comparisons.target, 1, num_llms + 1, l2)[0]
        strengths = fitted[:num_llms]
        bias = float(fitted[num_llms] - strengths.mean()) if (comparisons.second == num_llms).any() else 0.0
        population = cls(strengths, bias)
        if conversation:
            population.stay = population_stay(table, records, population)
        return population

    def widened(self, count: int) -> Population:
        """This population with `count` LLMs more, at the prior's mean (0) and variance (1 / the prior's
        precision): nobody has rated them yet."""
        variance = None if self.variance is None else np.append(self.variance, np.full(count, 1 / POPULATION_PRIOR))
        return replace(self, strengths=np.append(self.strengths, np.zeros(count)), variance=variance)

    def average(self, scores: np.ndarray) -> np.ndarray:
        """[n, L] scores -> [n, L + 1] with the virtual opponent of a lone thumb last: the average LLM's score,
        shifted by the population's thumb bias."""
        out = with_average(scores)
        out[:, -1] += self.thumb_bias
        return out

    def settled(
        self, deviation: np.ndarray, variance: np.ndarray, priors: Priors, l2: float = POPULATION_PRIOR
    ) -> Population:
        """This population one Newton step closer to agreeing with its users, whose deviations [users, L] (from
        their prior's mean) were fitted against these strengths, with their posterior `variance`: the strengths
        at which the users' pulls (`pull`) sum to the population prior's. Each user counts as one voice however
        many votes they cast (their pull is bounded by how far their prior lets them stray), so a user with a
        hundred votes moves everybody's strengths about as far as one of many users can. The strengths'
        variance: one over how firmly the users' data holds them."""
        hold = l2 + holds(deviation, variance, priors).sum(axis=0)
        residual = pull(deviation, priors).sum(axis=0) - l2 * self.strengths
        return replace(self, strengths=self.strengths + residual / hold, variance=1 / hold)

    def after(
        self,
        before: np.ndarray,
        now: np.ndarray,
        deviation: np.ndarray,
        variance: np.ndarray,
        priors: Priors,
        l2: float = POPULATION_PRIOR,
    ) -> Population:
        """This population once some users refitted their deviations from `before` to `now` (their rows, [n, L];
        a new user's before is 0), everybody's being `deviation` with `variance` [users, L]: the Newton step of
        `settled` for the change in those users' pulls, everybody else's deviation assumed to follow as a full
        fit would move it. Thumbs from many users on one LLM move it for everybody, a user with no feedback
        included; one loud user barely does. The pulls are the steady ones (`steady_pull`): a vote moves an LLM
        for everybody the way it points or not at all."""
        change = (steady_pull(now, priors) - steady_pull(before, priors)).sum(axis=0)
        hold = l2 + holds(deviation, variance, priors).sum(axis=0)
        return replace(self, strengths=self.strengths + change / hold, variance=1 / hold)


def population_stay(table: InteractionTable, records: np.ndarray, population: Population, l2: float = 1.0) -> float:
    """Everybody's preference for the previous turn's LLM, beyond the population strengths and each user's own
    taste, over `records`. Read within users: a user who likes one LLM keeps choosing it, so against the
    population strengths alone the previous turn's LLM is mostly the user's favourite and stickiness would
    take what is taste (a new user's first votes could then not overturn it)."""
    comparisons = Comparisons.of(table, records)
    width = len(population.strengths) + 1
    expected = np.broadcast_to(population.average(population.strengths[None]), (len(comparisons.record), width))
    taste = fit_groups(table.rec_user, len(table.user_vocab), comparisons, expected, USER_PRIOR).mean
    margin = comparisons.margin(expected + with_average(taste[table.rec_user[comparisons.record]]))
    groups = np.zeros(table.num_records, dtype=np.int64)
    stay = comparisons.stay(usable_previous(table, records))
    return float(stay_deviations(groups, 1, comparisons, margin, stay, l2)[0])


def pull(deviation: np.ndarray, priors: Priors) -> np.ndarray:
    """How hard a user's prior pulls a deviation back to 0 (its gradient): at the fitted deviation, the pull of
    the user's own evidence the other way, which is what they tell the population."""
    return prior_curvature(deviation, priors.user, priors.user_tail) * deviation


def steady_pull(deviation: np.ndarray, priors: Priors) -> np.ndarray:
    """`pull` held at its peak past it: a Student-t's pull fades for a deviation beyond its scale, so a user
    already far from everybody who votes against an LLM once more would pull less, and raise that LLM for
    everybody else. Held at the peak, one more vote against it lowers it or leaves it (`holds` is 0 there)."""
    if not (0 < priors.user < math.inf) or not np.isfinite(priors.user_tail):
        return pull(deviation, priors)
    peak = math.sqrt(priors.user_tail / priors.user)  # where the pull's slope (`_pull_slope`) crosses 0
    return pull(np.clip(deviation, -peak, peak), priors)


def holds(deviation: np.ndarray, variance: np.ndarray, priors: Priors) -> np.ndarray:
    """[table users, L] how firmly each user's data pins the population's strengths: how much their pull gives
    back when the strengths move, s (1 - s v), with s the slope of the pull at the fitted deviation (the prior's
    curvature; for the Student-t, whose pull fades past its scale, 0 there) and v the deviation's posterior
    variance; 0 for an LLM the user never rated (v = 1 / s), s for one they rated endlessly (v = 0)."""
    if not np.isfinite(priors.user):
        return np.zeros_like(deviation)
    slope = np.clip(_pull_slope(deviation, priors), 0.0, None)
    return np.clip(slope * (1 - slope * variance), 0.0, slope)


def _pull_slope(deviation: np.ndarray, priors: Priors) -> np.ndarray:
    """The derivative of `pull` in the deviation: λ for a Gaussian prior, λ (1 - λδ²/ν) / (1 + λδ²/ν)² for a
    Student-t one."""
    if not np.isfinite(priors.user_tail):
        return np.full_like(deviation, priors.user)
    stretch = priors.user * deviation**2 / priors.user_tail
    return priors.user * (1 - stretch) / (1 + stretch) ** 2
