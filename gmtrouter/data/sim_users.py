"""Synthetic users: archetypes of taste, and individuals drawn around them.

A user is a weight vector over the response features (quality, cost, length, rare words; see
`sim_features`), a personal affinity for each LLM, and topic interests over the matrix's categories. The
archetype gives the centre of the weights; each user adds Gaussian variation, so two users of one archetype
agree in direction but not in degree, and a few cross over.

A user may also dislike a change of LLM within a conversation (`draw_switch_aversion`; off by default), and
users may come in taste communities (`sim_communities`; off by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmtrouter.utils.errors import GmtError


@dataclass(frozen=True)
class Archetype:
    """The centre of a group of users: weights in FEATURES order, and how strongly they favour one LLM."""

    name: str
    weights: tuple[float, float, float, float]  # quality, cost, length, rare
    loyalty: float = 0.0  # extra utility of the user's favourite LLM (drawn uniformly per user)
    description: str = ""
    task_loyalty: float = 0.0  # extra utility of the user's favourite LLM *for the query's task* (one per task)


ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in [
        Archetype("quality", (4.0, 0.0, 0.0, 0.0), 0.0, "wants the correct answer whatever it costs"),
        Archetype("budget", (1.0, -1.5, 0.0, 0.0), 0.0, "wants it cheap, accepts some wrong answers"),
        Archetype("concise", (1.5, 0.0, -1.5, -0.5), 0.0, "short answers in plain words"),
        Archetype("detail", (1.5, 0.0, 1.5, 0.5), 0.0, "long, detailed answers, technical vocabulary welcome"),
        Archetype("loyal", (1.0, 0.0, 0.0, 0.0), 2.5, "sticks to one favourite LLM"),
        Archetype("specialist", (1.0, 0.0, 0.0, 0.0), 0.0, "a favourite LLM for each task", task_loyalty=2.5),
        Archetype("task-critic", (1.5, 0.0, 0.0, 0.0), 0.0, "avoids one LLM for each task", task_loyalty=-2.5),
    ]
}
DEFAULT_ARCHETYPES = ("quality", "budget", "concise", "detail", "loyal")  # global taste: the default mix
TASK_ARCHETYPES = ("specialist", "task-critic")  # taste that depends on the query's task (matrix category)


@dataclass(frozen=True)
class Users:
    """N users as arrays; row n of each array is user n."""

    archetype: np.ndarray  # [N] index into the archetype list
    archetype_names: list[str]
    weights: np.ndarray  # [N, F]
    affinity: np.ndarray  # [N, M] personal utility offset per LLM
    interests: np.ndarray  # [N, C] probability of starting a conversation in each category
    task_affinity: np.ndarray | None = None  # [N, C, M] utility offset per task and LLM; None: no task taste
    switch_aversion: np.ndarray | None = None  # [N] utility lost by a change of LLM mid-conversation; None: off
    community: np.ndarray | None = None  # [N] the taste community of each user (`sim_communities`); None: none


def parse_archetypes(names: str | None) -> list[Archetype]:
    """The archetypes named in a comma-separated list (the five of global taste when `names` is empty)."""
    if not names:
        return [ARCHETYPES[name] for name in DEFAULT_ARCHETYPES]
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in ARCHETYPES]
    if unknown or not chosen:
        raise GmtError(f"unknown archetype(s) {', '.join(unknown) or repr(names)}; choose from {', '.join(ARCHETYPES)}")
    return [ARCHETYPES[name] for name in dict.fromkeys(chosen)]


def draw_users(
    n_users: int,
    n_llms: int,
    n_categories: int,
    archetypes: list[Archetype],
    rng: np.random.Generator,
    spread: float,
    affinity_sd: float,
    interest_concentration: float,
) -> Users:
    """Draw `n_users` users, the archetypes as evenly represented as `n_users` allows, in shuffled order.

    weights = archetype weights + spread * N(0, 1) per feature;
    affinity[llm] = affinity_sd * N(0, 1), plus the archetype's loyalty on one favourite LLM;
    interests ~ Dirichlet(interest_concentration) over the categories;
    task_affinity[c, llm] = the archetype's task loyalty on one favourite LLM per category c (drawn last, and
    only when some archetype has task taste, so the other draws stay as they were).
    """
    centre = np.asarray([a.weights for a in archetypes], dtype=float)  # [A, F]
    loyalty = np.asarray([a.loyalty for a in archetypes], dtype=float)
    kind = rng.permutation(np.resize(np.arange(len(archetypes)), n_users))
    weights = centre[kind] + spread * rng.standard_normal((n_users, centre.shape[1]))
    affinity = affinity_sd * rng.standard_normal((n_users, n_llms))
    favourite = rng.integers(0, n_llms, size=n_users)
    affinity[np.arange(n_users), favourite] += loyalty[kind]
    interests = rng.dirichlet(np.full(n_categories, interest_concentration), size=n_users)
    task_loyalty = np.asarray([a.task_loyalty for a in archetypes], dtype=float)
    task_affinity = None
    if task_loyalty.any():
        task_favourite = rng.integers(0, n_llms, size=(n_users, n_categories))
        task_affinity = np.zeros((n_users, n_categories, n_llms))
        users, tasks = np.meshgrid(np.arange(n_users), np.arange(n_categories), indexing="ij")
        task_affinity[users, tasks, task_favourite] = task_loyalty[kind][:, None]
    return Users(kind, [a.name for a in archetypes], weights, affinity, interests, task_affinity)


def draw_switch_aversion(n_users: int, mean: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """[N] each user's switching aversion: with probability `share` a Gamma(shape 2, scale mean / 2) draw
    (mean `mean`, rarely near 0, no sign flips), else exactly 0, so some users never mind a change of LLM."""
    averse = rng.random(n_users) < share
    strength = rng.gamma(2.0, mean / 2.0, size=n_users)
    return np.where(averse, strength, 0.0)
