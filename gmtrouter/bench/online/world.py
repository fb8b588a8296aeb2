"""The online world: users of the simulator's population ask one query a round; the truth behind every answer.

Users are drawn exactly as `gmtrouter data simulate` draws them (`data.sim_users`: an archetype's weights over
the response features plus personal variation, a personal affinity per LLM, topic interests), over the features
of a real query x LLM matrix (`data.sim_features`), so they share tastes (the population's and their archetype's)
and hold personal ones. Each round one user (uniformly, or by activity) asks one query: a category drawn from
their interests, a matrix row drawn uniformly within it. Every LLM's utility for the round is the simulator's
(`data.simulate.utilities`).

Feedback on the one answer shown: a thumb up with probability sigmoid((u - baseline_user) / T), where the
baseline is the utility the user expects from an LLM picked at random for a query of their own mix of topics (so
a random route gets about half thumbs up) and T the simulator's choice temperature; or, as the second setting, a
rating sigmoid((u - baseline_user) / T + e) with e ~ N(0, rating_noise^2). Both are drawn once per round and LLM,
so every policy meets the same users, queries and feedback draws (a paired comparison).

The oracle's knowledge, `expected`: the user's expected utility of each LLM for the round's task
(`meta.category`): the mean of the utilities over the task's queries. It knows the user's taste and the task,
not whether this particular answer is right.

Two scenarios change the world at `change_at`. A new LLM joins: a variant of the matrix LLM of median population
utility (the lower of two middle ones), with its answers and every user's affinity for it, that the users of one
archetype like `newcomer_boost` more and every other user `newcomer_penalty` less (a model tuned for one group).
Or the best LLM of the rounds before degrades: its quality, realised and expected, is scaled by 1 - degradation
(with the default 1, its answers are never right any more, as after a broken release).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gmtrouter.data.matrix import MatrixRow
from gmtrouter.data.sim_config import SimConfig
from gmtrouter.data.sim_features import FEATURES, FeatureTables
from gmtrouter.data.sim_users import Users, draw_users, parse_archetypes
from gmtrouter.data.simulate import utilities
from gmtrouter.utils.errors import GmtError

ACTIVITY = ("uniform", "skewed")
NEWCOMER = "new-llm"
_SIM = SimConfig()


@dataclass(frozen=True)
class WorldConfig:
    """The settings of a world; docs/online.md says why each default is what it is."""

    users: int = 50
    rounds: int = 6000
    activity: str = "uniform"  # "skewed": each user's share of the rounds is an exponential draw
    temperature: float = _SIM.temperature  # T of the thumb, the simulator's choice temperature
    rating_noise: float = 1.0  # SD of the logit noise of a rating
    realism: float = _SIM.realism
    spread: float = _SIM.spread
    affinity_sd: float = _SIM.affinity_sd
    interest_concentration: float = _SIM.interest_concentration
    archetypes: str | None = None  # the simulator's five of global taste
    change_at: int | None = None  # round of the new LLM or the degradation; None: half way
    newcomer_boost: float = 3.0  # utility the favoured archetype's users add to the new LLM (over its base)
    newcomer_penalty: float = 0.5  # utility every other user takes off it (one choice temperature)
    degradation: float = 1.0  # share of the degraded LLM's quality lost: all of it, as after a broken release

    @property
    def change_round(self) -> int:
        return self.rounds // 2 if self.change_at is None else self.change_at

    def check(self) -> None:
        """Refuse settings that cannot make a world, naming the option to fix."""
        if self.users < 1:
            raise GmtError(f"--users must be at least 1, got {self.users}")
        if self.rounds < 2:
            raise GmtError(f"--rounds must be at least 2, got {self.rounds}")
        if self.activity not in ACTIVITY:
            raise GmtError(f"unknown activity '{self.activity}'; choose from {', '.join(ACTIVITY)}")
        if not 0 < self.change_round < self.rounds:
            raise GmtError(f"the change round must be inside the run (1..{self.rounds - 1}), got {self.change_round}")
        parse_archetypes(self.archetypes)


@dataclass(frozen=True)
class Stream:
    """What a policy may see: who asks what in each round, and which LLMs are candidates."""

    llms: list[str]  # [M]; a new LLM last
    user_names: list[str]  # [N]
    queries: list[str]  # [R] the matrix rows' query texts
    user: np.ndarray  # [T] user index of each round
    row: np.ndarray  # [T] matrix row asked
    active: np.ndarray  # [T, M] bool: the LLM is a candidate in the round

    @property
    def rounds(self) -> int:
        return len(self.user)

    def candidates(self, t: int) -> np.ndarray:
        return np.flatnonzero(self.active[t])


@dataclass(frozen=True)
class Truth:
    """What only the simulator knows: every LLM's utility and feedback in every round, the oracle's view."""

    utility: np.ndarray  # [T, M] realised utility of each LLM's answer to the round's query
    expected: np.ndarray  # [T, M] the user's expected utility of the LLM for the round's task
    baseline: np.ndarray  # [N] utility of an LLM picked at random, for the user's mix of topics
    thumbs: np.ndarray  # [T, M] 1.0 up, 0.0 down
    ratings: np.ndarray  # [T, M] in (0, 1)

    def feedback(self, kind: str) -> np.ndarray:
        """[T, M] the feedback each answer would get: "thumbs" or "rating"."""
        return self.thumbs if kind == "thumbs" else self.ratings


@dataclass(frozen=True)
class World:
    """One seed's world of one scenario."""

    stream: Stream
    truth: Truth
    archetypes: list[str]  # [N] each user's archetype
    change_at: int | None  # round of the scenario's change (None: no change)
    newcomer: int | None  # index of the new LLM
    degraded: int | None  # index of the LLM that degrades
    favoured: str | None  # the archetype that likes the new LLM


