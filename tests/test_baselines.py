"""Baseline routers: the levels they reach on MT-Bench, what each one can and cannot learn, saving, settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch_geometric.nn import NNConv

from gmtrouter.baselines.base import RecordTable
from gmtrouter.baselines.gnn import LinearEdgeConv
from gmtrouter.baselines.winrate import global_strengths
from gmtrouter.cli import main
from gmtrouter.data.loaders import prepare
from gmtrouter.data.schema import Interaction, write_records
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.registry.checkpoint import load_router, save_router
from gmtrouter.registry.routers import make_router, router_classes
from gmtrouter.utils.errors import GmtError
from tests.conftest import make_record

BASELINES = [
    "random",
    "global-winrate",
    "user-winrate",
    "query-winrate",
    "user-query-winrate",
    "knn",
    "mlp",
    "mf",
    "graphrouter",
    "personalized-mlp",
    "personalizedrouter",
]
QUERY_AWARE = ["knn", "mlp", "mf", "graphrouter"]
PERSONALIZED = ["user-winrate", "user-query-winrate", "personalized-mlp", "personalizedrouter"]
FAST = {  # small step counts and the hashing encoder where the encoder is not the point
    "knn": {"encoder": "hashing-64"},
    "query-winrate": {"encoder": "hashing-64"},
    "user-query-winrate": {"encoder": "hashing-64"},
    "mlp": {"encoder": "hashing-64", "max_epochs": 60, "grid": {"hidden": 128, "dropout": 0.1, "weight_decay": 0.01}},
    "mf": {"encoder": "hashing-64", "max_epochs": 60, "grid": {"dim": 16, "weight_decay": 0.01}},
    "graphrouter": {"encoder": "hashing-64", "steps": 80, "grid": {"hidden": 32, "dropout": 0.1}},
    "personalized-mlp": {
        "encoder": "hashing-64",
        "max_epochs": 60,
        "grid": {"user_dim": 16, "dropout": 0.1, "weight_decay": 0.01},
    },
    "personalizedrouter": {"encoder": "hashing-64", "steps": 80, "grid": {"hidden": 32, "dropout": 0.1}},
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These networks are tiny: one thread is faster than several fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fitted(name: str, train: list[Interaction], **settings) -> object:
    return make_router(name, **{**FAST.get(name, {}), **settings}).fit(train)


def accuracy(router, history: list[Interaction], test: list[Interaction]) -> float:
    return float(evaluate_router(router, history, test)["accuracy"])


# ---------------------------------------------------------------------------------------------- MT-Bench


@pytest.fixture(scope="module")
def mt_bench(data_dir: Path) -> tuple[list[Interaction], list[Interaction]]:
    records = prepare("mt-bench", data_dir / "mt_bench")
    return split_records(records, "record", 0.2, 0)


def test_every_baseline_is_registered() -> None:
    assert set(BASELINES) <= set(router_classes())


def test_global_winrate_on_mt_bench(mt_bench) -> None:
    train, test = mt_bench
    router = fitted("global-winrate", train)
    result = evaluate_router(router, train, test)
    assert 0.70 <= result["accuracy"] <= 0.85
    assert result["auc"] > 0.75
    order = [router.llms_[i] for i in np.argsort(-router.strengths_)]
    assert order[0] == "gpt-4" and order[-1] == "llama-13b"
    assert router.training_log_["params"]["l2"] in router.GRID["l2"]  # tuned on the held-out share


def test_random_is_near_half_and_repeatable(mt_bench) -> None:
    train, test = mt_bench
    router = fitted("random", train)
    assert 0.42 <= accuracy(router, train, test) <= 0.58
    context = router.context(train)
    assert all(
        np.array_equal(a, b) for a, b in zip(context.score_records(test), context.score_records(test), strict=False)
    )
    other = fitted("random", train, seed=1).context(train)
    assert not np.array_equal(context.score("u", "q", router.llms_), other.score("u", "q", router.llms_))


def test_bradley_terry_equals_sklearn_logistic_regression(mt_bench) -> None:
    """Global strengths are L2 logistic regression on LLM-difference features, a tie half a win each way."""
    table = RecordTable.build(mt_bench[0], sorted({m for r in mt_bench[0] for m in r.llms}))
    n = len({*table.pair_first, *table.pair_second})
    x = np.zeros((len(table.pair_target), n))
    rows = np.arange(len(x))
    x[rows, table.pair_first] += 1
    x[rows, table.pair_second] -= 1
    tie = table.pair_target == 0.5
    features = np.vstack([x, x[tie]])
    labels = np.concatenate([table.pair_target > 0.5, np.zeros(tie.sum(), bool)]).astype(int)
    labels[np.flatnonzero(tie)] = 1
    weights = np.concatenate([np.where(tie, 0.5, 1.0), np.full(tie.sum(), 0.5)])
    l2 = 0.5
    reference = LogisticRegression(C=1 / l2, fit_intercept=False, tol=1e-10, max_iter=10_000)
    reference.fit(features, labels, sample_weight=weights)
    np.testing.assert_allclose(global_strengths(table, n, l2), reference.coef_[0], atol=1e-4)


def test_user_winrate_adapts_from_history_without_refit(mt_bench) -> None:
    """A prior of 4 comparisons is fixed here: MT-Bench's users mostly agree, so tuning picks a strong one."""
    train, _ = mt_bench
    router = fitted("user-winrate", train, grid={"prior": 4.0})
    context = router.context(train)
    llms = router.llms_
    assert int(np.argmax(context.score("contrarian", "Tell me a joke", llms))) == llms.index("gpt-4")
    history = [
        make_record("contrarian", f"question {i}", {"llama-13b": 1.0, other: 0.0}, conversation=f"contrarian/{i}")
        for i, other in enumerate([m for m in llms if m != "llama-13b"] * 6)
    ]
    context.observe(history)
    assert int(np.argmax(context.score("contrarian", "Tell me a joke", llms))) == llms.index("llama-13b")
    context.forget("contrarian")
    assert int(np.argmax(context.score("contrarian", "Tell me a joke", llms))) == llms.index("gpt-4")


