"""The taste communities' posterior: what a user's votes say about which community they are in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmtrouter.model.communities import Communities, fit_members
from gmtrouter.model.comparisons import Comparisons
from gmtrouter.model.deviations import fit_groups, fit_side_by_side


def weights_of(topic_prior: float, wins: int, votes: int = 8) -> np.ndarray:
    """One user's posterior over two communities (the first likes LLM 0, the second LLM 1) after `votes`
    comparisons of LLM 0 against LLM 1, `wins` of them for LLM 0, all on one topic."""
    communities = Communities(
        weights=np.array([0.5, 0.5]),
        user=np.array([[0.5, -0.5], [-0.5, 0.5]]),
        topic=np.zeros((2, 1, 2)),
    )
    comparisons = Comparisons(
        record=np.arange(votes),
        first=np.zeros(votes, dtype=np.int64),
        second=np.ones(votes, dtype=np.int64),
        target=(np.arange(votes) < wins).astype(float),
    )
    members = fit_members(
        communities,
        rec_user=np.zeros(votes, dtype=np.int64),
        num_users=1,
        record_topic=np.zeros(votes, dtype=np.int64),
        topics=1,
        comparisons=comparisons,
        expected=np.zeros((votes, 3)),
        user_prior=2.0,
        user_tail=math.inf,
        topic_prior=topic_prior,
    )
    return members.weights[0]


def test_a_topic_taste_that_cannot_move_leaves_the_community_posterior_as_it_is() -> None:
    # A user's votes are evidence for a community once: a topic deviation held at 0 by its prior explains
    # nothing more, so it must not count the same votes a second time and sharpen the posterior.
    for wins in (2, 5, 6, 8):
        without = weights_of(math.inf, wins)
        frozen = weights_of(1e9, wins)
        np.testing.assert_allclose(frozen, without, atol=1e-6)


def test_votes_for_an_llm_lean_the_user_toward_the_community_that_likes_it() -> None:
    for topic_prior in (math.inf, 2.0):
        shares = [weights_of(topic_prior, wins)[0] for wins in range(9)]
        assert np.all(np.diff(shares) > 0), shares
        assert abs(shares[4] - 0.5) < 1e-9  # four votes each way say nothing


@pytest.mark.parametrize(("prior", "tail"), [(2.0, 1.0), (16.0, 1.0), (0.5, math.inf)])
def test_fits_side_by_side_are_the_fits_made_one_by_one(prior: float, tail: float) -> None:
    """Every user is fitted under each community's prior in one stacked solve: each of those fits must be,
    to the last bit, the fit a call of its own makes (else a community's evidence would depend on the others)."""
    rng = np.random.default_rng(7)
    count, llms, users = 300, 5, 12
    comparisons = Comparisons(
        record=np.arange(count),
        first=rng.integers(0, llms, count),
        second=np.where(rng.random(count) < 0.5, llms, (rng.integers(1, llms, count))),
        target=rng.integers(0, 2, count).astype(float),
    )
    comparisons = comparisons.subset(comparisons.first != comparisons.second)
    groups = rng.integers(0, users, count)
    expected = [rng.normal(size=(len(comparisons.record), llms + 1)) * s for s in (0.1, 1.0, 3.0)]
    together = fit_side_by_side(groups, users, comparisons, expected, prior, tail)
    for scores, fit in zip(expected, together, strict=True):
        alone = fit_groups(groups, users, comparisons, scores, prior, tail, posterior=True)
        assert np.array_equal(fit.mean, alone.mean) and np.array_equal(fit.variance, alone.variance)
        assert np.array_equal(fit.evidence, alone.evidence)
