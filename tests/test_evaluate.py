"""The k-shot protocol: what is shown, what is scored, and who is left out."""

from __future__ import annotations

import pytest

from gmtrouter.evaluation.kshot import shot_split, users_left_out
from gmtrouter.utils.errors import GmtError
from tests.conftest import make_record


def records() -> list:
    """Three users with 3, 6 and 9 records, interleaved in file order."""
    sizes = {"u3": 3, "u6": 6, "u9": 9}
    rows = []
    for i in range(9):
        for user, size in sizes.items():
            if i < size:
                rows.append(make_record(user, f"{user} q{i}", {"a": 1.0, "b": 0.0}, conversation=f"{user}/{i}"))
    return rows


def test_every_k_of_a_curve_scores_the_same_records() -> None:
    data = records()
    scored = {k: shot_split(data, k, score_after=5)[1] for k in (0, 1, 2, 5)}
    assert all(scored[k] == scored[0] for k in scored)
    assert [r.query for r in scored[0] if r.user == "u6"] == ["u6 q5"]
    assert {r.user for r in scored[0]} == {"u6", "u9"}  # u3 has 5 records or fewer: left out
    assert users_left_out(data, 5) == 1
    shown, _ = shot_split(data, 2, score_after=5)
    assert [r.query for r in shown if r.user == "u9"] == ["u9 q0", "u9 q1"]  # the first k, in file order


def test_a_single_k_scores_everything_after_it() -> None:
    shown, scored = shot_split(records(), 2)
    assert len(shown) == 6 and len(scored) == 18 - 6


def test_scoring_before_the_shots_end_is_refused() -> None:
    with pytest.raises(GmtError, match="fewer than the 5 shots"):
        shot_split(records(), 5, score_after=2)
