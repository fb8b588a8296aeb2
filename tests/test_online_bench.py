"""`gmtrouter bench --online`: the world, the references, the simple policies, and the command end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gmtrouter.bench.online.loop import run_policy
from gmtrouter.bench.online.metrics import oracle_choices, run_metrics
from gmtrouter.bench.online.policies import BestSingle, LinUCB, Oracle, Policy, WinRate, best_single_llm
from gmtrouter.bench.online.world import Stream, World, WorldConfig, build_world, expected_utilities
from gmtrouter.data.loaders import prepare
from gmtrouter.data.simulate import utilities
from gmtrouter.text.encoders import get_encoder
from tests.test_bench import PNG_MAGIC, bench

SMALL = WorldConfig(users=12, rounds=1200)


@pytest.fixture(scope="module")
def llmrouter(data_dir: Path) -> tuple[list, object]:
    from gmtrouter.data.sim_features import build_features

    rows = prepare("llmrouter", data_dir / "llmrouter")
    return rows, build_features(rows)  # type: ignore[arg-type]


def world(llmrouter: tuple, seed: int = 0, change: str | None = None, config: WorldConfig = SMALL) -> World:
    rows, tables = llmrouter
    return build_world(rows, tables, config, seed, change)


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def choose(self, t: int, candidates: np.ndarray) -> int:
        return int(self.rng.choice(candidates))


def test_a_world_is_fixed_by_its_seed(llmrouter: tuple) -> None:
    a, b, other = world(llmrouter, 3, "drift"), world(llmrouter, 3, "drift"), world(llmrouter, 4, "drift")
    for name in ("user", "row", "active"):
        assert np.array_equal(getattr(a.stream, name), getattr(b.stream, name))
    for name in ("utility", "expected", "thumbs", "ratings"):
        assert np.array_equal(getattr(a.truth, name), getattr(b.truth, name))
    assert not np.array_equal(a.stream.row, other.stream.row)
    assert not np.array_equal(a.truth.thumbs, other.truth.thumbs)


def test_the_oracle_knows_the_mean_utility_of_the_task_not_the_answer(llmrouter: tuple) -> None:
    """Expected utility of (user, task, LLM) = the mean of the true utilities over the task's queries."""
    from gmtrouter.data.sim_users import draw_users, parse_archetypes

    _, tables = llmrouter
    users = draw_users(3, len(tables.llms), int(tables.categories.max()) + 1, parse_archetypes(None),
                       np.random.default_rng(0), 0.5, 0.5, 0.5)  # fmt: skip
    expected = expected_utilities(tables, users, realism=0.5)
    task = 2
    members = np.flatnonzero(tables.categories == task)
    every = np.broadcast_to(np.arange(len(tables.llms)), (len(members), len(tables.llms)))
    for user in range(3):
        who = np.full(len(members), user)
        true = utilities(tables, users, who, members, every, 0.5, np.full(len(members), task))
        assert np.allclose(expected[user, task], true.mean(axis=0))


def test_the_oracle_is_at_least_as_good_as_every_policy_in_expectation(llmrouter: tuple) -> None:
    w = world(llmrouter, 1, "newcomer")
    embeddings = np.random.default_rng(0).standard_normal((len(w.stream.queries), 8))
    best = oracle_choices(w)
    rounds = np.arange(w.stream.rounds)
    for policy in (WinRate(0), LinUCB(embeddings, 0), BestSingle(w.truth), RandomPolicy(0)):
        choices = run_policy(w, policy, "thumbs").choices
        assert (w.truth.expected[rounds, best] >= w.truth.expected[rounds, choices] - 1e-12).all(), policy.name
    assert (
        w.truth.utility[rounds, best].mean()
        > w.truth.utility[rounds, run_policy(w, RandomPolicy(1), "thumbs").choices].mean()
    )


def test_the_best_single_llm_is_the_best_llm_over_all_rounds(llmrouter: tuple) -> None:
    w = world(llmrouter, 2, "newcomer")
    best = best_single_llm(w.stream, w.truth)
    always = np.flatnonzero(w.stream.active.all(axis=0))
    assert w.newcomer not in always  # a newcomer is not there in every round, so it cannot be the one LLM
    means = w.truth.utility[:, always].mean(axis=0)
    assert w.truth.utility[:, best].mean() == pytest.approx(means.max())


def test_gap_closed_is_one_for_the_oracle_and_zero_for_the_best_single_llm(llmrouter: tuple) -> None:
    w = world(llmrouter, 0, None, WorldConfig(users=12, rounds=2400))
    oracle = run_metrics(w, run_policy(w, Oracle(w.truth), "thumbs").choices)
    single = run_metrics(w, run_policy(w, BestSingle(w.truth), "thumbs").choices)
    for window in ("last_1000", "last_500", "at_2000"):
        assert oracle[f"gap_closed.{window}"] == pytest.approx(1.0)
        assert single[f"gap_closed.{window}"] == pytest.approx(0.0)
    assert oracle["regret"] == 0.0 < single["regret"]


def _stream(queries: list[str], rounds: int, llms: int, rows: np.ndarray | None = None) -> Stream:
    return Stream(
        llms=[f"llm-{j}" for j in range(llms)],
        user_names=["u0", "u1"],
        queries=queries,
        user=np.zeros(rounds, dtype=int),
        row=rows if rows is not None else np.zeros(rounds, dtype=int),
        active=np.ones((rounds, llms), dtype=bool),
    )


