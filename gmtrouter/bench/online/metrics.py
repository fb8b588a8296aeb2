"""What a run's choices are worth, against the attainable oracle and the best single LLM in hindsight.

Utility is the true utility of the routed answer (the simulator's, realised: a wrong answer is worth less).
Share of the gap closed over a window of rounds = (U_policy - U_best_single) / (U_oracle - U_best_single), the
means over the window: 1 for the oracle, 0 for the best single LLM, below 0 for a policy worse than always
routing to that one LLM. docs/online.md defines every metric.
"""

from __future__ import annotations

import math

import numpy as np

from gmtrouter.bench.online.policies import best_single_llm
from gmtrouter.bench.online.world import World

RECENT = (1000, 500)  # the last rounds the headline metrics are taken over
EARLY = (1000, 2000)  # "at 2,000 rounds": the thousand rounds before round 2,000
DRIFT_WINDOW, DRIFT_STEP, DRIFT_TOLERANCE = 500, 50, 0.05


def oracle_choices(world: World) -> np.ndarray:
    """[T] the attainable oracle's LLM of every round."""
    expected = np.where(world.stream.active, world.truth.expected, -np.inf)
    return np.argmax(expected, axis=1)


def routed_utility(world: World, choices: np.ndarray) -> np.ndarray:
    """[T] the true utility of the routed answer of every round."""
    return world.truth.utility[np.arange(len(choices)), choices]


def gap_closed(policy: np.ndarray, oracle: np.ndarray, best: np.ndarray) -> float:
    """(mean policy - mean best) / (mean oracle - mean best); NaN where the oracle is no better than the best."""
    gap = float(oracle.mean() - best.mean())
    return float(policy.mean() - best.mean()) / gap if gap > 1e-12 else math.nan


def regret_curve(world: World, choices: np.ndarray) -> np.ndarray:
    """[T] cumulative regret against the attainable oracle after each round."""
    return np.cumsum(routed_utility(world, oracle_choices(world)) - routed_utility(world, choices))


def _windows(rounds: int) -> dict[str, slice]:
    windows = {f"last_{n}": slice(max(0, rounds - n), rounds) for n in RECENT}
    if rounds >= EARLY[1]:
        windows["at_2000"] = slice(*EARLY)
    return windows


def run_metrics(world: World, choices: np.ndarray) -> dict[str, float]:
    """Every metric of one run (keys as docs/online.md lists them)."""
    rounds = len(choices)
    policy, oracle = routed_utility(world, choices), routed_utility(world, oracle_choices(world))
    best = world.truth.utility[:, best_single_llm(world.stream, world.truth)]
    metrics: dict[str, float] = {"regret": float((oracle - policy).sum())}
    for name, window in _windows(rounds).items():
        metrics[f"utility.{name}"] = float(policy[window].mean())
        metrics[f"gap_closed.{name}"] = gap_closed(policy[window], oracle[window], best[window])
    if world.newcomer is not None and world.change_at is not None:
        metrics.update(newcomer_metrics(world, choices))
    if world.degraded is not None and world.change_at is not None:
        metrics.update(drift_metrics(world, policy, oracle))
    return metrics


def favoured_users(world: World) -> np.ndarray:
    """[N] bool: the users for whom the new LLM is the oracle's choice in most of their rounds after it joined."""
    assert world.change_at is not None
    late = np.arange(world.stream.rounds) >= world.change_at
    users = world.stream.user[late]
    best = (oracle_choices(world)[late] == world.newcomer).astype(float)
    n = len(world.stream.user_names)
    return np.bincount(users, best, minlength=n) > 0.5 * np.bincount(users, minlength=n)


def newcomer_metrics(world: World, choices: np.ndarray) -> dict[str, float]:
    """The new LLM's share of the routes of the last 1,000 rounds: of the users it is best for, of the others,
    and of the rounds where it is the oracle's choice."""
    rounds = len(choices)
    recent = slice(max(world.change_at or 0, rounds - RECENT[0]), rounds)
    routed = choices[recent] == world.newcomer
    favoured = favoured_users(world)[world.stream.user[recent]]
    where_best = oracle_choices(world)[recent] == world.newcomer

    def share(mask: np.ndarray) -> float:
        return float(routed[mask].mean()) if mask.any() else math.nan

    return {
        "newcomer.favoured_share": share(favoured),
        "newcomer.other_share": share(~favoured),
        "newcomer.where_best": share(where_best),
        "newcomer.favoured_users": float(favoured_users(world).mean()),
    }


def drift_metrics(world: World, policy: np.ndarray, oracle: np.ndarray) -> dict[str, float]:
    """The share of the gap closed before the degradation and after it (each phase against its own best single
    LLM), and how many rounds after it the share is back within `DRIFT_TOLERANCE` of its level before."""
    t0, rounds = world.change_at or 0, len(policy)
    utility = world.truth.utility
    before_best, after_best = utility[:t0].mean(axis=0).argmax(), utility[t0:].mean(axis=0).argmax()

    def closed(start: int, stop: int, best: int) -> float:
        window = slice(max(start, 0), min(stop, rounds))
        return gap_closed(policy[window], oracle[window], utility[window, best])

    level = closed(t0 - DRIFT_WINDOW, t0, before_best)
    recovered = next(
        (
            float(r)
            for r in range(0, rounds - t0 - DRIFT_WINDOW + 1, DRIFT_STEP)
            if closed(t0 + r, t0 + r + DRIFT_WINDOW, after_best) >= level - DRIFT_TOLERANCE
        ),
        math.nan,
    )
    return {
        "drift.before": level,
        "drift.after_first_500": closed(t0, t0 + DRIFT_WINDOW, after_best),
        "drift.after_next_500": closed(t0 + DRIFT_WINDOW, t0 + 2 * DRIFT_WINDOW, after_best),
        "drift.recovery_rounds": recovered,
    }
