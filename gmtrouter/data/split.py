"""Seeded train/test splits: by record (known users), by user (new users), by query text (new queries) or by
category (new topics)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.utils.errors import GmtError

SplitBy = Literal["record", "user", "query", "category"]
MIN_VALID_RECORDS = 20
VALID_SEED_OFFSET = 7919


def split_records(
    records: Sequence[Interaction], by: SplitBy, test_frac: float, seed: int
) -> tuple[list[Interaction], list[Interaction]]:
    """(train, test), each in the original (chronological) file order.

    By record, each user keeps at least one training record, and about `test_frac` of each user's records
    go to test (rounded stochastically, so small users still contribute). By user, a `test_frac` share of
    users moves to test whole. By query or by category, whole query texts or whole `meta.category` values
    move to test until about `test_frac` of the records are there.
    """
    if not 0.0 < test_frac < 1.0:
        raise GmtError(f"--test-frac must be between 0 and 1 (exclusive), got {test_frac}")
    rng = np.random.default_rng(seed)
    by_user: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_user[record.user].append(index)
    users = sorted(by_user)
    test: set[int] = set()
    if by == "user":
        if len(users) < 2:
            raise GmtError("a split by user needs at least two users")
        n_test = min(len(users) - 1, max(1, round(test_frac * len(users))))
        for user in rng.permutation(users)[:n_test]:
            test.update(by_user[str(user)])
    elif by == "record":
        for user in users:
            indices = by_user[user]
            wanted = test_frac * len(indices)
            n_test = int(wanted) + int(rng.random() < wanted - int(wanted))
            n_test = min(n_test, len(indices) - 1)
            test.update(rng.permutation(indices)[:n_test].tolist())
    elif by == "query":
        test = _whole_groups(_indices_by(records, lambda r: r.query), test_frac, len(records), rng, by, "query texts")
    elif by == "category":
        test = _whole_groups(_indices_by_category(records), test_frac, len(records), rng, by, "categories")
    else:
        raise GmtError(f"--by must be 'record', 'user', 'query' or 'category', got '{by}'")
    train = [r for i, r in enumerate(records) if i not in test]
    held = [r for i, r in enumerate(records) if i in test]
    return train, held


def _indices_by(records: Sequence[Interaction], key: Callable[[Interaction], str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[key(record)].append(index)
    return groups


def _indices_by_category(records: Sequence[Interaction]) -> dict[str, list[int]]:
    """Record indices by `meta.category`; a record without one is refused (new topics need every topic known)."""
    for index, record in enumerate(records):
        if not isinstance(record.meta.get("category"), str):
            raise GmtError(
                f"record {index + 1} (user {record.user}, conversation {record.conversation}) has no meta.category; "
                "a split by category needs a category on every record"
            )
    return _indices_by(records, lambda r: r.meta["category"])


def _whole_groups(
    groups: dict[str, list[int]], test_frac: float, n_records: int, rng: np.random.Generator, by: str, what: str
) -> set[int]:
    """Indices of the records of whole groups, drawn in a seeded order until about `test_frac` of the records
    are held out; one group at least stays in training."""
    names = sorted(groups)
    if len(names) < 2:
        raise GmtError(f"a split by {by} needs at least two distinct {what}, found {len(names)}")
    wanted = test_frac * n_records
    test: set[int] = set()
    for position in rng.permutation(len(names))[: len(names) - 1]:
        if len(test) >= wanted:
            break
        test.update(groups[names[position]])
    return test


def holdout_split(
    train: Sequence[Interaction], valid_frac: float, seed: int
) -> tuple[list[Interaction], list[Interaction]]:
    """(fit, valid): a `valid_frac` share of each user's records held out for tuning and early stopping.

    Every router draws the same held-out records for the same seed, so their tuning is compared fairly.
    Too little data (fewer than MIN_VALID_RECORDS held out) gives no validation set.
    """
    if valid_frac <= 0 or len(train) * valid_frac < MIN_VALID_RECORDS:
        return list(train), []
    return split_records(train, "record", valid_frac, seed + VALID_SEED_OFFSET)
