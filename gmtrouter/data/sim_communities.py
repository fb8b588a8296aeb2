"""Taste communities: groups of synthetic users who share a taste over LLMs (`data simulate --communities C`).

Real populations have communities (people who code, people who write, people on a budget): a new user's
first ratings say which one they belong to, and so what they will think of the LLMs they have not compared
yet. A community is an archetype made concrete once for all its members: one weight vector over the response
features, one affinity per LLM and one favourite LLM per task (the matrix row's category). Each member adds
a small personal affinity per LLM and keeps topic interests of their own. docs/simulator.md has the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gmtrouter.data.sim_users import Archetype, Users


@dataclass(frozen=True)
class Communities:
    """C communities as arrays; row c of each array is community c."""

    archetype: np.ndarray  # [C] index into the archetype list
    weights: np.ndarray  # [C, F] the members' weights over the response features
    affinity: np.ndarray  # [C, M] utility offset per LLM (the archetype's loyalty included)
    task_affinity: np.ndarray  # [C, T, M] utility offset per task and LLM
    member: np.ndarray  # [N] the community of each user

    def as_users(self, like: Users) -> Users:
        """The communities as if each were one user with no personal part: the taste every member shares."""
        return replace(
            like,
            archetype=self.archetype,
            weights=self.weights,
            affinity=self.affinity,
            task_affinity=self.task_affinity,
            community=None,
        )


def draw_communities(
    n_communities: int,
    n_users: int,
    n_llms: int,
    n_tasks: int,
    archetypes: list[Archetype],
    rng: np.random.Generator,
    spread: float,
    community_sd: float,
    task_loyalty: float,
) -> Communities:
    """Draw the communities and who belongs to which, all from `rng` (the simulator's community stream).

    archetype: distinct ones while there are enough (else as evenly as C allows), in shuffled order;
    weights = archetype weights + spread * N(0, 1) per feature, once per community;
    affinity[llm] = community_sd * N(0, 1), plus the archetype's loyalty on one favourite LLM;
    task_affinity[task, llm] = task_loyalty on one favourite LLM per task, plus the archetype's task loyalty
    (specialist, task-critic) on another draw of one LLM per task;
    members: user n joins community n mod C of a shuffled order, so the communities are as even as N allows.
    """
    centre = np.asarray([a.weights for a in archetypes], dtype=float)
    kind = rng.permutation(np.resize(np.arange(len(archetypes)), max(len(archetypes), n_communities)))[:n_communities]
    weights = centre[kind] + spread * rng.standard_normal((n_communities, centre.shape[1]))
    affinity = community_sd * rng.standard_normal((n_communities, n_llms))
    loyalty = np.asarray([a.loyalty for a in archetypes], dtype=float)[kind]
    affinity[np.arange(n_communities), rng.integers(0, n_llms, size=n_communities)] += loyalty
    communities, tasks = np.meshgrid(np.arange(n_communities), np.arange(n_tasks), indexing="ij")
    task_affinity = np.zeros((n_communities, n_tasks, n_llms))
    task_affinity[communities, tasks, rng.integers(0, n_llms, size=(n_communities, n_tasks))] += task_loyalty
    archetype_task_loyalty = np.asarray([a.task_loyalty for a in archetypes], dtype=float)[kind]
    task_affinity[communities, tasks, rng.integers(0, n_llms, size=(n_communities, n_tasks))] += archetype_task_loyalty[
        :, None
    ]
    member = rng.permutation(np.resize(np.arange(n_communities), n_users))
    return Communities(kind, weights, affinity, task_affinity, member)


def community_members(users: Users, communities: Communities, personal_sd: float, rng: np.random.Generator) -> Users:
    """The users as members of their communities: the community's weights, affinities and task favourites,
    plus a personal affinity personal_sd * N(0, 1) per LLM; their topic interests stay their own."""
    member = communities.member
    personal = personal_sd * rng.standard_normal(users.affinity.shape)
    return replace(
        users,
        archetype=communities.archetype[member],
        weights=communities.weights[member],
        affinity=communities.affinity[member] + personal,
        task_affinity=communities.task_affinity[member],
        community=member,
    )