# ---------------------------------------------------------------------------------------------- small worlds

COOKING = ["recipe", "bake", "oven", "flour", "soup", "grill", "spice", "dough", "butter", "onion", "garlic", "roast"]
CODING = [
    "python",
    "function",
    "compile",
    "bug",
    "loop",
    "variable",
    "class",
    "debug",
    "array",
    "string",
    "module",
    "pointer",
]


def topic_records(n: int, seed: int, tag: str) -> list[Interaction]:
    """The chef wins cooking questions, the coder wins coding ones, the generalist sits between; any user."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        cooking = i % 2 == 0
        query = " ".join(rng.choice(COOKING if cooking else CODING, 4, replace=False))
        quality = {"chef": 2.0 if cooking else 0.0, "coder": 0.0 if cooking else 2.0, "generalist": 1.0}
        shown = [str(m) for m in rng.permutation(list(quality))[:2]]
        ratings = {m: quality[m] for m in shown}
        records.append(make_record(f"user{i % 5}", query, ratings, conversation=f"{tag}/{i}"))
    return records


def taste_records(users: list[str], per_user: int, seed: int, tag: str) -> list[Interaction]:
    """Same queries for everyone; users named a* prefer alpha, b* prefer beta; gamma always loses.

    Which LLMs a user is shown says nothing of their taste (gamma meets alpha and beta alike): only the
    ratings do.
    """
    rng = np.random.default_rng(seed)
    queries = [f"please help with task number {k}" for k in range(8)]
    records = []
    for user in users:
        for i in range(per_user):
            favourite, rival = ("alpha", "beta") if user.startswith("a") else ("beta", "alpha")
            shown = [favourite, rival] if i % 3 else [str(rng.choice(["alpha", "beta"])), "gamma"]
            order = rng.permutation(2)
            ratings = {shown[k]: (1.0 if shown[k] == favourite else 0.0) for k in order}
            records.append(make_record(user, str(rng.choice(queries)), ratings, conversation=f"{tag}/{user}/{i}"))
    return records


@pytest.fixture(scope="module")
def topics() -> tuple[list[Interaction], list[Interaction]]:
    return topic_records(200, seed=0, tag="train"), topic_records(60, seed=1, tag="test")


@pytest.fixture(scope="module")
def tastes() -> dict[str, list[Interaction]]:
    known = [f"a{k}" for k in range(5)] + [f"b{k}" for k in range(5)]
    records = taste_records(known, 24, seed=0, tag="known")
    train, test = split_records(records, "record", 0.25, 0)
    newcomers = taste_records(["a-new", "b-new"], 18, seed=1, tag="new")
    shots = [r for r in newcomers if r.conversation.split("/")[-1] in {str(i) for i in range(8)}]
    later = [r for r in newcomers if r not in shots]
    return {"train": train, "test": test, "shots": shots, "later": later}


@pytest.fixture(scope="module")
def query_routers(topics) -> dict[str, object]:
    return {name: fitted(name, topics[0]) for name in QUERY_AWARE}


@pytest.fixture(scope="module")
def user_routers(tastes) -> dict[str, object]:
    return {name: fitted(name, tastes["train"]) for name in PERSONALIZED}


@pytest.mark.parametrize("name", QUERY_AWARE)
def test_query_aware_routers_learn_the_topic(name, topics, query_routers) -> None:
    """New query texts (unseen word combinations): the topic decides, and only a query-aware router sees it."""
    train, test = topics
    assert accuracy(query_routers[name], train, test) >= 0.9


def test_global_winrate_cannot_learn_the_topic(topics) -> None:
    train, test = topics
    assert accuracy(fitted("global-winrate", train), train, test) <= 0.7


@pytest.mark.parametrize("name", PERSONALIZED)
def test_personalized_routers_learn_the_user(name, tastes, user_routers) -> None:
    """Opposite tastes on the same queries: known users' held-out records, and new users from 8 shots."""
    router = user_routers[name]
    assert accuracy(router, tastes["train"], tastes["test"]) >= 0.9
    assert accuracy(router, tastes["train"] + tastes["shots"], tastes["later"]) >= 0.9


