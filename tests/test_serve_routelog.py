"""Route rows committed behind the answers: readable before they are committed, all committed by a flush or a
stop, and a forget that follows them deletes them all (a real SQLite file)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gmtrouter.serve.routelog import RouteLog
from gmtrouter.serve.store import RouteRow, Store


def row(n: int, user: str = "alice", conversation: str | None = "chat-1", choice: str = "gpt-4") -> RouteRow:
    return RouteRow(
        id=f"route-{n}",
        user=user,
        query=f"question {n}",
        candidates=["gpt-4", "claude-v1"],
        choice=choice,
        ranking=[{"llm": choice, "score": 1.0, "expected_cost": None, "adjusted": 1.0}],
        created=time.time() + n * 1e-3,
        conversation=conversation,
    )


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(f"sqlite:///{tmp_path / 'routes.db'}")
    yield opened
    opened.close()


def test_a_route_is_readable_at_once_and_committed_by_a_flush(store: Store) -> None:
    log = RouteLog(store)
    log.add([row(i) for i in range(50)])
    assert log.get("route-7").query == "question 7"  # from memory or the store, whichever holds it now
    assert log.flush()
    assert log.unwritten() == 0 and log.pending("route-7") is None
    assert store.count("routes") == 50 and store.get_route("route-49").choice == "gpt-4"
    log.close()


def test_the_next_turn_sees_the_newest_choice_before_it_is_committed(store: Store) -> None:
    log = RouteLog(store)
    log.add([row(1, choice="gpt-4")])
    log.flush()
    log.add([row(2, choice="claude-v1"), row(3, user="bob", choice="llama-13b")])
    assert log.last_choice("alice", "chat-1") == "claude-v1"  # committed or not, the newest of alice's chat
    assert log.last_choice("bob", "chat-1") == "llama-13b"  # another user's conversation of the same id
    assert log.last_choice("alice", "chat-2") is None
    log.close()


def test_a_stop_commits_what_is_queued_and_a_forget_after_a_flush_deletes_it(store: Store) -> None:
    log = RouteLog(store)
    log.add([row(i, user="leaver" if i % 2 else "stayer") for i in range(20)])
    log.flush()
    counts = store.forget("leaver")
    assert counts["routes"] == 10 and store.count("routes", "leaver") == 0
    log.add([row(100 + i) for i in range(5)])
    log.close()
    assert store.count("routes") == 15


def test_an_answer_kept_for_a_route_not_yet_committed_is_not_lost(store: Store) -> None:
    log = RouteLog(store)
    log.add([row(1)])
    log.set_answer("route-1", "Paris.")
    assert store.get_route("route-1").answer == "Paris."
    log.close()
