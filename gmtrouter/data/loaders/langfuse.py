"""Langfuse traces, observations and scores as records: one per scored generation.

Input (docs/data.md): the JSON that Langfuse's public API and SDK return, kept in a folder as `traces.json`,
`observations.json` and `scores.json` (each a list of objects, an API page `{"data": [...], "meta": ...}`, a list
of pages, or JSON lines of either), or traces with their `observations` and `scores` inside (what `GET
/api/public/traces/{id}` returns), in one file or in `traces.json`. `fetch` reads the same from a server.

A generation (an observation of type GENERATION) is a turn of its trace's session (`sessionId`, else the trace
alone), turns counted over the session's generations by start time; the trace's `userId` is the user and the
generation's `model` the LLM. A score rates the generation it names (`observationId`), or, when it names only the
trace, the trace's last generation: the answer the user saw. Only scores whose name is chosen count; NUMERIC and
BOOLEAN scores are ratings as they are, CATEGORICAL ones must be thumbs. Of several chosen scores on one
generation the latest wins (a user who changed their mind). Unscored generations are context: they count in the
turn numbers and say which LLM answered the turn before (`previous_llm`).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gmtrouter.data.schema import Interaction, Response
from gmtrouter.utils.errors import GmtError

KINDS = ("traces", "observations", "scores")
RATED_TYPES = ("NUMERIC", "BOOLEAN", "CATEGORICAL")
THUMBS = {
    **dict.fromkeys(("up", "thumbs up", "thumbs_up", "thumbsup", "👍", "positive", "good", "yes", "true", "1"), 1.0),
    **dict.fromkeys(
        ("down", "thumbs down", "thumbs_down", "thumbsdown", "👎", "negative", "bad", "no", "false", "0"), 0.0
    ),
}
KEY_ENV = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY")


@dataclass
class Export:
    """A Langfuse export as plain JSON objects (camelCase keys, as the API sends them), with where each came from."""

    traces: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    source: str = "langfuse export"

    def add(self, kind: str, items: Iterable[Any], where: str) -> None:
        """Objects of `kind`; a trace's own `observations` and `scores`, when they are objects, join the others."""
        target = getattr(self, kind)
        for item in items:
            if not isinstance(item, dict):
                raise GmtError(f"{where}: every {kind[:-1]} must be a JSON object, got {type(item).__name__}")
            target.append(item)
            if kind == "traces":
                for inner in ("observations", "scores"):
                    nested = [x for x in item.get(inner) or () if isinstance(x, dict)]
                    getattr(self, inner).extend({"traceId": item.get("id"), **x} for x in nested)


def _items(value: Any, where: str) -> list[Any]:
    """The objects of one JSON value: a list of objects, an API page `{"data": [...]}`, or a list of pages."""
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        return value["data"]
    if isinstance(value, list):
        pages = [v for v in value if isinstance(v, dict) and isinstance(v.get("data"), list)]
        if pages and len(pages) == len(value):
            return [item for page in pages for item in page["data"]]
        return value
    if isinstance(value, dict):
        return [value]
    raise GmtError(
        f"{where}: expected Langfuse objects (a list, or an API page with 'data'); got {type(value).__name__}"
    )


def _read_json(path: Path) -> list[Any]:
    """The objects of a JSON file, or of a JSON lines file (one object or page a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise GmtError(f"{path}: {error.strerror}; point --data-dir at a Langfuse export") from None
    try:
        return _items(json.loads(text), str(path))
    except json.JSONDecodeError:
        pass
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                items.extend(_items(json.loads(line), f"{path}:{number}"))
            except json.JSONDecodeError:
                raise GmtError(f"{path}:{number}: not valid JSON; give the export as JSON or JSON lines") from None
    return items


def read_export(source: Path) -> Export:
    """The export in `source`: a folder with traces/observations/scores JSON files, or one file of traces."""
    export = Export(source=str(source))
    if source.is_file():
        export.add("traces", _read_json(source), str(source))
        return export
    found = False
    for kind in KINDS:
        for path in sorted(source.glob(f"{kind}*.json")) + sorted(source.glob(f"{kind}*.jsonl")):
            export.add(kind, _read_json(path), str(path))
            found = True
    if not found:
        raise GmtError(f"{source}: no traces.json, observations.json or scores.json; point --data-dir at the export")
    return export


def _time(value: Any, what: str) -> float:
    """An ISO 8601 time (as Langfuse writes them, 'Z' for UTC) in seconds since the epoch."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise GmtError(f"{what}: '{value}' is not an ISO 8601 time") from None


