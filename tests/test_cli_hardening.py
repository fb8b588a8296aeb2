"""The command line on broken inputs and its output files: one line and exit 2, never a traceback; files
readable as usual; a model folder written whole or not at all."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import assert_one_line_error, in_child, in_process
from tests.serve_support import served_model  # noqa: F401 - a fixture

RECORDS = [
    {
        "user": f"u{u}",
        "conversation": f"u{u}/{n}",
        "turn": 1,
        "query": f"question {n}",
        "responses": [{"llm": "gpt-4", "rating": float(n % 3 != 0)}, {"llm": "llama-13b", "rating": float(n % 3 == 0)}],
    }
    for u in range(3)
    for n in range(8)
]


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def train(
    records: Path, output: Path, router: str = "global-winrate", child: bool = False
) -> subprocess.CompletedProcess[str]:
    args = ("train", "--data", str(records), "-o", str(output), "--router", router)
    return in_child(*args, umask=0o022) if child else in_process(*args)


def test_broken_model_folders_get_one_line(records: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert train(records, model).returncode == 0
    route = ("route", "--model", str(model), "--user", "u1", "--query", "question 3")
    assert in_process(*route).returncode == 0

    (model / "history.jsonl").unlink()
    assert_one_line_error(in_child(*route), "history.jsonl is missing")  # and nothing an import prints
    assert_one_line_error(in_process("eval", "--model", str(model), "--data", str(records)), "history.jsonl is missing")

    assert train(records, model).returncode == 0
    config = json.loads((model / "config.json").read_text())
    config["state"] = {"a_setting_from_another_revision": 1}
    (model / "config.json").write_text(json.dumps(config))
    assert_one_line_error(in_process(*route), "do not fit this version", "retrain it")


def test_output_files_and_model_folders_get_the_usual_permissions(records: Path, tmp_path: Path) -> None:
    split = tmp_path / "split"
    assert in_child("data", "split", str(records), "-o", str(split), umask=0o022).returncode == 0
    assert stat.S_IMODE((split / "train.jsonl").stat().st_mode) == 0o644
    model = tmp_path / "model"
    assert train(records, model, child=True).returncode == 0
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in model.iterdir()} == {0o644}
    assert in_child("data", "split", str(records), "-o", str(tmp_path / "private"), umask=0o077).returncode == 0
    assert stat.S_IMODE((tmp_path / "private" / "test.jsonl").stat().st_mode) == 0o600


def test_a_model_folder_is_replaced_whole(records: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert train(records, model, "knn").returncode == 0
    (model / "left-over.txt").write_text("from before")
    assert train(records, model).returncode == 0
    assert json.loads((model / "config.json").read_text())["router"] == "global-winrate"
    assert not (model / "left-over.txt").exists()  # a new folder took the old one's place: nothing merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "records.jsonl"]  # no temp folders left

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("not a model")
    assert_one_line_error(train(records, precious), "exists and is not a model folder")
    assert (precious / "notes.txt").read_text() == "not a model"


def _mt_bench_copy(data_dir: Path, tmp_path: Path, votes: list[dict]) -> Path:
    folder = tmp_path / "mt_bench"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "mt_bench" / "question.jsonl", folder)
    shutil.copytree(data_dir / "mt_bench" / "model_answer", folder / "model_answer")
    (folder / "human_judgments_turn1.jsonl").write_text("".join(json.dumps(v) + "\n" for v in votes))
    return folder


def test_broken_mt_bench_votes_get_one_line(data_dir: Path, tmp_path: Path) -> None:
    vote = {"question_id": 81, "judge": "expert_1", "model_a": "gpt-4", "model_b": "claude-v1", "winner": "model_a"}
    for turn, words in (("two", "'two' is not a turn of question 81"), (0, "0 is not a turn"), (3, "3 is not a turn")):
        folder = _mt_bench_copy(data_dir, tmp_path / f"t{turn}", [vote, {**vote, "turn": turn}])
        output = tmp_path / f"t{turn}.jsonl"
        assert_one_line_error(
            in_process("data", "prepare", "mt-bench", "--data-dir", str(folder), "-o", str(output)), ":2:", words
        )
        assert not output.exists()
    empty = _mt_bench_copy(data_dir, tmp_path / "empty", [])
    output = tmp_path / "empty.jsonl"
    assert_one_line_error(
        in_process("data", "prepare", "mt-bench", "--data-dir", str(empty), "-o", str(output)), "holds no votes"
    )
    assert not output.exists()


def test_eval_json_is_strict_json(records: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert train(records, model).returncode == 0
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(RECORDS[1]) + "\n")  # one pair, one label: AUC is undefined
    result = in_process(
        "eval", "--model", str(model), "--data", str(one), "--json", "--allow-overlap"
    )  # it was trained on
    assert result.returncode == 0, result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    payload = json.loads(result.stdout, parse_constant=refuse)
    assert payload["auc"] is None and payload["accuracy"] in (0.0, 1.0)
    assert payload["per_user"]["n_users"] == 0 and payload["n_users"] == 1


def test_demo_names_the_folder_to_give(data_dir: Path, tmp_path: Path) -> None:
    result = in_process("demo", "--data-dir", str(data_dir / "mt_bench"), "--out", str(tmp_path / "demo"))
    assert_one_line_error(result, "is the MT-Bench folder itself", f"--data-dir {data_dir}")
    assert_one_line_error(
        in_process("demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "demo")), "holds no mt_bench/"
    )


def test_demo_shows_two_users_routed_differently_and_why(served_model: Path) -> None:  # noqa: F811
    """The demo's personalised part on a real trained router whose users have different favourite LLMs."""
    from gmtrouter.api import Router
    from gmtrouter.cli.demo import _print_personalised, out

    router = Router.load(served_model)
    users = [f"taste-{u}" for u in range(6)]
    query = "Write a short poem about the sea, in the style of a pirate shanty."
    with out.capture() as captured:
        _print_personalised(router, users, query)
    text = captured.get()
    assert f"query: {query}" in text and "two users whose histories differ, routed differently" in text
    chosen = re.findall(r"route for (taste-\d+): (\S+)", text)
    assert len(chosen) == 2 and chosen[0][1] != chosen[1][1], text
    assert text.count("why: the past interactions of") == 2


