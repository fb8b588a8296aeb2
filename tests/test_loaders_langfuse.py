"""`data prepare langfuse` on an export written from the Langfuse SDK's own classes (tests/fixtures/langfuse/):
valid records, one-line refusals naming the trace, the server path's parsing, and a model that routes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langfuse.api import GetScoresResponse, Traces
from langfuse.api.core.pydantic_utilities import parse_obj_as
from langfuse.api.legacy.observations_v1.types import ObservationsViews

from gmtrouter.data.loaders import langfuse, prepare
from gmtrouter.data.schema import read_records
from gmtrouter.utils.errors import GmtError
from tests.cli_support import assert_one_line_error, in_child
from tests.conftest import FIXTURES
from tests.fixtures.langfuse.make_export import MODELS, build, generation, page, score

EXPORT = FIXTURES / "langfuse" / "export"
THUMBS = ["--score-name", "user-feedback", "--score-name", "thumbs"]


@pytest.fixture(scope="module")
def records() -> list:
    return prepare("langfuse", EXPORT, ["user-feedback", "thumbs"])


def test_the_export_becomes_valid_records(tmp_path: Path) -> None:
    output = tmp_path / "langfuse.jsonl"
    result = in_child("data", "prepare", "langfuse", "--data-dir", str(EXPORT), *THUMBS, "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert "wrote 68 records" in result.stderr
    assert in_child("data", "validate", str(output)).returncode == 0
    assert len(read_records(output)) == 68


def test_one_record_per_scored_generation(records) -> None:
    by_generation = {r.meta["generation"]: r for r in records}
    assert len(by_generation) == len(records) == 68
    assert "gen-quiet" not in by_generation and "gen-7-2-2" not in by_generation  # unscored: context only
    assert {r.user for r in records} == {f"user-{u}" for u in range(8)}
    # the agent trace: the trace's thumbs rate its last generation, after the planner's turn
    agent = by_generation["gen-answer"]
    assert (agent.responses[0].llm, agent.responses[0].rating, agent.previous_llm) == (MODELS[1], 1.0, "gpt-4o-mini")
    assert "gen-plan" not in by_generation
    # two models on one question, each answer scored: two turns of the session, in time order
    duel = [by_generation["gen-duel-0"], by_generation["gen-duel-1"]]
    assert [(r.turn, r.responses[0].llm, r.responses[0].rating) for r in duel] == [
        (1, MODELS[0], 0.0),
        (2, MODELS[1], 1.0),
    ]
    assert duel[1].previous_llm == MODELS[0]
    # a trace without a session is a conversation of its own; a changed thumb counts as its latest
    assert by_generation["gen-lone"].conversation == "langfuse/trace-lone"
    first = next(s for s in build()["scores"] if s.id == "s-trace-4-0-0")
    assert by_generation["gen-4-0-0"].responses[0].rating == float(not first.value)
    # sessions count turns up from 1 in time order, and the answer, tokens and cost come along
    turns = Counter((r.conversation, r.turn) for r in records)
    assert max(turns.values()) == 1
    lone = by_generation["gen-lone"].responses[0]
    assert (lone.text, lone.tokens, lone.cost) == ("Use reversed().", 4, 0.00013)
    assert by_generation["gen-lone"].query == "How do I reverse a list in Python?"  # the user message, not the system's


def write_export(folder: Path, objects: dict[str, list[Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, items in objects.items():
        (folder / f"{kind}.json").write_text(json.dumps(page(items)))
    return folder


def broken(case: str) -> dict[str, list[Any]]:
    """The fixture with one broken trace, made from the same SDK classes."""
    objects = build()
    traces, observations, scores = objects["traces"], objects["observations"], objects["scores"]
    if case == "no user":
        traces[5] = traces[5].model_copy(update={"user_id": None})
    elif case == "no model":
        observations[5] = observations[5].model_copy(update={"model": None})
    elif case == "not a thumb":
        scores[1] = score("CATEGORICAL", "s-meh", scores[1].trace_id, "thumbs", "meh", scores[1].timestamp)
    elif case == "unknown trace":
        observations.append(generation("gen-x", "trace-gone", traces[0].timestamp, MODELS[0], "q", "a"))
    return objects


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no user", ["trace 'trace-0-1-2'", "no userId"]),
        ("no model", ["trace 'trace-0-1-2'", "names no model"]),
        ("not a thumb", ["trace 'trace-0-0-1'", "'meh'", "--score-name"]),
        ("unknown trace", ["'gen-x'", "'trace-gone'"]),
    ],
)
def test_a_broken_trace_is_refused_in_one_line(tmp_path: Path, case: str, words: list[str]) -> None:
    folder = write_export(tmp_path / "export", broken(case))
    output = tmp_path / "out.jsonl"
    result = in_child("data", "prepare", "langfuse", "--data-dir", str(folder), *THUMBS, "-o", str(output))
    assert result.returncode == 2
    assert_one_line_error(result, *words)
    assert not output.exists()


def test_scores_that_are_no_ratings_are_named(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    result = in_child("data", "prepare", "langfuse", "--data-dir", str(EXPORT), "-o", str(output))
    assert_one_line_error(result, "comment, helpfulness, thumbs, user-feedback", "--score-name")
    result = in_child(
        "data", "prepare", "langfuse", "--data-dir", str(EXPORT), "--score-name", "comment", "-o", str(output)
    )
    assert_one_line_error(result, "trace 'trace-0-0-1'", "score 's-comment'", "'TEXT'")
    result = in_child("data", "prepare", "mt-bench", "--data-dir", str(EXPORT), "--score-name", "x", "-o", str(output))
    assert_one_line_error(result, "--score-name", "langfuse")
    assert not output.exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.text(min_size=1, max_size=12).filter(lambda k: k not in ("NUMERIC", "BOOLEAN", "CATEGORICAL")))
def test_a_score_of_an_unknown_type_is_refused_naming_it(kind: str) -> None:
    export = langfuse.Export(source="export")
    export.add("traces", [{"id": "t", "userId": "u", "timestamp": "2025-03-01T09:00:00Z"}], "export")
    export.add(
        "observations",
        [generation("g", "t", build()["traces"][0].timestamp, "m", "q?", "a").model_dump(mode="json", by_alias=True)],
        "export",
    )
    export.add(
        "scores",
        [
            {
                "id": "s",
                "traceId": "t",
                "name": "thumbs",
                "dataType": kind,
                "value": 1,
                "timestamp": "2025-03-01T09:00:01Z",
            }
        ],
        "export",
    )
    with pytest.raises(GmtError) as refused:
        langfuse.records_of(export, ["thumbs"])
    assert "trace 't': score 's'" in str(refused.value) and repr(kind) in str(refused.value)
    assert "\n" not in str(refused.value)


class _Listing:
    """One Langfuse listing served page by page from the fixture, parsed into the SDK's own response class."""

    def __init__(self, cls: type, items: list[dict[str, Any]], per_page: int) -> None:
        self.cls, self.items, self.per_page = cls, items, per_page

    def __call__(self, page: int, limit: int, **filters: Any) -> Any:
        pages = -(-len(self.items) // self.per_page)
        data = self.items[(page - 1) * self.per_page : page * self.per_page]
        meta = {"page": page, "limit": limit, "totalItems": len(self.items), "totalPages": pages}
        return parse_obj_as(self.cls, {"data": data, "meta": meta})


def test_from_langfuse_reads_the_same_records_through_the_sdk(records) -> None:
    """The server path's paging and parsing, on the fixture as the SDK's clients return it (three pages each)."""
    files = {kind: json.loads((EXPORT / f"{kind}.json").read_text())["data"] for kind in langfuse.KINDS}

    class Api:  # the three listings `fetch_export` calls, with the SDK's response classes
        class trace:
            list = _Listing(Traces, files["traces"], 30)

        class legacy:
            class observations_v1:
                get_many = _Listing(ObservationsViews, files["observations"], 30)

        class scores:
            get_many = _Listing(GetScoresResponse, files["scores"], 30)

    export = langfuse.fetch_export(Api, "https://langfuse.example")
    assert [len(export.traces), len(export.observations), len(export.scores)] == [len(v) for v in files.values()]
    assert langfuse.records_of(export, ["user-feedback", "thumbs"]) == records


@pytest.mark.slow
def test_a_model_trained_on_the_export_routes_each_user_to_their_favourite(records, tmp_path: Path) -> None:
    """The fixture's users thumb up their favourite model (user-u: MODELS[u % 3]) most of the time: asked
    something none of them has rated yet, each is routed to it (on a question a user rated, their own verdict on
    it counts as well)."""
    import torch

    from gmtrouter.api import Router
    from gmtrouter.registry.checkpoint import save_router
    from gmtrouter.registry.routers import make_router

    torch.set_num_threads(1)
    model = make_router("gmtrouter", encoder="hashing-64", steps=40, eval_every=20, progress=False, seed=0)
    model.fit(records)
    router = Router.load(save_router(model, tmp_path / "model", records))
    for u in range(8):
        decision = router.route(f"user-{u}", "Suggest a name for a small bakery.")
        assert decision.known_user and {r.llm for r in decision.ranking} == set(MODELS)
        assert decision.llm == MODELS[u % len(MODELS)], (u, decision.ranking)
