"""Taste communities: a user's deviation is drawn from one of a few shared tastes, so a user's first votes say
which community they are in, and so what they will think of the LLMs and topics they have not rated yet.

The prior of a user's deviations (overall, δ_u, and on each topic, δ_{u,t}) is a mixture: community c, with
weight π_c, centres them on its means μ_c (and μ_{c,t}) with the user prior's spread. For every user and
community the deviations are fitted under that community's prior (a MAP fit from the community's means), and the
Laplace evidence of the user's comparisons under it gives the posterior weight of the community, r_{u,c}. The
user's deviation is the posterior mean, Σ_c r_{u,c} (μ_c + δ_{u,c}), its variance the mixture's. A user with no
votes sits at the weighted mean of the communities (the population: the means are centred), one with a few
leans on the communities their votes point to, one with many on their own votes: the gate between the pooled
and the personal part is Bayes' rule, by how much the user has shown.

The communities are learnt by EM from the training users (`learn`): started from k-means of the users' own
deviations, then each community's means are the responsibility-weighted posterior means of its users'.
Cross-validation chooses how many (one: no communities) on folds of whole users as well as of records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.cluster import KMeans

from gmtrouter.model.bradley_terry import log_loss
from gmtrouter.model.comparisons import Comparisons, with_average
from gmtrouter.model.deviations import GroupFit, fit_side_by_side

EM_ITERATIONS = 8
MIN_RECORDS = 3  # users with fewer records do not start the communities' k-means
MIN_MEMBERS = 5  # a community is learnt from at least this many such users


@dataclass
class Communities:
    """The shared tastes: weights [C], mean deviations [C, L] and on every topic [C, topics, L]."""

    weights: np.ndarray
    user: np.ndarray
    topic: np.ndarray

    @property
    def count(self) -> int:
        return len(self.weights)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "user": self.user, "topic": self.topic}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Communities:
        return cls(np.asarray(arrays["weights"]), np.asarray(arrays["user"]), np.asarray(arrays["topic"]))

    def widened(self, count: int) -> Communities:
        """The same communities over `count` more LLMs, which no community has a taste for yet (0)."""
        user = np.pad(self.user, ((0, 0), (0, count)))
        topic = np.pad(self.topic, ((0, 0), (0, 0), (0, count)))
        return Communities(self.weights, user, topic)

    def centred(self) -> Communities:
        """The same communities with their weighted mean taste taken off: a user with no votes then deviates
        from the population by nothing, and the population's strengths keep what everybody shares."""
        mean_user = self.weights @ self.user
        mean_topic = np.tensordot(self.weights, self.topic, axes=1)
        return Communities(self.weights, self.user - mean_user, self.topic - mean_topic)


@dataclass
class Membership:
    """A mixture fit of users' deviations: overall and on topics (means, variances), each user's posterior
    community weights [users, C], and the prior mean each user's deviation is pulled toward [users, L]."""

    user: GroupFit
    topic: GroupFit
    weights: np.ndarray
    anchor: np.ndarray