def task_means(tables: FeatureTables, realism: float) -> np.ndarray:
    """[F, C, M] each feature's mean over the available cells of each category's rows, quality as perceived."""
    q = FEATURES.index("quality")
    features = tables.values.copy()
    features[q] = realism * features[q] + (1 - realism) * tables.expected_quality
    onehot = np.eye(int(tables.categories.max()) + 1)[tables.categories]  # [R, C]
    available = tables.available.astype(float)
    sums = np.einsum("frm,rc->fcm", features * available[None], onehot)
    counts = onehot.T @ available  # [C, M]
    return sums / np.maximum(counts, 1)[None]


def expected_utilities(tables: FeatureTables, users: Users, realism: float) -> np.ndarray:
    """[N, C, M] each user's mean utility of each LLM over the queries of each task: what the oracle knows."""
    value = np.einsum("nf,fcm->ncm", users.weights, task_means(tables, realism)) + users.affinity[:, None, :]
    if users.task_affinity is not None:
        value = value + users.task_affinity
    return value


def _schedule(users: Users, tables: FeatureTables, config: WorldConfig, rng: np.random.Generator) -> tuple:
    """(user [T], row [T]) of every round: a user, a category from their interests, a row within it."""
    n, t = len(users.archetype), config.rounds
    if config.activity == "uniform":
        who = rng.integers(0, n, size=t)
    else:
        share = rng.exponential(size=n)
        who = rng.choice(n, size=t, p=share / share.sum())
    n_cat = users.interests.shape[1]
    cumulative = np.cumsum(users.interests[who], axis=1)
    category = np.minimum((cumulative < rng.random(t)[:, None]).sum(axis=1), n_cat - 1)
    by_category = np.argsort(tables.categories, kind="stable")  # rows grouped by category
    size = np.bincount(tables.categories, minlength=n_cat)
    start = np.r_[0, np.cumsum(size)[:-1]]
    within = np.minimum((rng.random(t) * size[category]).astype(int), size[category] - 1)
    return who, by_category[start[category] + within]


def _with_newcomer(
    tables: FeatureTables, users: Users, base: int, favoured: np.ndarray, config: WorldConfig
) -> tuple[FeatureTables, Users]:
    """The tables and users with one more LLM: a copy of LLM `base` (its answers, and every user's affinity for
    it) that the `favoured` users like `newcomer_boost` more and every other user `newcomer_penalty` less."""
    shift = np.where(favoured > 0, config.newcomer_boost, -config.newcomer_penalty)
    affinity = users.affinity[:, base] + shift
    grown = replace(
        tables,
        llms=[*tables.llms, NEWCOMER],
        available=np.concatenate([tables.available, tables.available[:, base : base + 1]], axis=1),
        values=np.concatenate([tables.values, tables.values[:, :, base : base + 1]], axis=2),
        expected_quality=np.concatenate([tables.expected_quality, tables.expected_quality[:, base : base + 1]], axis=1),
    )
    task = users.task_affinity
    if task is not None:
        task = np.concatenate([task, np.zeros((*task.shape[:2], 1))], axis=2)
    return grown, replace(
        users, affinity=np.concatenate([users.affinity, affinity[:, None]], axis=1), task_affinity=task
    )


