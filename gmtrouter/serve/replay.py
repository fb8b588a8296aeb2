"""A replay upstream: an OpenAI-compatible server that answers MT-Bench questions with recorded answers.

Not an LLM. For each MT-Bench question (turn 1 or 2) it returns the answer that the LLM named in `model` gave
when MT-Bench was recorded (FastChat's `model_answer/*.jsonl`), whole or streamed. It lets a newcomer run the
router's OpenAI-compatible endpoint end to end without an API key: `gmtrouter serve replay-upstream`.
Answers say what they are: ids start with `replay-` and `system_fingerprint` is `mt-bench-replay`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gmtrouter.data.loaders.common import find_file, iter_json_lines, require
from gmtrouter.utils.errors import GmtError

FINGERPRINT = "mt-bench-replay"


class Recordings:
    """MT-Bench's questions and every recorded answer: (model, question id) -> the answer of each turn."""

    def __init__(self, folder: Path) -> None:
        if not (folder / "model_answer").is_dir():
            raise GmtError(f"{folder}: no model_answer/ folder; give MT-Bench's folder, e.g. ../shared/data/mt_bench")
        questions = find_file(folder, "question.jsonl")
        self.turns: dict[int, list[str]] = {}
        self.by_text: dict[str, list[tuple[int, int]]] = {}
        for line, item in iter_json_lines(questions):
            qid, turns = int(require(item, "question_id", questions, line)), require(item, "turns", questions, line)
            self.turns[qid] = turns
            for turn, text in enumerate(turns, start=1):
                self.by_text.setdefault(text.strip(), []).append((qid, turn))
        self.answers: dict[tuple[str, int], list[str]] = {}
        for path in sorted((folder / "model_answer").glob("*.jsonl")):
            for line, item in iter_json_lines(path):
                model = require(item, "model_id", path, line)
                turns = require(item, "choices", path, line)[0]["turns"]
                self.answers[model, int(require(item, "question_id", path, line))] = turns
        if not self.answers:
            raise GmtError(f"{folder / 'model_answer'}: holds no answers")
        self.models = sorted({model for model, _ in self.answers})

    def answer(self, model: str, messages: list[dict[str, Any]]) -> str:
        """The recorded answer of `model` to the chat's last user message; `LookupError` says why there is none."""
        if model not in self.models:
            raise LookupError(f"no recorded answers of model '{model}'; this replay has: {', '.join(self.models)}")
        said = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        said = [c if isinstance(c, str) else _text(c) for c in said]
        if not said:
            raise LookupError("the chat has no user message")
        places = self.by_text.get(said[-1].strip(), [])
        if len(places) > 1:  # the same follow-up text in several questions: the first turn tells which
            places = [(q, t) for q, t in places if said[0].strip() == self.turns[q][0].strip()] or places[:1]
        if not places:
            example = self.turns[min(self.turns)][0]
            raise LookupError(
                f"this replay answers only the {len(self.turns)} MT-Bench questions (GET /v1/questions lists them), "
                f"e.g. {example!r}"
            )
        qid, turn = places[0]
        return self.answers[model, qid][turn - 1]


def _text(content: object) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def create_replay_app(folder: Path) -> FastAPI:
    """The replay server's app over the MT-Bench folder `folder`."""
    recordings = Recordings(folder)
    app = FastAPI(
        title="gmtrouter replay upstream",
        summary="Recorded MT-Bench answers behind an OpenAI-compatible API: a stand-in for real LLMs, not an LLM.",
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "replay": True, "models": recordings.models, "questions": len(recordings.turns)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "owned_by": FINGERPRINT} for m in recordings.models]
        return {"object": "list", "data": data}

    @app.get("/v1/questions")
    async def questions() -> dict[str, list[str]]:
        return {str(qid): turns for qid, turns in sorted(recordings.turns.items())}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "send an OpenAI chat completions body: {'model': ..., 'messages': [...]}")
        model = str(body.get("model", ""))
        try:
            text = recordings.answer(model, body["messages"])
        except LookupError as error:
            return _error(404, str(error))
        head = {"id": f"replay-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": model}
        head["system_fingerprint"] = FINGERPRINT
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            words = len(text.split())
            return JSONResponse(
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
                }
            )
        return StreamingResponse(_chunks(head, text), media_type="text/event-stream")

    return app


def _chunks(head: dict[str, Any], text: str) -> Iterator[str]:
    """The answer as OpenAI streaming chunks, a few words each, then the end marker."""
    words = text.split(" ")
    pieces = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
    for i, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": " " + piece}
        chunk = {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    end = {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"
