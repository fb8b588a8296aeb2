"""One run: a policy in a world, round by round; what it chose and how long the loop took."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gmtrouter.bench.online.policies import Policy, Unavailable
from gmtrouter.bench.online.world import World
from gmtrouter.data.schema import Interaction

PROGRESS_EVERY = 100  # rounds between progress callbacks


@dataclass(frozen=True)
class RunOutcome:
    """`status` "ok" with the choice of every round, or "unavailable" / "failed" with the reason."""

    status: str
    choices: np.ndarray  # [T] the routed LLM of each round (empty unless ok)
    start_seconds: float  # starting the policy (loading a model, the warm start)
    loop_seconds: float  # every round: choose, feedback, learn
    reason: str = ""

    @property
    def routes_per_second(self) -> float:
        return len(self.choices) / self.loop_seconds if self.loop_seconds > 0 else float("nan")


def run_policy(
    world: World,
    policy: Policy,
    feedback: str,
    warm: Sequence[Interaction] = (),
    progress: Callable[[int], None] | None = None,
    rounds: int | None = None,
) -> RunOutcome:
    """Route every round of `world` (or its first `rounds`) with `policy`, giving it the `feedback` ("thumbs" or
    "rating") on its choice."""
    stream, table = world.stream, world.truth.feedback(feedback)
    began = time.perf_counter()
    try:
        policy.start(stream, warm)
    except Unavailable as why:
        policy.close()
        return RunOutcome("unavailable", np.zeros(0, dtype=int), time.perf_counter() - began, 0.0, str(why))
    started = time.perf_counter()
    choices = np.empty(min(rounds or stream.rounds, stream.rounds), dtype=int)
    try:
        for t in range(len(choices)):
            candidates = stream.candidates(t)
            llm = policy.choose(t, candidates)
            if not stream.active[t, llm]:
                raise ValueError(f"round {t}: {policy.name} routed to {stream.llms[llm]}, not a candidate")
            policy.learn(t, llm, float(table[t, llm]))
            choices[t] = llm
            if progress is not None and (t + 1) % PROGRESS_EVERY == 0:
                progress(t + 1)
    finally:
        policy.close()
    return RunOutcome("ok", choices, started - began, time.perf_counter() - started)
