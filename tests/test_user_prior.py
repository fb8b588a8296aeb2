"""The user prior of the backbone: a few votes stay shrunk, many consistent ones overturn the population."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_expit

from gmtrouter.model.bradley_terry import bradley_terry, penalty
from gmtrouter.model.comparisons import Comparisons
from gmtrouter.model.deviations import FitCache, GroupFit, Priors, fit_groups, preference_after, responsive
from gmtrouter.model.population import Population
from gmtrouter.model.training import USER_PRIOR_GRID, USER_TAIL_GRID


@pytest.mark.parametrize("tail", USER_TAIL_GRID)
def test_more_consistent_votes_never_lower_the_users_preference(tail: float) -> None:
    for prior in USER_PRIOR_GRID:
        curve = [preference_after(votes, prior, tail) for votes in range(0, 16)]
        assert all(b >= a - 1e-9 for a, b in itertools.pairwise(curve)), (prior, tail, curve)


def test_every_candidate_user_prior_keeps_feedback_visible() -> None:
    """Tuning only picks among priors under which three votes move an 80% preference to 65% and ten overturn it."""
    candidates = [(p, t) for p in USER_PRIOR_GRID for t in USER_TAIL_GRID if responsive(p, t)]
    assert (16.0, 1.0) in candidates and (32.0, 1.0) not in candidates and (8.0, math.inf) not in candidates
    for prior, tail in candidates:
        assert preference_after(3, prior, tail) >= 0.35 and preference_after(10, prior, tail) > 0.5


def test_a_heavy_tailed_prior_holds_one_vote_and_releases_ten() -> None:
    """Stiffer than the strongest admissible Gaussian against a little evidence, freer against a lot."""
    gaussian, student = (4.0, math.inf), (16.0, 1.0)
    assert preference_after(1, *student) < preference_after(1, *gaussian)
    assert preference_after(10, *student) > preference_after(10, *gaussian)


@pytest.mark.parametrize("tail", [math.inf, 4.0, 1.0, np.array([1.0, math.inf, 4.0, 1.0])])
def test_fit_is_the_minimum_of_its_objective(tail: float | np.ndarray) -> None:
    rng = np.random.default_rng(0)
    n, llms = 60, 4
    first = rng.integers(llms, size=n)
    second = (first + rng.integers(1, llms, size=n)) % llms
    target = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.3, 0.1, 0.6])
    group = np.zeros(n, dtype=np.int64)
    fitted = bradley_terry(group, first, second, target, 1, llms, 2.0, tail=tail)[0]

    def objective(theta: np.ndarray) -> float:
        z = theta[first] - theta[second]
        loss = -(target * log_expit(z) + (1 - target) * log_expit(-z)).sum()
        return float(loss + penalty(theta[None], 2.0, tail)[0])

    reference = minimize(objective, fitted, method="BFGS").x
    assert objective(fitted) <= objective(reference) + 1e-6
    assert np.allclose(fitted, reference, atol=1e-3)


@pytest.mark.parametrize("tail", USER_TAIL_GRID)
def test_a_users_further_vote_against_an_llm_never_raises_it_for_everybody(tail: float) -> None:
    """However far a user already is from everybody on an LLM (past a Student-t's scale too), moving further
    against it online lowers everybody's strength of it or leaves it."""
    rng = np.random.default_rng(0)
    for prior in USER_PRIOR_GRID:
        priors = Priors(user=prior, query=1.0, user_tail=tail)
        everybody = rng.normal(0, 1, (20, 3))
        variance = np.full((20, 3), 0.5 / prior)
        population = Population(np.array([0.5, 0.0, -0.5]), 0.0, 0.0, None)
        for start in np.linspace(-6, 0, 13):
            before = np.array([[start, 0.0, 0.0]])
            now = before - np.array([[0.5, 0.0, 0.0]])  # a vote against LLM 0
            moved = population.after(before, now, everybody, variance, priors).strengths - population.strengths
            assert moved[0] <= 1e-12 and moved[1:] == pytest.approx(0.0), (prior, tail, start, moved)


def test_a_cached_fit_is_the_fit_and_a_changed_input_is_fitted_again() -> None:
    """Cross-validating priors takes repeated fits from a cache: what it returns must be the very fit its inputs
    give, and any change of an input (an expected margin, the prior) must fit anew."""
    rng = np.random.default_rng(0)
    count, llms, users = 60, 4, 5
    comparisons = Comparisons(
        record=np.arange(count),
        first=rng.integers(0, llms - 1, count),
        second=np.full(count, llms - 1),
        target=rng.integers(0, 2, count).astype(float),
    )
    groups = rng.integers(0, users, count)
    expected = rng.normal(size=(count, llms))
    cache = FitCache()
    first = fit_groups(groups, users, comparisons, expected, 2.0, 1.0, posterior=True, cache=cache)
    plain = fit_groups(groups, users, comparisons, expected, 2.0, 1.0, posterior=True)
    assert np.array_equal(first.mean, plain.mean) and np.array_equal(first.variance, plain.variance)
    assert fit_groups(groups, users, comparisons, expected, 2.0, 1.0, posterior=True, cache=cache) is first
    assert cache.hits == 1
    moved = expected.copy()
    moved[7, comparisons.first[7]] += 0.5
    again = fit_groups(groups, users, comparisons, moved, 2.0, 1.0, posterior=True, cache=cache)
    stiffer = fit_groups(groups, users, comparisons, expected, 4.0, 1.0, posterior=True, cache=cache)
    assert cache.hits == 1
    assert not np.array_equal(again.mean, first.mean) and not np.array_equal(stiffer.mean, first.mean)


def test_the_fit_cache_holds_no_more_than_its_budget() -> None:
    """A fit spans every group of the table, so the cache is bounded by bytes, not by count: on a large
    history a handful of fits would otherwise hold gigabytes."""
    fit = GroupFit(np.zeros((1000, 10)), np.zeros((1000, 10)), np.zeros(1000))
    cache = FitCache(max_bytes=3 * (fit.mean.nbytes + fit.variance.nbytes + fit.evidence.nbytes))
    for k in range(10):
        cache.put(bytes([k]), fit)
        assert cache.bytes <= cache.max_bytes
    assert len(cache.fits) == 3 and cache.get(bytes([9])) is fit and cache.get(bytes([0])) is None