def fit_members(
    communities: Communities,
    rec_user: np.ndarray,
    num_users: int,
    record_topic: np.ndarray,
    topics: int,
    comparisons: Comparisons,
    expected: np.ndarray,
    user_prior: float,
    user_tail: float,
    topic_prior: float,
) -> Membership:
    """The users' deviations overall and on topics under the communities' mixture prior, from their
    `comparisons` against what is `expected` of them [C, L + 1] (everything the model says before the user).

    Users without comparisons get the communities' weighted mean (0 when centred) and its spread.
    """
    comparison_user = rec_user[comparisons.record]
    comparison_topic = record_topic[comparisons.record]
    user_topic = rec_user * topics + record_topic
    # the community's whole taste, overall and on the comparison's topic, is what the user deviates from
    shifted = [
        expected + with_average(communities.user[c][None] + communities.topic[c][comparison_topic])
        for c in range(communities.count)
    ]
    fits_user = fit_side_by_side(rec_user, num_users, comparisons, shifted, user_prior, user_tail)
    shifted = [s + with_average(user.mean[comparison_user]) for s, user in zip(shifted, fits_user, strict=True)]
    fits_topic = fit_side_by_side(user_topic, num_users * topics, comparisons, shifted, topic_prior)
    evidence = []
    for user, topic, scores in zip(fits_user, fits_topic, shifted, strict=True):
        # Both fits' evidence explains the same comparisons: the topic fit counts only what it adds to the user
        # fit's (its Occam factor and its gain in likelihood), so no vote counts twice toward a community.
        explained = user.evidence
        if np.isfinite(topic_prior):
            before = log_likelihood(user_topic[comparisons.record], num_users * topics, comparisons, scores)
            explained = explained + (topic.evidence - before).reshape(num_users, topics).sum(axis=1)
        evidence.append(explained)
    log_weights = np.log(communities.weights)[None] + np.stack(evidence, axis=1)
    weights = softmax(log_weights, axis=1)  # [users, C]
    user_means = np.stack([communities.user[c] + fits_user[c].mean for c in range(communities.count)])
    topic_means = np.stack(
        [
            (communities.topic[c][None] + fits_topic[c].mean.reshape(num_users, topics, -1))
            for c in range(communities.count)
        ]
    )  # [C, users, topics, L]
    user = _mixture(weights, user_means, np.stack([f.variance for f in fits_user]))
    topic_spread = np.stack([f.variance.reshape(num_users, topics, -1) for f in fits_topic])
    topic = _mixture(weights, topic_means, topic_spread)
    topic = GroupFit(topic.mean.reshape(num_users * topics, -1), topic.variance.reshape(num_users * topics, -1))
    anchor = weights @ communities.user
    user.evidence = logsumexp(log_weights, axis=1)
    return Membership(user, topic, weights, anchor)


def log_likelihood(groups: np.ndarray, n_groups: int, comparisons: Comparisons, scores: np.ndarray) -> np.ndarray:
    """[n_groups] the log-likelihood of each group's comparisons (`groups` [C]) under `scores` [C, L + 1]."""
    loss = log_loss(comparisons.target, comparisons.margin(scores))
    return -np.bincount(groups, weights=loss, minlength=n_groups)


def _mixture(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> GroupFit:
    """The posterior mean and variance of a mixture over communities: `weights` [users, C], `means` and
    `variances` [C, users, ...]."""
    shape = (weights.shape[1], weights.shape[0]) + (1,) * (means.ndim - 2)
    w = weights.T.reshape(shape)
    mean = (w * means).sum(axis=0)
    second = (w * (variances + means**2)).sum(axis=0)
    return GroupFit(mean, np.maximum(second - mean**2, 0.0))


def learn(
    count: int,
    refit: Callable[[Communities | None], tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]],
    seed: int,
    iterations: int = EM_ITERATIONS,
) -> Communities | None:
    """`count` communities learnt by EM (None for one: no communities). `refit(communities)` fits every user's
    deviations under a prior (None: the plain one) and returns (overall [users, L], on topics [users, topics, L],
    community weights [users, C] or None, records per user [users])."""
    if count <= 1:
        return None
    user, topic, _, records = refit(None)
    rich = records >= MIN_RECORDS
    if rich.sum() < MIN_MEMBERS * count:
        return None
    features = np.concatenate([user, topic.reshape(len(user), -1)], axis=1)
    km = KMeans(n_clusters=count, n_init=4, random_state=seed).fit(features[rich])
    weights = np.clip(np.bincount(km.labels_, minlength=count) / rich.sum(), 1e-3, None)
    weights = weights / weights.sum()
    topics, llms = topic.shape[1], topic.shape[2]
    centres = km.cluster_centers_
    communities = Communities(weights, centres[:, :llms], centres[:, llms:].reshape(count, topics, llms)).centred()
    for _ in range(iterations):
        user, topic, membership, _ = refit(communities)
        resp = membership[rich]
        mass = resp.sum(axis=0).clip(1e-9)
        communities = Communities(
            np.clip(mass / mass.sum(), 1e-3, None) / np.clip(mass / mass.sum(), 1e-3, None).sum(),
            (resp.T @ user[rich]) / mass[:, None],
            np.tensordot(resp.T, topic[rich], axes=1) / mass[:, None, None],
        ).centred()
    return communities
