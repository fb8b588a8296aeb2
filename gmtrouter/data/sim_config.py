"""The simulator's settings and their checks, importable without the simulator's heavier dependencies.

docs/simulator.md explains every knob and why its default is what it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gmtrouter.data.matrix import MatrixRow, matrix_llms
from gmtrouter.data.sim_users import parse_archetypes
from gmtrouter.utils.errors import GmtError

UTILITY_KEY = "utility"  # the `meta` key of a simulated record's true utilities (for analysis; never read by a router)
COMMUNITY_KEY = "community"  # the `meta` key of a simulated user's taste community (analysis only)
COMMUNITY_UTILITY_KEY = "community_utility"  # each community's utilities of the shown responses (analysis only)
COMMUNITY_TASTE_KEY = "community_taste"  # each community's utilities of the shown LLMs on the query's task (analysis)


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the simulator; docs/simulator.md explains each and why its default is what it is."""

    users: int = 200
    records_per_user: int = 50
    max_turns: int = 5
    candidates: int = 2
    seed: int = 0
    temperature: float = 0.5
    realism: float = 0.5
    tie_margin: float = 0.1
    tie_prob: float = 0.5
    spread: float = 0.5
    affinity_sd: float = 0.5
    archetypes: str | None = None
    neighbours: int = 10
    interest_concentration: float = 0.5
    switch_aversion: float = 0.0  # mean utility drop for changing LLM mid-conversation, among averse users; 0 = off
    switch_share: float = 0.7  # share of users who mind a change of LLM at all
    communities: int = 0  # taste communities the users come in; 0 = none (every user drawn on their own)
    community_sd: float = 1.0  # SD of a community's affinity per LLM
    community_task_loyalty: float = 1.5  # extra utility of a community's favourite LLM for each task

    def check(self) -> None:
        """Refuse settings that cannot work, naming the option to fix."""
        rules = [
            (self.users >= 1, f"--users must be at least 1, got {self.users}"),
            (self.seed >= 0, f"--seed must be 0 or more, got {self.seed}"),
            (
                self.records_per_user >= 1,
                f"--records-per-user must be at least 1, got {self.records_per_user}",
            ),
            (self.max_turns >= 1, f"--turns must be at least 1, got {self.max_turns}"),
            (self.candidates >= 2, f"--candidates must be at least 2, got {self.candidates}"),
            (self.temperature > 0, f"--temperature must be positive, got {self.temperature}"),
            (0.0 <= self.realism <= 1.0, f"--realism must be between 0 and 1, got {self.realism}"),
            (self.tie_margin >= 0, f"--tie-margin must be 0 or more, got {self.tie_margin}"),
            (0.0 <= self.tie_prob <= 1.0, f"--tie-prob must be between 0 and 1, got {self.tie_prob}"),
            (self.spread >= 0, f"--spread must be 0 or more, got {self.spread}"),
            (self.affinity_sd >= 0, f"--affinity-sd must be 0 or more, got {self.affinity_sd}"),
            (self.neighbours >= 1, f"--neighbours must be at least 1, got {self.neighbours}"),
            (
                self.interest_concentration > 0,
                f"--interest-concentration must be positive, got {self.interest_concentration}",
            ),
            (
                0.0 <= self.switch_aversion < math.inf,
                f"--switch-aversion must be a finite number, 0 or more, got {self.switch_aversion}",
            ),
            (0.0 <= self.switch_share <= 1.0, f"--switch-share must be between 0 and 1, got {self.switch_share}"),
            (
                0 <= self.communities <= self.users,
                f"--communities must be between 0 and --users ({self.users}), got {self.communities}",
            ),
            (
                0.0 <= self.community_sd < math.inf,
                f"--community-sd must be a finite number, 0 or more, got {self.community_sd}",
            ),
            (
                math.isfinite(self.community_task_loyalty),
                f"--community-task-loyalty must be a finite number, got {self.community_task_loyalty}",
            ),
            (
                self.communities == 0 or self.switch_aversion == 0,
                "--communities does not combine with --switch-aversion; give one of them",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise GmtError(message)
        parse_archetypes(self.archetypes)

    def check_matrix(self, rows: Sequence[MatrixRow]) -> None:
        """Refuse a matrix these settings cannot use: too few LLMs, or no row with enough of them."""
        if not rows:
            raise GmtError("the matrix has no rows")
        n_llms = len(matrix_llms(rows))
        if self.candidates > n_llms:
            raise GmtError(
                f"--candidates is {self.candidates} but the matrix has only {n_llms} LLMs; "
                f"use --candidates {n_llms} or fewer"
            )
        if not any(len(row.responses) >= self.candidates for row in rows):
            raise GmtError(f"no matrix row has results of {self.candidates} LLMs; lower --candidates")
