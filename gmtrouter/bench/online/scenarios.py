"""The four situations the online benchmark puts every policy in, and the logs a warm start begins from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmtrouter.bench.online.world import WorldConfig
from gmtrouter.data.matrix import MatrixRow
from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import SimConfig
from gmtrouter.data.simulate import simulate

OFFLINE_USERS, OFFLINE_RECORDS = 100, 50  # the warm start's logs: as many users as the offline benchmark's
LOGS_SEED = 0  # one set of warm-start logs (and one trained model) per matrix, for every seed of the online world


@dataclass(frozen=True)
class Scenario:
    """How a run starts (from nothing, or from other users' logs) and what changes during it."""

    name: str
    warm: bool  # learning policies start from side-by-side votes of other users of the same world
    change: str | None  # None, "newcomer" (a new LLM joins) or "drift" (the best LLM degrades)
    about: str
    feedback: str = "thumbs"  # or "rating": a rating in [0, 1] instead of a thumb


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("cold", False, None, "no logs: every learning policy starts from nothing"),
        Scenario(
            "warm",
            True,
            None,
            f"every learning policy starts from {OFFLINE_USERS} other users' side-by-side votes "
            f"({OFFLINE_RECORDS} each, as `gmtrouter data simulate` draws them), gmtrouter from a model "
            "`gmtrouter train` fitted on them",
        ),
        Scenario("new-llm", False, "newcomer", "cold start; a new LLM joins half way, the best for one archetype"),
        Scenario("drift", False, "drift", "cold start; half way the best LLM so far degrades"),
        Scenario(
            "rating", False, None, "cold start, and a rating in [0, 1] of each answer instead of a thumb", "rating"
        ),
    ]
}


def offline_seed(seed: int) -> int:
    """The simulator's seed for the warm start's users: its own stream, so they are other users than any online
    world's."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def offline_records(rows: list[MatrixRow], config: WorldConfig, seed: int = LOGS_SEED) -> list[Interaction]:
    """Side-by-side votes of `OFFLINE_USERS` users of the world's population (not its online users)."""
    sim = SimConfig(
        users=OFFLINE_USERS,
        records_per_user=OFFLINE_RECORDS,
        seed=offline_seed(seed),
        temperature=config.temperature,
        realism=config.realism,
        spread=config.spread,
        affinity_sd=config.affinity_sd,
        archetypes=config.archetypes,
        interest_concentration=config.interest_concentration,
    )
    return simulate(rows, sim).records