@pytest.mark.parametrize("name", ["global-winrate", "mlp"])
def test_routers_without_users_cannot_learn_the_user(name, tastes) -> None:
    router = fitted(name, tastes["train"])
    rivals = [r for r in tastes["test"] if set(r.llms) == {"alpha", "beta"}]
    assert accuracy(router, tastes["train"], rivals) <= 0.75


def test_personalized_mlp_gives_new_users_the_shared_embedding(tastes, user_routers) -> None:
    router = user_routers["personalized-mlp"]
    assert "a-new" not in router.users_
    network_only = router.net_scores(["a-new", "b-new"], ["please help with task number 1"] * 2)
    np.testing.assert_array_equal(network_only[0], network_only[1])


def test_linear_edge_conv_equals_nnconv() -> None:
    torch.manual_seed(0)
    lean = LinearEdgeConv(16, 8, edge_dim=5)
    reference = NNConv(16, 8, torch.nn.Linear(5, 16 * 8), aggr="mean")
    reference.load_state_dict(lean.state_dict())
    x, edges, attr = torch.randn(30, 16), torch.randint(0, 30, (2, 100)), torch.randn(100, 5)
    torch.testing.assert_close(lean(x, edges, attr), reference(x, edges, attr), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- saving


@pytest.mark.parametrize("name", BASELINES)
def test_checkpoint_round_trip(name, tmp_path, topics, tastes, query_routers, user_routers) -> None:
    """Scores equal after save and load, for known users, users known only from history, and new queries."""
    if name in query_routers:
        router, history, probe = query_routers[name], topics[0], topics[1][:20]
    else:
        router = user_routers.get(name) or fitted(name, tastes["train"])
        history, probe = tastes["train"] + tastes["shots"], tastes["later"][:10] + tastes["test"][:10]
    save_router(router, tmp_path / name, history)
    loaded, loaded_history = load_router(tmp_path / name)
    assert loaded.params_ == router.params_ and loaded.llms_ == router.llms_
    before, after = router.context(history), loaded.context(loaded_history)
    for a, b in zip(before.score_records(probe), after.score_records(probe), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    request = (probe[0].user, probe[0].query, list(reversed(router.llms_)))
    np.testing.assert_allclose(before.score(*request), after.score(*request), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- settings, CLI


def test_unknown_setting_is_refused_clearly() -> None:
    with pytest.raises(GmtError, match=r"router 'knn' has no setting 'neighbours'; its settings are: .*grid"):
        make_router("knn", neighbours=3)
    with pytest.raises(GmtError, match=r"router 'mf' tunes no 'hidden'; its grid has: dim, weight_decay"):
        make_router("mf", encoder="hashing-64", grid={"hidden": [8]}).fit(topic_records(20, 0, "x"))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process (importing torch anew per command would take most of the test)."""
    monkeypatch.setattr(sys, "argv", ["gmtrouter", *args])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_train_and_eval_a_baseline(tmp_path, topics, monkeypatch, capsys) -> None:
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_records(train, topics[0])
    write_records(test, topics[1])
    model = str(tmp_path / "knn")
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--data",
        str(train),
        "-o",
        model,
        "--router",
        "knn",
        "--set",
        "encoder=hashing-64",
        "--set",
        'grid={"k": [5, 10]}',
    )
    assert code == 0, err
    code, out, err = cli(monkeypatch, capsys, "eval", "--model", model, "--data", str(test), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["router"] == "knn" and payload["accuracy"] >= 0.9
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--data",
        str(train),
        "-o",
        str(tmp_path / "bad"),
        "--router",
        "knn",
        "--set",
        "k=5",
    )
    assert code == 2 and err.startswith("error: router 'knn' has no setting 'k'") and len(err.splitlines()) == 1
    prices = str(Path(__file__).parent / "fixtures" / "prices")
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--data",
        str(train),
        "-o",
        str(tmp_path / "bad"),
        "--router",
        "knn",
        "--llm-info",
        prices,
    )
    assert code == 2 and "router 'knn' does not read LLM descriptions" in err
    assert not (tmp_path / "bad").exists()
