"""Training on two processes with torchrun (gloo over loopback): one model, saved once, that routes."""

from __future__ import annotations

import json

import pytest

from gmtrouter.api import Router
from gmtrouter.data.schema import write_records
from tests.cli_support import assert_one_line_error, in_child
from tests.test_conversation import sticky_records

pytestmark = pytest.mark.slow


def test_two_processes_train_one_model_and_save_it_once(tmp_path) -> None:
    data = tmp_path / "train.jsonl"
    write_records(data, sticky_records(users=20, conversations=4))
    settings = ["--set", "steps=6", "--set", "eval_every=3", "--set", "residual_margin=-1", "--set", "progress=false"]
    result = in_child("train", "--data", str(data), "-o", str(tmp_path / "model"), "--workers", "2", *settings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("saved gmtrouter to") == 1  # rank 0 alone saves
    log = json.loads((tmp_path / "model" / "config.json").read_text())["state"]["training_log"]
    assert log["processes"] == 2 and log["steps"] == 6 and log["best_step"] > 0  # the residual was trained
    router = Router.load(tmp_path / "model")
    assert not router.model.net_.adds_nothing()  # the head's zero-start layer moved: gradients were applied
    assert router.route("u0", "Question 3 about subject 3").llm in {"a", "b", "c"}


def test_workers_train_gmtrouter_only(tmp_path) -> None:
    data = tmp_path / "train.jsonl"
    write_records(data, sticky_records(users=4, conversations=2))
    result = in_child("train", "--data", str(data), "-o", str(tmp_path / "m"), "--workers", "2", "--router", "knn")
    assert_one_line_error(result, "--workers trains GMTRouter only")
