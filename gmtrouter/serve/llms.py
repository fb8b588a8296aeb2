"""Admin endpoints for the LLMs the router routes among: add one at run time, list them with their evidence,
retire one.

An added LLM is stored (`serve.catalog`) before the answer, and the live router routes among it when the answer
comes: a route that names no candidates may choose it at once. It starts at the population's average (the
strengths are centred, so about the average LLM) with nobody's evidence, so its posterior is wide and exploration
tries it; where a trained network is used, its LLM node starts from the text of its name and description. A
retired LLM is no default candidate any more, keeps its history, and may still be named in `candidates`.

The request and answer bodies live here rather than in `schemas.py`: they share `LLMSpec` with the config, which
itself reads `schemas.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from gmtrouter.serve.catalog import LLMExists
from gmtrouter.serve.config import MAX_LLM_NAME, LLMSpec
from gmtrouter.serve.deps import ERRORS, Admin, Svc, encodable
from gmtrouter.serve.service import Service

router = APIRouter(prefix="/v1/admin/llms", tags=["admin"])


class LLMCreate(LLMSpec):
    """A new LLM to route among (or a retired one back, with anything given here replacing what was stored)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=MAX_LLM_NAME, description="The LLM's name in routes.")]

    @field_validator("name")
    @classmethod
    def _no_blank_name(cls, name: str) -> str:
        if not name.strip() or name != name.strip():
            raise PydanticCustomError("llm_name", "must not be blank, nor start or end with a space")
        return name


class UpstreamOut(BaseModel):
    base_url: str
    model: str | None = Field(description="The name the upstream knows it by (None: the LLM's own).")


class LLMOut(BaseModel):
    name: str
    source: Literal["model", "config", "added"] = Field(
        description="Where it came from: the trained model, the config's llms, or an add at run time."
    )
    active: bool = Field(description="A default candidate (not retired).")
    added: float | None = Field(description="When it was added at run time (Unix seconds).")
    retired: float | None = Field(description="When it was retired (None: it is not).")
    description: str
    input_price: float | None
    output_price: float | None
    expected_cost: float | None = Field(description="USD per answer as routing prices it (None: unknown).")
    upstream: UpstreamOut | None = Field(description="Where chat completions go (never its key).")
    comparisons: int = Field(description="Comparisons (two or more rated answers) in the history involving it.")
    thumbs: int = Field(description="Thumbs or ratings of its lone answers in the history.")


def llm_list(service: Service) -> list[LLMOut]:
    """Every LLM the live router knows, in its order (blocking: reads the live history's evidence)."""
    engine = service.engine
    live = engine.router
    evidence = engine.llm_evidence()
    entries = engine.catalog.entries()
    upstreams = service.upstreams.config
    out = []
    for name in live.llms:
        entry = entries.get(name)
        added = entry is not None and entry.added is not None
        spec = entry.spec if added else engine.config_llms.get(name, LLMSpec())
        source = "added" if added else "model" if name in engine.model_llms and engine.model_dir else "config"
        upstream = upstreams.get(name)
        comparisons, thumbs = evidence.get(name, (0, 0))
        out.append(
            LLMOut(
                name=name,
                source=source,
                active=name not in live.retired,
                added=entry.added if entry is not None else None,
                retired=entry.retired if entry is not None else None,
                description=spec.description,
                input_price=spec.input_price,
                output_price=spec.output_price,
                expected_cost=live.costs.get(name),
                upstream=UpstreamOut(base_url=upstream.base_url, model=upstream.model) if upstream else None,
                comparisons=comparisons,
                thumbs=thumbs,
            )
        )
    return out


def _one(service: Service, name: str) -> LLMOut:
    return next(llm for llm in llm_list(service) if llm.name == name)


@router.post("", response_model=LLMOut, responses=ERRORS, status_code=201)
async def add_llm(body: LLMCreate, _who: Admin, service: Svc) -> LLMOut:
    """Route among a new LLM from now on (201); a retired one comes back (also 201). 409: one of that name is
    already routed among."""
    encodable(body)
    live = service.engine.router
    if body.name in live.llms and body.name not in live.retired:
        raise HTTPException(409, f"LLM '{body.name}' is already routed among; retire it first to change it")
    if body.name not in live.llms and not hasattr(live.context, "add_llm"):
        raise HTTPException(
            400, f"the loaded {live.model.name} router cannot take LLMs it was not trained on; retrain with them"
        )
    spec = LLMSpec(**body.model_dump(exclude={"name"}))
    try:
        await run_in_threadpool(service.engine.catalog.add, body.name, spec)
    except LLMExists:
        raise HTTPException(409, f"LLM '{body.name}' is already routed among; retire it first to change it") from None
    await service.engine.llms_changed()
    return await run_in_threadpool(_one, service, body.name)


@router.get("", response_model=list[LLMOut], responses=ERRORS)
async def list_llms(_who: Admin, service: Svc) -> list[LLMOut]:
    """Every LLM the router knows, retired ones included, with the evidence the history holds of each."""
    return await run_in_threadpool(llm_list, service)


@router.delete("/{name:path}", response_model=LLMOut, responses=ERRORS)
async def retire_llm(
    name: Annotated[str, Path(min_length=1, max_length=MAX_LLM_NAME, description="The LLM's name.")],
    _who: Admin,
    service: Svc,
) -> LLMOut:
    """Retire an LLM: no default candidate from now on; its history stays and a route may still name it."""
    live = service.engine.router
    if name not in live.llms:
        raise HTTPException(404, f"no LLM '{name}' to retire; GET /v1/admin/llms lists them")
    if name in live.retired:
        raise HTTPException(404, f"LLM '{name}' is retired already; POST it to /v1/admin/llms to bring it back")
    if live.active_llms == [name]:
        raise HTTPException(409, f"LLM '{name}' is the last one routed among; add another before retiring it")
    await run_in_threadpool(service.engine.catalog.retire, name)
    await service.engine.llms_changed()
    return await run_in_threadpool(_one, service, name)
