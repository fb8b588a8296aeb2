"""Synthetic multi-turn users over a query x LLM matrix: the records behind `gmtrouter data simulate`.

Benchmarks say how good each LLM is on each query but have no users. This module invents users with
different tastes (see `sim_users`), lets each hold conversations whose queries stay on a topic (see
`sim_topics`), shows K candidate LLMs' answers at each turn and rates them by a noisy choice on the user's
utility. docs/simulator.md gives every formula and default. Everything is drawn from one seed: the same
matrix, settings and seed give the same file, byte for byte.

utility(user, query, llm) = w_quality * perceived_quality + w_cost * cost + w_length * length
                            + w_rare * rare + affinity[llm] + task_affinity[task of the query, llm]
                            - switch_aversion[user] * [turn >= 2 and llm != the previous turn's LLM]
perceived_quality = realism * score + (1 - realism) * the LLM's mean score on the query's category

With taste communities (`sim_communities`), the weights, affinities and task affinities are the user's
community's, plus a personal affinity per LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gmtrouter.data.matrix import MatrixRow
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.data.sim_communities import Communities, community_members, draw_communities
from gmtrouter.data.sim_config import (
    COMMUNITY_KEY,
    COMMUNITY_TASTE_KEY,
    COMMUNITY_UTILITY_KEY,
    UTILITY_KEY,
    SimConfig,
)
from gmtrouter.data.sim_features import FEATURES, FeatureTables, build_features
from gmtrouter.data.sim_topics import nearest_neighbours
from gmtrouter.data.sim_users import Users, draw_switch_aversion, draw_users, parse_archetypes
from gmtrouter.utils.errors import GmtError


@dataclass(frozen=True)
class Plan:
    """What happens, as arrays over the N = users x records_per_user records, user-major and chronological."""

    user: np.ndarray  # [N]
    conversation: np.ndarray  # [N] per-user conversation number, from 1
    turn: np.ndarray  # [N] from 1
    row: np.ndarray  # [N] index of the matrix row asked
    llm: np.ndarray  # [N, K] candidate LLMs in the order shown
    utility: np.ndarray  # [N, K]
    rating: np.ndarray  # [N, K]
    community_utility: np.ndarray | None = None  # [N, C, K] each community's utility of the shown responses
    community_taste: np.ndarray | None = None  # [N, C, K] the same at the LLMs' mean features on the query's task


def _turn_numbers(
    n_users: int, per_user: int, max_turns: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """[U, P] (conversation, turn) of every record, both from 1: conversation lengths are uniform on
    1..max_turns, and the user's last conversation is cut where the user's records run out."""
    lengths = rng.integers(1, max_turns + 1, size=(n_users, per_user))  # enough: each length is >= 1
    conversation = np.empty((n_users, per_user), dtype=int)
    turn = np.empty((n_users, per_user), dtype=int)
    for u in range(n_users):
        ids = np.repeat(np.arange(per_user), lengths[u])[:per_user]
        starts = np.r_[0, np.cumsum(lengths[u])][ids]
        conversation[u], turn[u] = ids + 1, np.arange(per_user) - starts + 1
    return conversation, turn


def _walk(
    turn: np.ndarray,
    users: Users,
    categories: np.ndarray,
    neighbours: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """[U, P] row of every record: a conversation starts in a category drawn from the user's interests
    (a uniform row of it); each later turn moves to one of the previous query's nearest neighbours, never
    straight back to the query two turns before when another neighbour exists."""
    n_users, per_user = turn.shape
    n_cat = users.interests.shape[1]
    members = [np.flatnonzero(categories == c) for c in range(n_cat)]
    size = np.asarray([len(m) for m in members])
    padded = np.zeros((n_cat, max(size.max(), 1)), dtype=int)
    for c, m in enumerate(members):
        padded[c, : len(m)] = m
    cum = np.cumsum(users.interests, axis=1)
    u_cat, u_row = rng.random((n_users, per_user)), rng.random((n_users, per_user))
    pick = rng.integers(0, neighbours.shape[1], size=(n_users, per_user))
    rows = np.zeros((n_users, per_user), dtype=int)
    for p in range(per_user):
        cat = np.minimum((cum < u_cat[:, p, None]).sum(axis=1), n_cat - 1)
        fresh = padded[cat, (u_row[:, p] * size[cat]).astype(int)]
        if p == 0:
            rows[:, 0] = fresh
            continue
        step = neighbours[rows[:, p - 1], pick[:, p]]
        if p >= 2 and neighbours.shape[1] > 1:
            back = (step == rows[:, p - 2]) & (turn[:, p - 1] > 1)
            step = np.where(back, neighbours[rows[:, p - 1], (pick[:, p] + 1) % neighbours.shape[1]], step)
        rows[:, p] = np.where(turn[:, p] == 1, fresh, step)
    return rows


@dataclass(frozen=True)
class ChoiceNoise:
    """The choice model's random draws for every record, drawn at once and always in this order, so that
    ratings drawn turn by turn (with a switching aversion) use the same draws as ratings drawn all at once."""

    gumbel: np.ndarray  # [N, K]
    tie: np.ndarray  # [N] uniform

    @staticmethod
    def draw(n: int, k: int, rng: np.random.Generator) -> ChoiceNoise:
        return ChoiceNoise(rng.gumbel(size=(n, k)), rng.random(n))

    def __getitem__(self, at: np.ndarray) -> ChoiceNoise:
        return ChoiceNoise(self.gumbel[at], self.tie[at])


def _choose(utility: np.ndarray, config: SimConfig, noise: ChoiceNoise) -> np.ndarray:
    """Ratings [N, K] by a Plackett-Luce draw on exp(utility / temperature): the Gumbel-max trick ranks
    utility / T + Gumbel noise. The best gets K-1, the worst 0. For K = 2 this is the Bradley-Terry
    (logistic) choice P(a beats b) = sigmoid((u_a - u_b) / T); a pair whose utilities differ by less than
    the tie margin is a tie (0.5 each) with probability tie_prob."""
    n, k = utility.shape
    noisy = utility / config.temperature + noise.gumbel
    order = np.argsort(-noisy, axis=1, kind="stable")
    rating = np.empty((n, k))
    np.put_along_axis(rating, order, np.arange(k - 1, -1, -1, dtype=float)[None, :], axis=1)
    tie_draw = noise.tie
    if k == 2:
        tie = (np.abs(utility[:, 0] - utility[:, 1]) < config.tie_margin) & (tie_draw < config.tie_prob)
        rating[tie] = 0.5
    return rating


def plan(tables: FeatureTables, queries: Sequence[str], config: SimConfig) -> tuple[Plan, Users]:
    """Draw users, their conversations, candidates and ratings, all as arrays (no records yet).

    Each part has its own random stream (spawned from the seed), so changing, say, the temperature changes
    the ratings but not who the users are or what they asked."""
    k, n_llms = config.candidates, len(tables.llms)
    eligible = np.flatnonzero(tables.available.sum(axis=1) >= k)
    if k > n_llms or len(eligible) == 0:
        raise GmtError(f"no matrix row has results of {k} LLMs; lower --candidates")
    # spawn(7) begins with the same five children as spawn(5): the switch and community streams leave the
    # others as they were.
    seeds = np.random.SeedSequence(config.seed).spawn(7)
    users_rng, turns_rng, walk_rng, llm_rng, choice_rng, switch_rng, community_rng = (
        np.random.default_rng(s) for s in seeds
    )

    _, categories = np.unique(tables.categories[eligible], return_inverse=True)
    n_tasks = int(categories.max()) + 1
    users = draw_users(
        config.users,
        n_llms,
        n_tasks,
        parse_archetypes(config.archetypes),
        users_rng,
        config.spread,
        config.affinity_sd,
        config.interest_concentration,
    )
    communities = None
    if config.communities:
        communities = draw_communities(
            config.communities,
            config.users,
            n_llms,
            n_tasks,
            parse_archetypes(config.archetypes),
            community_rng,
            config.spread,
            config.community_sd,
            config.community_task_loyalty,
        )
        users = community_members(users, communities, config.affinity_sd, community_rng)
    conversation, turn = _turn_numbers(config.users, config.records_per_user, config.max_turns, turns_rng)
    neighbours = nearest_neighbours([queries[i] for i in eligible], categories, config.neighbours)
    local = _walk(turn, users, categories, neighbours, walk_rng).ravel()
    row = eligible[local]
    user = np.repeat(np.arange(config.users), config.records_per_user)

    # K distinct candidates among the LLMs that answered the row, in a uniformly random order: the first K
    # LLMs by a uniform key, the LLMs without an answer keyed last.
    keys = llm_rng.random((len(row), n_llms))
    keys[~tables.available[row]] = np.inf
    noise = ChoiceNoise.draw(len(row), k, choice_rng)
    task = categories[local]
    if config.switch_aversion > 0:
        strength = draw_switch_aversion(config.users, config.switch_aversion, config.switch_share, switch_rng)
        users = replace(users, switch_aversion=strength)
        position = llm_rng.integers(0, k, size=len(row))  # where the previous turn's LLM is shown
        known = Records(user, turn.ravel(), row, task)
        llm, utility, rating = _turn_by_turn(tables, users, known, keys, position, noise, config)
    else:
        llm = np.argsort(keys, axis=1, kind="stable")[:, :k]
        utility = utilities(tables, users, user, row, llm, config.realism, task)
        rating = _choose(utility, config, noise)
    shared = taste = None
    if communities is not None:
        shared = _community_utilities(tables, communities, users, row, llm, config, task)
        taste = _community_utilities(tables.by_task(), communities, users, row, llm, config, task)
    return Plan(user, conversation.ravel(), turn.ravel(), row, llm, utility, rating, shared, taste), users


def _community_utilities(
    tables: FeatureTables,
    communities: Communities,
    users: Users,
    row: np.ndarray,
    llm: np.ndarray,
    config: SimConfig,
    task: np.ndarray,
) -> np.ndarray:
    """[N, C, K] the utility of every shown response for each community's shared taste (no personal part)."""
    shared = communities.as_users(users)
    every = [np.full(len(row), c) for c in range(len(communities.weights))]
    return np.stack([utilities(tables, shared, c, row, llm, config.realism, task) for c in every], axis=1)


