from collections import Counter

import pytest

from gmtrouter.data.split import split_records
from gmtrouter.errors import GmtError
from tests.conftest import make_record


def records():
    return [make_record(f"u{i % 7}", f"q{i}", {"a": 1.0, "b": 0.0}) for i in range(140)]


def test_record_split_keeps_users_known_and_order() -> None:
    data = records()
    train, test = split_records(data, "record", 0.25, seed=3)
    assert len(train) + len(test) == len(data)
    assert {r.user for r in test} <= {r.user for r in train}
    assert 25 <= len(test) <= 45
    position = {id(r): i for i, r in enumerate(data)}
    assert [position[id(r)] for r in test] == sorted(position[id(r)] for r in test)


def test_user_split_moves_whole_users_and_is_seeded() -> None:
    data = records()
    train, test = split_records(data, "user", 0.3, seed=1)
    assert not {r.user for r in train} & {r.user for r in test}
    assert Counter(r.user for r in test).most_common(1)[0][1] == 20
    assert split_records(data, "user", 0.3, seed=1) == (train, test)
    assert split_records(data, "user", 0.3, seed=2) != (train, test)


def test_bad_fraction() -> None:
    with pytest.raises(GmtError, match="--test-frac"):
        split_records(records(), "record", 1.5, seed=0)
