from collections import Counter

import pytest

from gmtrouter.data.schema import write_records
from gmtrouter.data.split import split_records
from gmtrouter.utils.errors import GmtError
from tests.cli_support import assert_one_line_error, in_child
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


def shared_query_records():
    """Seven users asking from twelve texts (some asked by many users, some by one), three records each text."""
    texts = [f"text {k}" for k in range(12)]
    return [
        make_record(f"u{i % 7}", texts[(i * 5) % 12], {"a": 1.0, "b": 0.0}, conversation=f"c{i}") for i in range(84)
    ]


def test_query_split_holds_out_whole_texts_and_keeps_the_rest_as_history() -> None:
    data = shared_query_records()
    train, test = split_records(data, "query", 0.25, seed=4)
    assert not {r.query for r in train} & {r.query for r in test}  # no test text in training, for anyone
    assert sorted(map(id, train + test)) == sorted(map(id, data))  # nothing dropped
    held = {r.query for r in test}
    for user in {r.user for r in test}:  # a test user's other records all stay in training, as history
        assert [r for r in train if r.user == user] == [r for r in data if r.user == user and r.query not in held]
    assert 0.2 <= len(test) / len(data) <= 0.35
    assert split_records(data, "query", 0.25, seed=4) == (train, test)
    assert split_records(data, "query", 0.25, seed=5) != (train, test)


def test_query_split_needs_two_texts() -> None:
    with pytest.raises(GmtError, match="two distinct query texts"):
        split_records([make_record(f"u{i}", "same", {"a": 1.0, "b": 0.0}) for i in range(5)], "query", 0.2, seed=0)


def topic_records():
    """Six users asking about five topics, several records a topic each."""
    topics = ["math", "code", "writing", "roleplay", "stem"]
    return [
        make_record(f"u{i % 6}", f"q{i}", {"a": 1.0, "b": 0.0}, conversation=f"c{i}", category=topics[(i // 6) % 5])
        for i in range(120)
    ]


def test_category_split_holds_out_whole_topics_and_keeps_the_rest_as_history() -> None:
    data = topic_records()
    train, test = split_records(data, "category", 0.3, seed=2)
    held = {r.meta["category"] for r in test}
    assert held and not held & {r.meta["category"] for r in train}  # no test topic is in training, for anyone
    assert sorted(map(id, train + test)) == sorted(map(id, data))
    for user in {r.user for r in test}:
        assert [r for r in train if r.user == user] == [
            r for r in data if r.user == user and r.meta["category"] not in held
        ]
    assert 0.3 <= len(test) / len(data) <= 0.45  # whole topics of 20% each, until 30% are held out
    assert split_records(data, "category", 0.3, seed=2) == (train, test)
    assert any(split_records(data, "category", 0.3, seed=s) != (train, test) for s in range(3, 6))


def test_category_split_refuses_records_without_topics(tmp_path) -> None:
    data = topic_records()
    with pytest.raises(GmtError, match="two distinct categories"):
        split_records([r for r in data if r.meta["category"] == "math"], "category", 0.2, seed=0)
    unlabelled = tmp_path / "records.jsonl"
    write_records(unlabelled, [*data[:3], make_record("u9", "no topic", {"a": 1.0, "b": 0.0})])
    result = in_child("data", "split", str(unlabelled), "--by", "category", "-o", str(tmp_path / "split"))
    assert result.returncode == 2
    assert_one_line_error(result, "record 4", "no meta.category")
    assert not (tmp_path / "split").exists()