@dataclass(frozen=True)
class Records:
    """What is known of the N records before any candidate is shown (user-major, chronological)."""

    user: np.ndarray  # [N]
    turn: np.ndarray  # [N]
    row: np.ndarray  # [N] matrix row
    task: np.ndarray  # [N] category index of the row

    def __getitem__(self, at: np.ndarray) -> Records:
        return Records(self.user[at], self.turn[at], self.row[at], self.task[at])


def _turn_by_turn(
    tables: FeatureTables,
    users: Users,
    records: Records,
    keys: np.ndarray,
    position: np.ndarray,
    noise: ChoiceNoise,
    config: SimConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates, utilities and ratings [N, K] of users with a switching aversion (`users.switch_aversion`), one record
    position at a time over all users: a turn's candidates and utilities depend on the LLM the conversation
    went on with, which the previous turn's ratings decide."""
    n, k, per_user = len(records.row), config.candidates, config.records_per_user
    llm, utility, rating = np.empty((n, k), dtype=int), np.empty((n, k)), np.empty((n, k))
    previous = np.full(config.users, -1)  # -1: a conversation's first turn, nothing to switch from
    for p in range(per_user):
        at = np.arange(config.users) * per_user + p
        now = records[at]
        if p > 0:
            before = at - 1  # continued_llm: the previous record's top-rated LLM, the first of equals as shown
            previous = np.where(now.turn >= 2, llm[before, np.argmax(rating[before], axis=1)], -1)
        shown = (previous >= 0) & tables.available[now.row, np.maximum(previous, 0)]  # the row has its answer
        llm[at] = _candidates(keys[at], previous, shown, position[at], k)
        switch = (previous[:, None] >= 0) & (llm[at] != previous[:, None])
        drop = users.switch_aversion[now.user][:, None] * switch
        utility[at] = utilities(tables, users, now.user, now.row, llm[at], config.realism, now.task) - drop
        rating[at] = _choose(utility[at], config, noise[at])
    return llm, utility, rating


def _candidates(keys: np.ndarray, previous: np.ndarray, shown: np.ndarray, position: np.ndarray, k: int) -> np.ndarray:
    """[n, K] candidates by the keys as usual; where `shown`, the previous LLM takes the smallest key (it is
    always drawn) and is then moved to `position`, so its place says nothing and the other K-1 are drawn as
    usual among the remaining LLMs."""
    keys = keys.copy()
    keys[np.flatnonzero(shown), previous[shown]] = -np.inf
    first = np.argsort(keys, axis=1, kind="stable")[:, :k]  # the previous LLM in column 0 where shown
    column, at = np.arange(k)[None, :], position[:, None]
    source = np.where(column == at, 0, np.where(column < at, column + 1, column))
    return np.where(shown[:, None], np.take_along_axis(first, source, axis=1), first)


def utilities(
    tables: FeatureTables,
    users: Users,
    user: np.ndarray,
    row: np.ndarray,
    llm: np.ndarray,
    realism: float,
    task: np.ndarray | None = None,
) -> np.ndarray:
    """[N, K] utility of each shown response (formula in the module docstring); `task`: [N] category index."""
    rows = row[:, None]
    features = tables.values[:, rows, llm].copy()  # [F, N, K]
    q = FEATURES.index("quality")
    features[q] = realism * features[q] + (1 - realism) * tables.expected_quality[rows, llm]
    weights = users.weights[user]  # [N, F]
    utility = np.einsum("nf,fnk->nk", weights, features) + users.affinity[user[:, None], llm]
    if users.task_affinity is not None and task is not None:
        utility += users.task_affinity[user[:, None], task[:, None], llm]
    return utility


@dataclass(frozen=True)
class Simulation:
    """The records, and what the simulator made of the matrix (for the command's report)."""

    records: list[Interaction]
    llms: list[str]
    features: dict[str, str]  # feature -> how it was computed, or why it was dropped
    eligible_rows: int


def _ids(prefix: str, count: int) -> list[str]:
    width = max(4 if prefix == "sim_" else 3, len(str(count)))
    return [f"{prefix}{n:0{width}d}" for n in range(count)]


def _records(rows: Sequence[MatrixRow], tables: FeatureTables, result: Plan, users: Users) -> list[Interaction]:
    """Canonical records, responses in the order shown, with the truth for analysis in `meta`."""
    names = _ids("sim_", len(users.archetype))
    conversations = _ids("c", int(result.conversation.max()) + 1)
    records = []
    for n in range(len(result.row)):
        u, source = int(result.user[n]), rows[int(result.row[n])]
        responses = []
        for j, rating in zip(result.llm[n], result.rating[n], strict=True):
            name = tables.llms[int(j)]
            cell = source.responses[name]
            responses.append(
                Response(llm=name, rating=float(rating), text=cell.text, cost=cell.cost, tokens=cell.tokens)
            )
        meta: dict[str, object] = {"source": str(source.meta.get("source", "matrix"))}
        if "category" in source.meta:
            meta["category"] = source.meta["category"]
        meta["archetype"] = users.archetype_names[int(users.archetype[u])]
        if users.community is not None:
            meta[COMMUNITY_KEY] = int(users.community[u])
        if users.switch_aversion is not None:
            meta["switch_aversion"] = round(float(users.switch_aversion[u]), 4)
        meta[UTILITY_KEY] = [round(float(x), 4) for x in result.utility[n]]
        if result.community_utility is not None:
            meta[COMMUNITY_UTILITY_KEY] = [[round(float(x), 4) for x in c] for c in result.community_utility[n]]
        if result.community_taste is not None:
            meta[COMMUNITY_TASTE_KEY] = [[round(float(x), 4) for x in c] for c in result.community_taste[n]]
        meta["matrix_id"] = source.id
        records.append(
            Interaction(
                user=names[u],
                conversation=f"{names[u]}/{conversations[int(result.conversation[n])]}",
                turn=int(result.turn[n]),
                query=source.query,
                responses=responses,
                meta=meta,
            )
        )
    return records


def simulate(rows: Sequence[MatrixRow], config: SimConfig) -> Simulation:
    """Records of `config.users` synthetic users over the matrix `rows`, user by user, each chronological."""
    config.check()
    config.check_matrix(rows)
    tables = build_features(rows)
    result, users = plan(tables, [row.query for row in rows], config)
    eligible = int((tables.available.sum(axis=1) >= config.candidates).sum())
    return Simulation(_records(rows, tables, result, users), tables.llms, tables.used, eligible)