def _text(content: Any) -> str | None:
    """The text of message content: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(texts) if texts else None
    return None


def _messages(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return None


def query_text(value: Any) -> str | None:
    """What the user asked: the last user message of a chat (a list, or `{"messages": [...]}`), or plain text."""
    messages = _messages(value)
    if messages is not None:
        asked = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        asked = [t for t in asked if t and t.strip()]
        return asked[-1] if asked else None
    if isinstance(value, dict):
        value = value.get("input", value.get("query", value.get("prompt")))
    return value if isinstance(value, str) and value.strip() else None


def answer_text(value: Any) -> str | None:
    """The answer of a generation's output: text, an assistant message, OpenAI `choices`, or the last message."""
    if isinstance(value, dict) and isinstance(value.get("choices"), list) and value["choices"]:
        value = (
            value["choices"][0].get("message", value["choices"][0]) if isinstance(value["choices"][0], dict) else None
        )
    messages = _messages(value)
    if messages is not None:
        value = messages[-1]
    if isinstance(value, dict):
        return _text(value.get("content", value.get("text", value.get("output"))))
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _tokens(generation: dict[str, Any]) -> int | None:
    for usage, key in ((generation.get("usageDetails"), "output"), (generation.get("usage"), "output")):
        count = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
    return None


def _cost(generation: dict[str, Any]) -> float | None:
    cost = _number(generation.get("calculatedTotalCost"))
    details = generation.get("costDetails")
    if cost is None and isinstance(details, dict):
        cost = _number(details.get("total"))
    return cost if cost is not None and cost >= 0 else None


def _rating(score: dict[str, Any], trace: str) -> float:
    """A chosen score as a rating; a score that is no rating is refused, naming it and its trace."""
    kind, name, where = score.get("dataType"), score.get("name"), f"trace '{trace}': score '{score.get('id')}'"
    if kind in ("NUMERIC", "BOOLEAN"):
        value = _number(score.get("value"))
        if value is None:
            raise GmtError(f"{where} ({name}, {kind}) has no finite numeric value")
        return value
    if kind == "CATEGORICAL":
        label = str(score.get("stringValue", "")).strip().lower()
        if label not in THUMBS:
            raise GmtError(
                f"{where} ({name}) is the category '{score.get('stringValue')}', not a thumb (up/down, 👍/👎, "
                "good/bad, positive/negative, yes/no); choose a numeric score with --score-name"
            )
        return THUMBS[label]
    raise GmtError(
        f"{where} ({name}) has type {kind!r}; only NUMERIC, BOOLEAN and CATEGORICAL (thumbs) scores are ratings: "
        "choose such scores with --score-name"
    )


def _chosen_names(scores: Sequence[dict[str, Any]], names: Sequence[str], source: str) -> set[str]:
    found = sorted({str(s.get("name")) for s in scores if s.get("traceId")})
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise GmtError(f"{source}: no trace score named {', '.join(missing)} (found: {', '.join(found) or 'none'})")
        return set(names)
    if len(found) == 1:
        return set(found)
    if not found:
        raise GmtError(f"{source}: no trace has a score; nothing to learn preferences from")
    raise GmtError(f"{source}: scores named {', '.join(found)}; choose the one(s) that rate answers with --score-name")


def records_of(export: Export, score_names: Sequence[str] = ()) -> list[Interaction]:
    """One record per scored generation of the export, conversations in order of their first generation."""
    traces = {str(t.get("id")): t for t in export.traces}
    generations: dict[str, dict[str, Any]] = {}
    for observation in export.observations:
        if observation.get("type") == "GENERATION":
            trace = observation.get("traceId")
            if str(trace) not in traces:
                raise GmtError(
                    f"{export.source}: generation '{observation.get('id')}' names trace '{trace}', not in it"
                )
            generations[str(observation.get("id"))] = observation
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for generation in generations.values():
        start = _time(generation.get("startTime"), f"trace '{generation['traceId']}': generation '{generation['id']}'")
        by_trace[str(generation["traceId"])].append({**generation, "_start": start})
    for items in by_trace.values():
        items.sort(key=lambda g: (g["_start"], str(g.get("id"))))

    names = _chosen_names(export.scores, score_names, export.source)
    rated: dict[str, tuple[float, float, str]] = {}  # generation id -> (score time, rating, score name)
    for score in export.scores:
        if score.get("name") not in names or not score.get("traceId"):
            continue  # another score, or one of a whole session (no generation to pin it on)
        trace = str(score["traceId"])
        if trace not in traces:
            raise GmtError(f"{export.source}: score '{score.get('id')}' names trace '{trace}', which is not in it")
        target = score.get("observationId")
        if target is None:
            if not by_trace.get(trace):
                raise GmtError(f"trace '{trace}': score '{score.get('id')}' rates a trace without a generation")
            target = by_trace[trace][-1]["id"]
        elif str(target) not in generations or str(generations[str(target)].get("traceId")) != trace:
            raise GmtError(f"trace '{trace}': score '{score.get('id')}' names '{target}', no generation of this trace")
        when = _time(score.get("timestamp"), f"trace '{trace}': score '{score.get('id')}'")
        rating = _rating(score, trace)
        if str(target) not in rated or when >= rated[str(target)][0]:
            rated[str(target)] = (when, rating, str(score["name"]))

    sessions: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for trace_id, items in by_trace.items():
        trace = traces[trace_id]
        session = trace.get("sessionId") or f"langfuse/{trace_id}"
        sessions[str(session)].extend((trace, g) for g in items)
    records = []
    for session, turns in sorted(sessions.items(), key=lambda kv: min(g["_start"] for _, g in kv[1])):
        turns.sort(key=lambda tg: (tg[1]["_start"], str(tg[1].get("id"))))
        previous: str | None = None
        for turn, (trace, generation) in enumerate(turns, start=1):
            model = generation.get("model")
            if str(generation["id"]) in rated:
                records.append(_record(trace, generation, session, turn, previous, rated[str(generation["id"])]))
            previous = model if isinstance(model, str) and model else None
    users = defaultdict(set)
    for record in records:
        users[record.conversation].add(record.user)
    for session, who in users.items():
        if len(who) > 1:
            raise GmtError(f"session '{session}' has traces of several users ({', '.join(sorted(who))}); split it")
    if not records:
        raise GmtError(f"{export.source}: no generation has a score named {', '.join(sorted(names))}")
    return records


