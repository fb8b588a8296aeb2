"""`gmtrouter bench` end to end on a tiny plan: results, report and plots, resuming, failures, timeouts, bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest

from gmtrouter.bench.aggregate import estimate
from gmtrouter.bench.datasets import SIM_VARIANTS
from gmtrouter.bench.plan import (
    ABLATIONS,
    DEFAULT_DATASETS,
    TURN_ALONE,
    BenchConfig,
    Job,
    Variant,
    build_plan,
    parse_int_list,
    parse_variant,
)
from gmtrouter.bench.tradeoff import single_llm_points, tradeoff_curve, win_share
from gmtrouter.cli import main
from gmtrouter.utils.errors import GmtError
from tests.conftest import FIXTURES, make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench(*args: str) -> tuple[int, str]:
    """Run `gmtrouter bench ARGS` through the command's entry point in this process: (exit code, stderr).

    In-process, the fork server that runs the jobs starts once for the whole module instead of once per run.
    """
    argv, stderr = sys.argv, io.StringIO()
    sys.argv = ["gmtrouter", "bench", *args]
    try:
        with contextlib.redirect_stderr(stderr):
            main()
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    finally:
        sys.argv = argv
    return code, stderr.getvalue()


def results_of(out: Path) -> dict[tuple[str, str, str], dict]:
    """(dataset, split, variant) -> result, for every result file under `out`."""
    found = {}
    for path in (out / "results").rglob("*.json"):
        result = json.loads(path.read_text())
        job = result["job"]
        found[job["dataset"], job["split"], job["variant"]] = result
    return found


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, list[str]]:
    """One tiny bench: synthetic LLMRouter users in taste communities and the Chatbot Arena fixture, two routers
    and a broken variant."""
    out = tmp_path_factory.mktemp("bench")
    args = [
        "--data-dir", str(data_dir),
        "--datasets", "llmrouter-communities,chatbot-arena",
        "--chatbot-arena", str(FIXTURES / "chatbot_arena" / "battles.json"),
        "--users", "12",
        "--records-per-user", "20",
        "--encoder", "hashing-64",
        "--routers", "global-winrate,gmtrouter",
        "--set", "gmtrouter.steps=8",
        "--variant", "broken=gmtrouter:layer=no-such-layer",
        "--seeds", "0",
        "--shots", "0,2",
        "--out", str(out),
        "--report", str(out / "report" / "results.md"),
    ]  # fmt: skip
    code, stderr = bench(*args)
    assert code == 0, stderr
    return out, args


def test_tiny_plan_writes_results_report_and_plots(tiny_run: tuple[Path, list[str]]) -> None:
    out, _ = tiny_run
    results = results_of(out)
    # (datasets x known users, new users, new queries) + new topics on the matrix's tasks (the arena has none),
    # each with three variants
    assert len(results) == (2 * 3 + 1) * 3
    ok = results["llmrouter-communities", "record", "gmtrouter"]
    assert ok["status"] == "ok"
    assert 0.0 <= ok["evaluations"]["0"]["accuracy"] <= 1.0
    assert ok["params"] > 0 and ok["peak_rss_mb"] > 0 and ok["train_seconds"] > 0
    assert ok["latency"]["requests"] > 0 and ok["latency"]["p95_ms"] >= ok["latency"]["median_ms"]
    assert {p["cost_weight"] for p in ok["tradeoff"]["curve"]} >= {0.0, 1.0}
    later = ok["conversation"]  # the synthetic users' later turns, after a known previous LLM
    assert later["records"] > 0 and [p["switch_cost"] for p in later["sweep"]][:2] == [0.0, 0.25]
    assert later["sweep"][-1]["switch_rate"] <= later["sweep"][0]["switch_rate"] and later["oracle"]["utility"]
    assert results["chatbot-arena", "record", "gmtrouter"]["conversation"]["oracle"] is None  # real users: no truth
    new_users = results["llmrouter-communities", "user", "global-winrate"]
    assert set(new_users["evaluations"]) == {"0", "2"}
    assert new_users["evaluations"]["2"]["known_users"] == new_users["evaluations"]["2"]["n_users"]
    assert new_users["evaluations"]["0"]["known_users"] == 0
    # every k scores the same records (each test user's after their first 2), so the pairs are the same
    assert new_users["score_after"] == 2 and new_users["users_left_out"] == 0
    assert new_users["evaluations"]["0"]["n_pairs"] == new_users["evaluations"]["2"]["n_pairs"]
    for k in ("0", "2"):  # the Bayes rule that knows the communities, on the same records at every k
        reference = new_users["evaluations"][k]["community_posterior"]["accuracy"]
        assert 0.5 < reference <= new_users["evaluations"][k]["oracle"]["accuracy"]
        assert 0.5 < new_users["evaluations"][k]["community_taste"]["accuracy"] <= 1.0
    assert "community_posterior" not in ok["evaluations"]["0"]  # shown where new users are scored
    new_queries = results["llmrouter-communities", "query", "gmtrouter"]
    assert new_queries["status"] == "ok" and set(new_queries["evaluations"]) == {"0"}
    new_topics = results["llmrouter-communities", "category", "gmtrouter"]
    assert new_topics["status"] == "ok" and new_topics["test_records"] > 0

    report = (out / "report" / "results.md").read_text()
    assert "gmtrouter bench --data-dir" in report  # the exact command
    assert ok["job"]["data_hash"][:16] in report
    for heading in (
        "## llmrouter-communities",
        "## chatbot-arena",
        "### Known users",
        "pairwise accuracy by k shots",
        "### New queries",
        "### New topics",
        "### Conversations: turns after a known previous turn",
        "## Resources",
    ):
        assert heading in report
    assert "Users with 2 records or fewer are left out: 0 per seed" in report
    assert "best, new queries" in report and "best, new topics" in report  # the summary has every setting
    reference_row = next(line for line in report.splitlines() if line.startswith("| *community posterior"))
    assert reference_row.count("|") == 4  # the router column and k = 0, 2
    assert "| gmtrouter |" in report and "| global-winrate |" in report
    assert "**" in report  # best values in bold
    assert "oracle: the simulator's true utilities" in report
    images = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert any("kshot" in i for i in images) and any("cost" in i for i in images)
    assert any("switch" in i for i in images)
    for image in images:
        assert (out / "report" / image).read_bytes()[:8] == PNG_MAGIC


def test_a_crashing_variant_is_reported_and_the_others_finish(tiny_run: tuple[Path, list[str]]) -> None:
    out, _ = tiny_run
    results = results_of(out)
    for dataset, split in [
        (d, s) for d in ("llmrouter-communities", "chatbot-arena") for s in ("record", "user", "query")
    ] + [("llmrouter-communities", "category")]:
        assert results[dataset, split, "broken"]["status"] == "failed"
        assert "no-such-layer" in results[dataset, split, "broken"]["traceback"]
        assert results[dataset, split, "gmtrouter"]["status"] == "ok"
    report = (out / "report" / "results.md").read_text()
    failed = report[report.index("## Failed jobs") :]
    assert failed.count("| broken | failed |") == 7
    assert "broken (0/1 ok; failed)" in report


def test_rerun_skips_finished_jobs_and_retries_failed_only_when_asked(tiny_run: tuple[Path, list[str]]) -> None:
    out, args = tiny_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    code, stderr = bench(*args)
    assert code == 0, stderr
    assert "21 jobs: 21 finished before, ran 0" in stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == stamps
    code, stderr = bench(*args, "--retry-failed")
    assert code == 0, stderr
    assert "21 jobs: 14 finished before, ran 7 (7 failed)" in stderr
    changed = {p for p, stamp in stamps.items() if p.stat().st_mtime_ns != stamp}
    assert changed == {p for p in stamps if p.name.startswith("broken.")}


def test_a_job_past_its_budget_is_stopped_and_reported(tmp_path: Path, data_dir: Path) -> None:
    endless = "stuck=gmtrouter:steps=100000000,patience=100000000,eval_every=100000000"
    code, stderr = bench(
        "--data-dir", str(data_dir),
        "--datasets", "gsm8k",
        "--users", "10",
        "--records-per-user", "12",
        "--encoder", "hashing-64",
        "--routers", "random",
        "--variant", endless,
        "--seeds", "0",
        "--shots", "0",
        "--timeout", "4",
        "--out", str(tmp_path),
        "--report", str(tmp_path / "results.md"),
    )  # fmt: skip
    assert code == 0, stderr
    results = results_of(tmp_path)
    for split in ("record", "user"):
        assert results["gsm8k", split, "stuck"]["status"] == "timeout"
        assert "budget of 4 s" in results["gsm8k", split, "stuck"]["error"]
        assert results["gsm8k", split, "random"]["status"] == "ok"
    assert "| stuck | timeout |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--datasets", "mt-bench,nope"], ["unknown dataset 'nope'"]),
        (["--routers", "gmtrouter,no-such-router"], ["unknown router or variant 'no-such-router'"]),
        (["--seeds", "0-x"], ["--seeds", "0-4"]),
        (["--seeds", "4-1"], ["--seeds", "backwards"]),
        (["--variant", "odd=gmtrouter:no_such_setting=1"], ["no setting no_such_setting"]),
        (["--datasets", "chatbot-arena"], ["--chatbot-arena PATH"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args: list[str], words: list[str], data_dir: Path, tmp_path: Path) -> None:
    code, stderr = bench("--data-dir", str(data_dir), "--out", str(tmp_path), *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "results").exists()


def test_specs_and_keys() -> None:
    assert parse_int_list("0-2,7", "--seeds") == (0, 1, 2, 7)
    with pytest.raises(GmtError):
        parse_int_list("", "--seeds")
    variant = parse_variant("wide=gmtrouter:hidden=128,layer=sage,multi_turn=false")
    assert variant.router == "gmtrouter"
    assert dict(variant.settings) == {"hidden": 128, "layer": "sage", "multi_turn": False}
    base = Job("gsm8k", "record", 0, "gmtrouter", "gmtrouter", '{"seed": 0}', (0,), 0.2, "abc")
    assert base.key == Job("gsm8k", "record", 0, "other-name", "gmtrouter", '{"seed": 0}', (0,), 0.2, "abc").key
    for changed in (
        Job("gsm8k", "record", 0, "gmtrouter", "gmtrouter", '{"seed": 1}', (0,), 0.2, "abc"),
        Job("gsm8k", "record", 0, "gmtrouter", "gmtrouter", '{"seed": 0}', (0,), 0.2, "abd"),
        Job("gsm8k", "record", 0, "gmtrouter", "gmtrouter", '{"seed": 0}', (0,), 0.2, "abc", version="9"),
    ):
        assert changed.key != base.key


def test_t_interval() -> None:
    found = estimate([1.0, 2.0, 3.0])
    assert found is not None and found.n == 3
    assert found.mean == pytest.approx(2.0)
    assert found.half == pytest.approx(4.302653 / 3**0.5, rel=1e-5)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    single = estimate([0.7, float("nan")])
    assert single is not None and single.half is None and single.format() == "0.700"
    assert estimate([]) is None


def test_tradeoff_reads_the_choice_from_the_record() -> None:
    records = [
        make_record("u", "q1", {"cheap": 1.0, "dear": 0.0}),
        make_record("u", "q2", {"dear": 1.0, "cheap": 0.0}),
        make_record("u", "q3", {"cheap": 0.5, "dear": 0.5}),
    ]
    assert [win_share(records[2], 0), win_share(records[0], 1)] == [0.5, 0.0]
    scores = [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # always prefers "dear", by one logit
    expected = {"cheap": 1.0, "dear": 10.0}
    free, costly = tradeoff_curve(records, [list(map(float, s)) for s in scores], expected, weights=[0.0, 1.0])
    assert free["share"] == {"dear": 1.0} and free["win_rate"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert free["cost"] == pytest.approx(10.0)
    assert costly["share"] == {"cheap": 1.0}  # ln(10) > 1 logit
    assert costly["win_rate"] == pytest.approx((1 + 0 + 0.5) / 3) and costly["cost"] == pytest.approx(1.0)
    single = single_llm_points(records, expected)
    assert single["cheap"]["win_rate"] == pytest.approx(0.5) and single["cheap"]["n"] == 3


def test_plan_leaves_out_what_cannot_differ_or_is_slow_and_runs_ablations_on_their_seeds() -> None:
    config = BenchConfig(
        datasets=("mmlu", "gsm8k"),
        variants=(Variant("gmtrouter", "gmtrouter"), *ABLATIONS),
        seeds=(0, 1),
        shots=(0, 5),
        data_dir=Path("."),
        out=Path("."),
        ablation_seeds=(0,),
    )
    jobs, skipped = build_plan(config, {"mmlu": "a", "gsm8k": "b"}, {"mmlu": False, "gsm8k": True})
    assert [(s.dataset, s.variant) for s in skipped] == [
        ("mmlu", "gmtrouter-no-text"),
        ("mmlu", "gmtrouter-full-graph"),
    ]
    per_seed = {seed: sum(j.seed == seed for j in jobs) for seed in (0, 1)}
    # gmtrouter in 3 settings on both datasets; ablations (4 on mmlu, 6 on gsm8k) on seed 0, known and new users
    assert per_seed == {0: 2 * 3 + (4 + 6) * 2, 1: 2 * 3}
    assert {j.split for j in jobs if j.variant != "gmtrouter"} == {"record", "user"}
    assert {j.shots for j in jobs if j.split in ("record", "query")} == {(0,)}
    assert {j.shots for j in jobs if j.split == "user"} == {(0, 5)}
    assert len({j.key for j in jobs}) == len(jobs)
    everything, _ = build_plan(
        dataclasses.replace(config, all_jobs=True), {"mmlu": "a", "gsm8k": "b"}, {"mmlu": False, "gsm8k": True}
    )
    assert len(everything) == len(jobs) + 2  # the full-graph ablation on mmlu, known and new users


def test_routing_each_turn_alone_runs_only_where_users_mind_a_switch() -> None:
    config = BenchConfig(
        datasets=("gsm8k", "llmrouter-switch"),
        variants=(Variant("sticky", "sticky"), TURN_ALONE),
        seeds=(0,),
        shots=(0,),
        data_dir=Path("."),
        out=Path("."),
    )
    jobs, skipped = build_plan(
        config, {"gsm8k": "a", "llmrouter-switch": "b"}, {"gsm8k": True, "llmrouter-switch": False}
    )
    assert [(s.dataset, s.variant) for s in skipped] == [("gsm8k", "gmtrouter-turn-alone")]
    assert {(j.dataset, j.variant) for j in jobs} == {
        ("gsm8k", "sticky"),
        ("llmrouter-switch", "sticky"),
        ("llmrouter-switch", "gmtrouter-turn-alone"),
    }
    assert {j.settings["conversation"] for j in jobs if j.variant == TURN_ALONE.name} == {False}


def test_the_plan_has_the_community_worlds_and_new_topics_where_there_are_topics() -> None:
    assert {"llmrouter-communities", "gsm8k-communities"} <= set(DEFAULT_DATASETS)
    assert {SIM_VARIANTS[name].communities for name in ("llmrouter-communities", "gsm8k-communities")} == {4}
    config = BenchConfig(
        datasets=("mt-bench", "gsm8k-communities", "llmrouter-switch"),
        variants=(Variant("gmtrouter", "gmtrouter"), ABLATIONS[0]),
        seeds=(0,),
        shots=(0, 5),
        data_dir=Path("."),
        out=Path("."),
    )
    names = {"mt-bench": "a", "gsm8k-communities": "b", "llmrouter-switch": "c"}
    jobs, _ = build_plan(config, names, dict.fromkeys(names, True), {"mt-bench": 8, "gsm8k-communities": 1})
    topics = [j for j in jobs if j.split == "category"]
    assert [(j.dataset, j.variant, j.shots) for j in topics] == [("mt-bench", "gmtrouter", (0,))]  # no ablation
    assert {j.split for j in jobs if j.dataset == "gsm8k-communities"} == {"record", "user", "query"}
    assert {j.split for j in jobs if j.dataset == "llmrouter-switch"} == {"record"}
