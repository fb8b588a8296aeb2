"""User-conditioned sampling: each step, every user shows a few interactions and is asked about others.

This is what makes a trained model adapt to a new user from k interactions with no gradient step: during
training, every prediction is made from a small random history of that user, never from a learned user id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingConfig:
    """How many interactions each user shows per step, and how many hidden ones are scored."""

    max_visible: int = 16
    targets_per_step: int = 256
    cold_user_rate: float = 0.1  # share of users that show nothing in a step (trains the population prior)


def shuffled_ranks(record_users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, sizes, rank): positions sorted by user with each user's records in random order, each user's
    record count (in user order), and each sorted position's rank within its user."""
    n = len(record_users)
    order = np.lexsort((rng.random(n), record_users))
    sorted_users = record_users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    return order, sizes, np.arange(n) - np.repeat(starts, sizes)


def sample_step(
    record_users: np.ndarray, config: SamplingConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(visible, targets): disjoint positions into `record_users` for one training step.

    Each user shows a uniform 1..max_visible of their records (never all of them), except cold users, who
    show none; targets are drawn from the records nobody showed.
    """
    order, sizes, rank = shuffled_ranks(record_users, rng)
    upper = np.minimum(config.max_visible, sizes - 1)
    shown = np.where(upper >= 1, rng.integers(1, np.maximum(upper, 1) + 1), 0)
    shown[rng.random(len(sizes)) < config.cold_user_rate] = 0
    visible_sorted = rank < np.repeat(shown, sizes)
    visible = order[visible_sorted]
    hidden = order[~visible_sorted]
    if len(hidden) > config.targets_per_step:
        hidden = rng.choice(hidden, config.targets_per_step, replace=False)
    return np.sort(visible), np.sort(hidden)


@dataclass(frozen=True)
class UserRecords:
    """Positions of each user's records, so that a step can take a few users' records without a scan per user."""

    order: np.ndarray  # positions sorted by user
    starts: np.ndarray  # [users] where each user's positions begin in `order`
    sizes: np.ndarray  # [users] how many records each user has

    @classmethod
    def of(cls, record_users: np.ndarray) -> UserRecords:
        order = np.argsort(record_users, kind="stable")
        _, starts, sizes = np.unique(record_users[order], return_index=True, return_counts=True)
        return cls(order, starts, sizes)

    @property
    def num_users(self) -> int:
        return len(self.sizes)

    def records_of(self, users: np.ndarray) -> np.ndarray:
        """Sorted positions of the records of `users` (indices into the user list, as in `starts`)."""
        sizes = self.sizes[users]
        shift = np.repeat(self.starts[users] - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
        return np.sort(self.order[np.arange(int(sizes.sum())) + shift])

    def sample(self, most: int, rng: np.random.Generator) -> np.ndarray | None:
        """The sorted positions of the records of `most` users drawn at random; None when there are no more
        users than that (every record takes part, and `rng` is not touched)."""
        if self.num_users <= most:
            return None
        return self.records_of(rng.choice(self.num_users, most, replace=False))
