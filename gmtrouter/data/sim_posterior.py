"""The community-posterior reference: how well a Bayes rule that knows the taste communities ranks a user's
responses once it has seen that user's first k ratings.

In a world of taste communities (`data simulate --communities C`, `sim_communities`) every record carries in
`meta.community_utility` each community's shared utility of the shown responses. The rule knows those, that
the communities are equally large, the choice temperature T, the tie model and the SD of the personal
affinity; it does not know the user's community nor their personal affinities. From the user's history it
computes the posterior over the C communities, exactly by enumeration:

    p(c | history) ∝ prod over the history of P(rating | c)
    P(first wins | c) = E[(1 - tie_prob * [|x| < tie_margin]) * sigmoid(x / T)],   x = d_c + e
    P(tie | c)        = tie_prob * P(|x| < tie_margin)

where d_c is community c's utility difference of the two shown responses and e ~ N(0, 2 * personal_sd^2)
the personal part of that difference (each record's likelihood is averaged over it on its own; the user's
personal affinities are the same at every record, which the rule leaves aside: with `--affinity-sd 0` the
posterior is exact). A later pair is scored by the posterior predictive margin

    sum_c p(c | history) * (P(first wins | c) - P(second wins | c)).

With no history the posterior is the prior and every user gets the population's scores; once the community
is certain, a pair is ordered as that community's utilities order it. The scored records' ratings are never
read. Records of two responses only (the simulator's default and the benchmark's).

The rule sees the realised answers through the communities' utilities, which a router scoring LLMs before an
answer exists cannot. The community-taste reference (`community_taste_scores`) is the same rule on each
community's utility of the shown LLMs at their mean features on the query's task (`meta.community_taste`);
what the realised answer adds is more Gaussian noise in its likelihood, of the spread it has in the records.
It is the bar for a router that knows each community's taste by LLM and task but not the answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit, softmax
from scipy.stats import norm

from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import COMMUNITY_KEY, COMMUNITY_TASTE_KEY, COMMUNITY_UTILITY_KEY, SimConfig
from gmtrouter.utils.errors import GmtError

_HERMITE = np.polynomial.hermite.hermgauss(48)  # E over the personal part: smooth integrand
_LEGENDRE = np.polynomial.legendre.leggauss(16)  # the integral over the tie window [-margin, margin]


@dataclass(frozen=True)
class CommunityModel:
    """What the rule knows of the world besides the communities' utilities in the records."""

    temperature: float
    tie_margin: float
    tie_prob: float
    personal_sd: float  # SD of a member's personal affinity per LLM

    @classmethod
    def of(cls, config: SimConfig) -> CommunityModel:
        return cls(config.temperature, config.tie_margin, config.tie_prob, config.affinity_sd)

    def outcomes(self, diff: np.ndarray) -> np.ndarray:
        """[..., 3] P(first wins), P(second wins), P(tie) of pairs whose community utility difference is `diff`."""
        t, margin, tie = self.temperature, self.tie_margin, self.tie_prob
        sd = math.sqrt(2.0) * self.personal_sd
        if sd == 0:
            window = (np.abs(diff) < margin).astype(float)
            kept = 1.0 - tie * window
            return np.stack([kept * expit(diff / t), kept * expit(-diff / t), tie * window], axis=-1)
        nodes, weights = _HERMITE
        x = diff[..., None] + math.sqrt(2.0) * sd * nodes
        first = (weights * expit(x / t)).sum(axis=-1) / math.sqrt(math.pi)
        inside = margin * _LEGENDRE[0]  # points of the window
        density = norm.pdf(inside, loc=diff[..., None], scale=sd) * margin * _LEGENDRE[1]
        in_window_first = (density * expit(inside / t)).sum(axis=-1)
        in_window_second = (density * expit(-inside / t)).sum(axis=-1)
        in_window = norm.cdf((margin - diff) / sd) - norm.cdf((-margin - diff) / sd)
        return np.stack([first - tie * in_window_first, 1.0 - first - tie * in_window_second, tie * in_window], axis=-1)

    def margin(self, diff: np.ndarray) -> np.ndarray:
        """P(first wins) - P(second wins): the predictive margin of one community."""
        p = self.outcomes(diff)
        return p[..., 0] - p[..., 1]


def community_differences(records: Sequence[Interaction], key: str = COMMUNITY_UTILITY_KEY) -> np.ndarray:
    """[N, C] each community's utility (`meta[key]`) of the first shown response minus the second's."""
    if not records:
        return np.zeros((0, 0))
    rows = []
    for record in records:
        shared = record.meta.get(key)
        if shared is None:
            raise GmtError(
                f"user {record.user}, conversation {record.conversation}, turn {record.turn}: no "
                f"meta.{key}; a community reference needs records simulated with --communities"
            )
        if len(record.responses) != 2:
            raise GmtError(
                f"user {record.user}, conversation {record.conversation}, turn {record.turn}: "
                f"{len(record.responses)} responses; the community-posterior reference scores records of two"
            )
        rows.append([first - second for first, second in shared])
    if len({len(row) for row in rows}) > 1:
        raise GmtError(f"the records disagree on the number of communities in meta.{key}")
    return np.asarray(rows, dtype=float)