def test_a_binary_file_is_a_bad_line_not_a_decoding_error(records: Path, tmp_path: Path) -> None:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(128, 256)) * 4 + b"\n" + records.read_bytes().splitlines(keepends=True)[0])
    result = in_process("data", "validate", str(binary))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{binary}:1: is not UTF-8 text; give a JSONL file (one JSON record per line)", lines
    assert lines[-1] == f"error: {binary}: 1 problem(s) in 2 lines; fix the lines above"
    assert_one_line_error(
        in_process("train", "--data", str(binary), "-o", str(tmp_path / "m")), f"{binary}:1", "not UTF-8"
    )


def test_settings_and_outputs_are_checked_before_training(records: Path, tmp_path: Path) -> None:
    for setting, words in (
        ("steps=abc", ("steps='abc'", "is not int")),
        ("steps=-5", ("steps=-5", "at least 1")),
        ("lr=NaN", ("lr=nan", "finite")),
        ("dropout=1.5", ("dropout=1.5", "[0, 1)")),
    ):
        assert_one_line_error(
            in_process("train", "--data", str(records), "-o", str(tmp_path / "m"), "--set", setting), *words
        )
    existing = tmp_path / "existing"
    existing.write_text("not a model folder\n")
    assert_one_line_error(in_process("train", "--data", str(records), "-o", str(existing)), str(existing), "is a file")
    assert not (tmp_path / "m").exists()


def test_route_and_serve_refuse_bad_values_in_one_line(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    from tests.serve_support import free_port

    base = ["route", "--model", str(served_model), "--user", "taste-1", "--query", "hi"]
    assert_one_line_error(in_process(*base, "--cost-weight", "nan"), "cost_weight must be a finite number")
    assert_one_line_error(in_process(*base, "--switch-cost", "inf"), "switch_cost must be a finite number")
    not_a_db = tmp_path / "not-a.db"
    not_a_db.write_text("a text file\n")
    serve = ["serve", "--model", str(served_model)]
    assert_one_line_error(in_process(*serve, "--db", f"sqlite:///{not_a_db}"), "file is not a database")
    down = f"postgresql+psycopg://gmt@127.0.0.1:{free_port()}/gone"
    assert_one_line_error(in_process(*serve, "--db", down), "cannot open database", "Connection refused")


def test_help_version_and_the_help_an_error_points_to() -> None:
    assert in_child("--version").stdout.strip().startswith("gmtrouter ")
    for args in (["-h"], ["train", "-h"], ["serve", "keys", "-h"]):
        shown = in_child(*args)
        assert shown.returncode == 0 and "Usage: gmtrouter" in shown.stdout, (args, shown.stderr)
    assert_one_line_error(in_child("train", "--bogus"), "No such option: --bogus", "see 'gmtrouter train --help'")
    assert_one_line_error(in_child("data", "validate"), "Missing argument", "see 'gmtrouter data validate --help'")
    helped = " ".join(in_child("train", "--help").stdout.split())
    for name in ("gmtrouter:", "user-winrate:", "knn:", "steps", "hidden", "max_epochs"):
        assert name in helped, name


def test_route_says_why(served_model: Path) -> None:  # noqa: F811
    base = ["route", "--model", str(served_model), "--user", "taste-1", "--query", "Write a poem about the sea"]
    shown = in_process(*base)
    assert shown.returncode == 0 and "why: the past interactions of taste-1 that did most for" in shown.stdout, (
        shown.stdout
    )
    decision = json.loads(in_process(*base, "--json").stdout)
    assert decision["explanation"] and {"conversation", "turn", "query", "ratings", "weight"} <= set(
        decision["explanation"][0]
    )
    assert all(item["conversation"].startswith("taste-1/") for item in decision["explanation"])