def test_the_win_rate_rule_learns_a_user_who_only_likes_one_llm() -> None:
    stream, liked = _stream(["a question"], 200, 4), 2
    policy = WinRate(seed=0)
    policy.start(stream, [])
    chosen = []
    for t in range(stream.rounds):
        llm = policy.choose(t, stream.candidates(t))
        policy.learn(t, llm, 1.0 if llm == liked else 0.0)
        chosen.append(llm)
    assert all(llm == liked for llm in chosen[-50:])


def test_linucb_prefers_the_llm_that_is_better_on_a_kind_of_query() -> None:
    maths = [f"What is {a} plus {a + 7}? Show the sum." for a in range(20)]
    poems = [f"Write a short poem about the colour number {a} at dusk." for a in range(20)]
    queries = maths + poems
    embeddings = get_encoder("hashing-64").encode(queries)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(queries), size=600)
    stream = _stream(queries, len(rows), 3, rows)
    good_at = {0: 0, 1: 1}  # maths -> llm-0, poems -> llm-1; llm-2 is never good
    policy = LinUCB(embeddings, seed=0)
    policy.start(stream, [])
    late: dict[int, list[int]] = {0: [], 1: []}
    for t, row in enumerate(rows):
        kind = int(row >= len(maths))
        llm = policy.choose(t, stream.candidates(t))
        policy.learn(t, llm, float(rng.random() < (0.85 if llm == good_at[kind] else 0.15)))
        if t >= 400:
            late[kind].append(llm)
    for kind, llm in good_at.items():
        assert np.mean(np.asarray(late[kind]) == llm) > 0.7, (kind, late[kind])


def test_the_command_writes_the_report_and_its_plots(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "docs" / "online.md"
    args = ["--online", "--data-dir", str(data_dir), "--out", str(tmp_path / "runs"), "--report", str(report)]
    args += ["--matrices", "gsm8k", "--scenarios", "cold,new-llm", "--rounds", "300", "--users", "6"]
    args += ["--policies", "win-rate,linucb,best-single,oracle", "--seeds", "0,1", "--encoder", "hashing-64"]
    code, stderr = bench(*args, "--workers", "1", "--no-http")
    assert code == 0, stderr
    assert "stopped: every job finished" in stderr.splitlines()[-1]
    text = report.read_text()
    assert "## cold" in text and "## new-llm" in text and "| win-rate | 2 |" in text
    figures = sorted((report.parent / "img").glob("online-*.png"))
    assert [f.name for f in figures] == [
        "online-cold-gap.png",
        "online-cold-regret.png",
        "online-new-llm-gap.png",
        "online-new-llm-regret.png",
    ]
    assert all(f.read_bytes().startswith(PNG_MAGIC) for f in figures)
    again, stderr = bench(*args, "--workers", "1", "--no-http")  # a rerun reuses every finished job
    assert again == 0 and "16 finished before, 0 to run" in stderr
    report.unlink()
    more = list(args)  # a seed more, not run: the report shows what is finished, and nothing runs
    more[more.index("--seeds") + 1] = "0,1,2"
    only, stderr = bench(*more, "--workers", "1", "--no-http", "--report-only")
    assert only == 0 and "24 jobs, 16 finished; the rest is not run" in stderr, stderr
    assert "| win-rate | 2 |" in report.read_text()
    assert not (tmp_path / "runs" / "online" / "results" / "gsm8k" / "cold" / "win-rate" / "seed2.json").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--online", "--policies", "win-rate,nope"], ["--policies", "nope", "oracle"]),
        (["--online", "--scenarios", "cold,sunny"], ["--scenarios", "sunny"]),
        (["--online", "--rounds", "1"], ["--rounds"]),
        (["--online", "--quick"], ["--quick", "online"]),
        (["--scenarios", "cold"], ["--scenarios", "--online"]),
    ],
)
def test_bad_online_input_gives_one_line_and_exit_2(args: list[str], words: list[str], tmp_path: Path) -> None:
    code, stderr = bench("--out", str(tmp_path), *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "online").exists()


@pytest.mark.slow
def test_gmtrouter_routes_a_warm_world_through_the_python_api(data_dir: Path, tmp_path: Path) -> None:
    """From a model trained on other users' votes: every route is a candidate and every thumb is observed; the
    parts of the API a version lacks are reported as unavailable, not run as something else."""
    from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy, api_capabilities
    from gmtrouter.bench.online.scenarios import offline_records
    from gmtrouter.data.sim_features import build_features
    from gmtrouter.registry.checkpoint import save_router
    from gmtrouter.registry.routers import make_router

    rows = prepare("gsm8k", data_dir / "gsm8k")
    config = WorldConfig(users=4, rounds=40)
    logs = offline_records(rows, config)[:400]  # type: ignore[arg-type]
    model = make_router("gmtrouter", encoder="hashing-64", hidden=32, head_dim=32, residual=False, progress=False)
    save_router(model.fit(logs), tmp_path / "model", logs)
    w = build_world(rows, build_features(rows), config, 0, None)  # type: ignore[arg-type]
    policy = GmtrouterPolicy("gmtrouter-greedy", explore=False, seed=0, model_dir=tmp_path / "model")
    outcome = run_policy(w, policy, "thumbs")
    assert outcome.status == "ok" and len(outcome.choices) == 40
    assert w.stream.active[np.arange(40), outcome.choices].all()
    assert len(policy.router.context.history) == len(logs) + 40  # type: ignore[attr-defined]
    cold = run_policy(w, GmtrouterPolicy("gmtrouter-greedy", explore=False, seed=0), "thumbs")
    assert cold.status == ("ok" if "cold" in api_capabilities() else "unavailable")