def _outcome(record: Interaction) -> int:
    """0: the first response won, 1: the second, 2: a tie."""
    first, second = record.ratings
    return 0 if first > second else 1 if second > first else 2


def community_posteriors(
    history: Sequence[Interaction], model: CommunityModel, n_communities: int, key: str = COMMUNITY_UTILITY_KEY
) -> dict[str, np.ndarray]:
    """User -> [C] posterior over the communities given that user's records in `history` (the prior is uniform)."""
    if not history:
        return {}
    diff = community_differences(history, key)
    if diff.shape[1] != n_communities:
        raise GmtError(f"the history has {diff.shape[1]} communities, the records to score {n_communities}")
    outcome = np.asarray([_outcome(r) for r in history])
    likelihood = np.take_along_axis(model.outcomes(diff), outcome[:, None, None], axis=-1)[..., 0]  # [H, C]
    users = list(dict.fromkeys(r.user for r in history))
    index = {u: i for i, u in enumerate(users)}
    log_posterior = np.zeros((len(users), n_communities))
    np.add.at(log_posterior, np.asarray([index[r.user] for r in history]), np.log(np.maximum(likelihood, 1e-300)))
    posterior = softmax(log_posterior, axis=1)
    return {u: posterior[i] for i, u in enumerate(users)}


def _scores(
    scored: Sequence[Interaction], weights: np.ndarray, model: CommunityModel, key: str = COMMUNITY_UTILITY_KEY
) -> list[list[float]]:
    """Scores of each scored record from its [C] community weights: the predictive margin, split +/- half."""
    margin = (weights * model.margin(community_differences(scored, key))).sum(axis=1)
    return [[m / 2.0, -m / 2.0] for m in margin.tolist()]


def community_posterior_scores(
    history: Sequence[Interaction],
    scored: Sequence[Interaction],
    model: CommunityModel,
    key: str = COMMUNITY_UTILITY_KEY,
) -> list[list[float]]:
    """Scores of `scored` (two per record) by the posterior predictive given each user's records in `history`,
    the communities' utilities read from `meta[key]`.

    The score difference of a record is its predictive margin, so the metrics contract reads it directly.
    """
    if not scored:
        return []
    n_communities = community_differences(scored[:1], key).shape[1]
    posterior = community_posteriors(history, model, n_communities, key)
    prior = np.full(n_communities, 1.0 / n_communities)
    weights = np.asarray([posterior.get(r.user, prior) for r in scored])
    return _scores(scored, weights, model, key)


def taste_model(model: CommunityModel, records: Sequence[Interaction]) -> CommunityModel:
    """`model` for a rule that knows the communities' tastes by LLM and task, not the answers: what an answer
    adds to its LLM's mean on the task (realised quality, cost, length) is more noise, of the variance it has
    over `records` (pooled over the communities), added to the personal part's."""
    residual = community_differences(records) - community_differences(records, COMMUNITY_TASTE_KEY)
    return replace(model, personal_sd=math.sqrt(model.personal_sd**2 + float(residual.var()) / 2.0))


def community_taste_scores(
    history: Sequence[Interaction], scored: Sequence[Interaction], model: CommunityModel
) -> list[list[float]]:
    """Scores of `scored` by the community-taste reference: the community posterior computed, and the pairs
    scored, on each community's utility of the shown LLMs on the query's task (`meta.community_taste`). The
    answers' spread is read from `scored`, the same records at every k, so the rule is the same at every k."""
    if not scored:
        return []
    return community_posterior_scores(history, scored, taste_model(model, scored), COMMUNITY_TASTE_KEY)


def known_community_scores(scored: Sequence[Interaction], model: CommunityModel) -> list[list[float]]:
    """Scores by the user's own community (`meta.community`, the truth): the limit of many shots, personal
    affinities aside."""
    if not scored:
        return []
    n_communities = community_differences(scored[:1]).shape[1]
    weights = np.eye(n_communities)[[int(r.meta[COMMUNITY_KEY]) for r in scored]]
    return _scores(scored, weights, model)


def true_community_mass(posteriors: Mapping[str, np.ndarray], communities: Mapping[str, int]) -> float:
    """Mean posterior probability of each user's own community (a diagnostic of how fast it is found)."""
    return float(np.mean([posteriors[u][communities[u]] for u in posteriors]))