def _degraded(tables: FeatureTables, llm: int, degradation: float) -> FeatureTables:
    """The tables with LLM `llm`'s quality, realised and expected, scaled by 1 - degradation."""
    q = FEATURES.index("quality")
    values, expected = tables.values.copy(), tables.expected_quality.copy()
    values[q, :, llm] *= 1 - degradation
    expected[:, llm] *= 1 - degradation
    return replace(tables, values=values, expected_quality=expected)


def _round_utilities(tables: FeatureTables, users: Users, who: np.ndarray, row: np.ndarray, realism: float) -> tuple:
    """([T, M] realised, [T, M] expected) utility of every LLM in every round."""
    every = np.broadcast_to(np.arange(len(tables.llms)), (len(who), len(tables.llms)))
    task = tables.categories[row]
    realised = utilities(tables, users, who, row, every, realism, task)
    return realised, expected_utilities(tables, users, realism)[who, task]


def build_world(
    rows: list[MatrixRow], tables: FeatureTables, config: WorldConfig, seed: int, change: str | None
) -> World:
    """The world of `seed` over a matrix; `change`: None, "newcomer" or "drift" (at `config.change_round`)."""
    config.check()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    users_rng, schedule_rng, feedback_rng, change_rng = streams
    archetypes = parse_archetypes(config.archetypes)
    n_cat = int(tables.categories.max()) + 1
    users = draw_users(
        config.users,
        len(tables.llms),
        n_cat,
        archetypes,
        users_rng,
        config.spread,
        config.affinity_sd,
        config.interest_concentration,
    )
    names = [a.name for a in archetypes]
    archetype = [names[int(k)] for k in users.archetype]
    who, row = _schedule(users, tables, config, schedule_rng)
    everyone = expected_utilities(tables, users, config.realism)  # [N, C, M]
    baseline = np.einsum("nc,nc->n", users.interests, everyone.mean(axis=2))
    t0 = config.change_round
    newcomer = degraded = favoured = None
    if change == "newcomer":
        population = everyone.mean(axis=(0, 1))
        base = int(np.argsort(population)[(len(population) - 1) // 2])  # median population utility (lower one)
        favoured = names[int(change_rng.integers(0, len(names)))]
        tables, users = _with_newcomer(
            tables, users, base, np.asarray([a == favoured for a in archetype], float), config
        )
        newcomer = len(tables.llms) - 1
    realised, expected = _round_utilities(tables, users, who, row, config.realism)
    if change == "drift":
        degraded = int(np.argmax(realised[:t0].mean(axis=0)))
        late_realised, late_expected = _round_utilities(
            _degraded(tables, degraded, config.degradation), users, who, row, config.realism
        )
        realised[t0:], expected[t0:] = late_realised[t0:], late_expected[t0:]
    active = tables.available[row].copy()
    if newcomer is not None:
        active[:t0, newcomer] = False
    logit = (realised - baseline[who][:, None]) / config.temperature
    thumbs = (feedback_rng.random(realised.shape) < 1 / (1 + np.exp(-logit))).astype(float)
    noisy = logit + config.rating_noise * feedback_rng.standard_normal(realised.shape)
    ratings = 1 / (1 + np.exp(-noisy))
    width = max(3, len(str(config.users - 1)))
    stream = Stream(
        llms=list(tables.llms),
        user_names=[f"user_{n:0{width}d}" for n in range(config.users)],
        queries=[r.query for r in rows],
        user=who,
        row=row,
        active=active,
    )
    truth = Truth(realised, expected, baseline, thumbs, ratings)
    return World(stream, truth, archetype, t0 if change else None, newcomer, degraded, favoured)
