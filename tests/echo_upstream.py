"""A tiny OpenAI-compatible chat completions server that echoes: the upstream LLM in the proxy tests.

Run as `python tests/echo_upstream.py --port PORT`. The answer is "<model> says: <last user message>", so a test can
tell which upstream model a request reached; with `stream: true` it sends the answer word by word as SSE chunks.
A whole answer also says what reached the upstream (`received`: the request's fields, its `max_tokens`, and the
fields of its messages).
Requests without 'Authorization: Bearer upstream-secret' are refused, as a real provider would.
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI()
SECRET = "upstream-secret"


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def completions(request: Request):
    if request.headers.get("authorization") != f"Bearer {SECRET}":
        return JSONResponse({"error": {"message": "bad upstream key"}}, status_code=401)
    body = await request.json()
    model = body["model"]
    last = [m for m in body["messages"] if m.get("role") == "user"][-1]["content"]
    answer = f"{model} says: {last}"
    if body.get("max_tokens") == 0:
        return JSONResponse({"error": {"message": "max_tokens must be at least 1"}}, status_code=400)
    created = int(time.time())
    if not body.get("stream"):
        return {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(last.split()), "completion_tokens": len(answer.split()), "total_tokens": 0},
            "received": {
                "fields": sorted(body),
                "max_tokens": body.get("max_tokens"),
                "n": body.get("n"),
                "message_fields": sorted({k for m in body["messages"] for k in m}),
            },
        }

    def events():
        words = answer.split(" ")
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            chunk = {
                "id": "chatcmpl-echo",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
        end = {
            "id": "chatcmpl-echo",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield f"data: {json.dumps(end)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
