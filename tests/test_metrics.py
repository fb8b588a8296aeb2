import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gmtrouter.evaluation.metrics import auc, evaluate_scores, per_user, rated_pairs, top1_accuracy
from tests.conftest import make_record


def test_pairs_follow_record_order_and_skip_ties() -> None:
    records = [make_record("u", "q", {"a": 1.0, "b": 0.0, "c": 1.0})]
    pairs = rated_pairs(records, [[0.2, 0.5, 0.1]])
    # (a,b): label 1, diff -0.3; (a,c) tie skipped; (b,c): label 0, diff 0.4
    assert pairs.label.tolist() == [1, 0]
    assert pairs.diff.tolist() == pytest.approx([-0.3, 0.4])
    assert pairs.correct.tolist() == [False, False]


def test_predicted_tie_is_wrong() -> None:
    records = [make_record("u", "q", {"a": 1.0, "b": 0.0}), make_record("u", "r", {"a": 0.0, "b": 1.0})]
    result = evaluate_scores(records, [[0.5, 0.5], [0.1, 0.9]])
    assert result["accuracy"] == 0.5
    assert result["n_pairs"] == 2


def test_auc_matches_sklearn_on_pair_differences() -> None:
    rng = np.random.default_rng(0)
    records, scores = [], []
    for k in range(40):
        ratings = rng.integers(0, 3, size=3).astype(float)
        records.append(make_record(f"u{k % 4}", f"q{k}", dict(zip("abc", ratings, strict=True))))
        scores.append(rng.normal(size=3) + ratings)
    pairs = rated_pairs(records, scores)
    expected = roc_auc_score(pairs.label, pairs.diff)
    result = evaluate_scores(records, scores)
    assert result["auc"] == pytest.approx(expected)
    assert 0.5 < result["auc"] <= 1.0


def test_per_user_needs_five_pairs() -> None:
    records = [make_record("big", f"q{i}", {"a": 1.0, "b": 0.0}) for i in range(6)]
    records += [make_record("small", f"s{i}", {"a": 1.0, "b": 0.0}) for i in range(3)]
    scores = [[1.0, 0.0]] * 5 + [[0.0, 1.0]] + [[1.0, 0.0]] * 3
    summary = per_user(rated_pairs(records, scores))
    assert summary["n_users"] == 1
    assert summary["accuracy"]["mean"] == pytest.approx(5 / 6)


def test_top1_requires_unique_maxima() -> None:
    records = [
        make_record("u", "q1", {"a": 3.0, "b": 1.0, "c": 2.0}),
        make_record("u", "q2", {"a": 3.0, "b": 3.0, "c": 2.0}),  # no unique best rating: skipped
        make_record("u", "q3", {"a": 1.0, "b": 2.0, "c": 3.0}),
        make_record("u", "q4", {"a": 1.0, "b": 0.0}),  # two responses: skipped
    ]
    scores = [[0.9, 0.1, 0.2], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5], [1.0, 0.0]]
    assert top1_accuracy(records, scores) == (0.5, 2)


def test_auc_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    for size in (2, 7, 50, 400):
        label = rng.integers(0, 2, size)
        label[:2] = [0, 1]
        diff = rng.integers(-3, 4, size).astype(float)  # many ties
        assert auc(label, diff) == pytest.approx(roc_auc_score(label, diff), abs=1e-12)