def _record(
    trace: dict[str, Any],
    generation: dict[str, Any],
    session: str,
    turn: int,
    previous: str | None,
    score: tuple[float, float, str],
) -> Interaction:
    where = f"trace '{trace.get('id')}': generation '{generation.get('id')}'"
    user, model = trace.get("userId"), generation.get("model")
    if not isinstance(user, str) or not user:
        raise GmtError(f"trace '{trace.get('id')}' has a scored generation but no userId; set the trace's user")
    if not isinstance(model, str) or not model:
        raise GmtError(f"{where} is scored but names no model; set the generation's model")
    query = query_text(generation.get("input")) or query_text(trace.get("input"))
    if query is None:
        raise GmtError(f"{where} is scored but its input (and the trace's) holds no user message")
    response = Response(
        llm=model,
        rating=score[1],
        text=answer_text(generation.get("output")),
        cost=_cost(generation),
        tokens=_tokens(generation),
    )
    meta = {"source": "langfuse", "trace": trace.get("id"), "generation": generation.get("id"), "score": score[2]}
    return Interaction(
        user=user,
        conversation=session,
        turn=turn,
        query=query,
        responses=[response],
        timestamp=generation["_start"],
        previous_llm=previous,
        meta=meta,
    )


def load(source: Path, score_names: Sequence[str] = ()) -> list[Interaction]:
    """Records of every scored generation in a Langfuse export (a folder, or a file of traces)."""
    return records_of(read_export(source), score_names)


# -- reading a server -------------------------------------------------------------------------------------


def _dumped(items: Iterable[Any]) -> list[dict[str, Any]]:
    """SDK objects as the API's JSON (camelCase), the form the export files hold."""
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]


def _all_pages(fetch: Callable[..., Any], what: str, progress: Any) -> list[dict[str, Any]]:
    """Every page of a page-numbered Langfuse listing (`meta.total_pages`), 100 objects a request."""
    items, page, pages = [], 1, 1
    while page <= pages:
        answer = fetch(page=page, limit=100)
        items.extend(_dumped(answer.data))
        pages = answer.meta.total_pages
        progress.set_postfix_str(f"{what} page {page}/{pages}")
        progress.update(1)
        page += 1
    return items


def fetch_export(api: Any, url: str) -> Export:
    """Traces, generations and scores through a Langfuse API client (`langfuse.api.LangfuseAPI`)."""
    from tqdm import tqdm

    export = Export(source=url)
    with tqdm(desc="reading Langfuse", unit="page") as progress:
        export.add("traces", _all_pages(lambda **p: api.trace.list(fields="core,io", **p), "traces", progress), url)
        generations = lambda **p: api.legacy.observations_v1.get_many(type="GENERATION", **p)  # noqa: E731
        export.add("observations", _all_pages(generations, "generations", progress), url)
        export.add("scores", _all_pages(api.scores.get_many, "scores", progress), url)
    return export


def fetch(url: str, score_names: Sequence[str] = ()) -> list[Interaction]:
    """Records from a Langfuse server's public API, with the keys in LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY."""
    public, secret = (os.environ.get(name) for name in KEY_ENV)
    if not public or not secret:
        raise GmtError(f"reading {url} needs the project's API keys in {' and '.join(KEY_ENV)}")
    try:
        from langfuse.api import LangfuseAPI
        from langfuse.api.core.api_error import ApiError
    except ImportError:
        raise GmtError("--from-langfuse needs the Langfuse SDK: pip install 'langfuse>=4.18,<5'") from None
    import httpx

    api = LangfuseAPI(base_url=url.rstrip("/"), username=public, password=secret, timeout=60)
    try:
        export = fetch_export(api, url)
    except ApiError as error:
        raise GmtError(f"{url} refused the request ({error.status_code}): check the URL and the keys") from None
    except httpx.HTTPError as error:
        raise GmtError(f"{url} could not be read: {error}") from None
    return records_of(export, score_names)
