"""Service settings: a TOML, YAML or JSON file, overridden by command-line options and environment variables.

One file holds what an operator changes per deployment (database, limits, upstream LLM endpoints, the admin key);
secrets may instead come from the environment so that the file can be committed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gmtrouter.data.schema import MAX_TEXT
from gmtrouter.routing.explore import THOMPSON_SCALE
from gmtrouter.serve.schemas import MAX_SWITCH_COST
from gmtrouter.text.base import DEFAULT_ENCODER
from gmtrouter.utils.errors import GmtError

ADMIN_KEY_ENV = "GMTROUTER_ADMIN_KEY"
ADMIN_KEY_MIN = 16
Positive = Annotated[int, Field(gt=0)]
PerMinute = Annotated[int, Field(ge=0)]
Price = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
MAX_LLM_NAME = 256  # llms.name, and every column that names an LLM (routes.choice)
GLOBAL_CONTROL = "global"  # the control arm's policy: the population's best (what a new user is routed to)
# OpenAI chat completion fields a caller may send on to an upstream; anything else is refused (chat_params).
CHAT_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream_options",
)


class Upstream(BaseModel):
    """An OpenAI-compatible endpoint that serves one LLM the router can choose."""

    model_config = ConfigDict(extra="forbid")

    base_url: Annotated[str, Field(min_length=1, description="e.g. https://api.example.com/v1")]
    api_key: str | None = Field(None, description="Sent as 'Authorization: Bearer ...'; prefer api_key_env.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the key.")
    model: str | None = Field(None, description="The model name the upstream expects (default: the LLM's name).")
    timeout: Annotated[float, Field(gt=0)] = 120.0

    def key(self) -> str | None:
        """The API key, read from the environment when the config names a variable."""
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or self.api_key
        return self.api_key


class LLMSpec(BaseModel):
    """What an operator says of an LLM the router routes among: the text its node starts from, its list prices
    and where it is served. The same fields as `POST /v1/admin/llms`."""

    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, Field(max_length=10_000)] = Field(
        "", description="What the LLM is good at; where the network is used, its LLM node starts from this text."
    )
    input_price: Price | None = Field(None, description="USD per 1M input tokens.")
    output_price: Price | None = Field(None, description="USD per 1M output tokens.")
    upstream: Upstream | None = Field(None, description="The OpenAI-compatible endpoint that serves it.")


class ServeConfig(BaseModel):
    """Everything `gmtrouter serve` needs besides the code."""

    model_config = ConfigDict(extra="forbid")

    model: Path | None = Field(None, description="Model folder from 'gmtrouter train'; none: start with no logs.")
    llms: dict[str, LLMSpec] = Field(
        default_factory=dict,
        description="LLMs to route among besides the model's (without a model: the only ones), by name.",
    )
    encoder: str = Field(DEFAULT_ENCODER, description="Text encoder of a router started with no model.")
    explore: Literal["thompson", "ucb", "off"] | None = Field(
        None,
        description="How a route may try an LLM the router is unsure of: posterior sampling, an upper confidence "
        "bound, or never (default: thompson when started with no model, off with one).",
    )
    explore_seed: int | None = Field(None, description="Seed of the exploration's draws (none: a fresh one).")
    ucb_width: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        1.0, description="Standard deviations added to each score under explore = 'ucb'."
    )
    thompson_scale: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        THOMPSON_SCALE,
        description="Under explore = 'thompson', the width of the draws of what only this user's or query's later "
        "routes learn from, in posterior standard deviations (what everybody shares is drawn at its full width).",
    )
    control_share: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        0.0, description="Share of routes, drawn per route with a seeded hash, made by the control policy instead."
    )
    control: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        GLOBAL_CONTROL, description="The control policy: 'global' (the population's best) or one LLM's name."
    )
    control_seed: int = Field(0, description="Seed of the hash that draws each route's arm.")
    db: str = Field("sqlite:///gmtrouter.db", description="SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg://...")
    create_db: bool = Field(
        False,
        description="Begin an empty SQLite database where the file this service used before is gone (a first start "
        "creates one without it).",
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    admin_key: str | None = Field(None, description=f"Admin API key; ${ADMIN_KEY_ENV} takes precedence.")
    max_query_chars: Annotated[int, Field(gt=0, le=MAX_TEXT)] = 20_000
    max_messages: Positive = 256
    max_body_bytes: Positive = 2_000_000
    max_candidates: Positive = 64
    torch_threads: Positive = Field(1, description="Intra-op threads for scoring; 1 is fastest under load.")
    batch_max: Positive = Field(64, description="Most route requests scored (and their queries encoded) together.")
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = Field(
        2.0, description="How long a route whose query needs embedding waits for others to share the encoder call."
    )
    query_cache: Annotated[int, Field(ge=0)] = Field(100_000, description="Query embeddings kept in memory (LRU).")
    key_cache_seconds: Annotated[float, Field(ge=0)] = Field(10.0, description="How long a checked API key is trusted.")
    sync_seconds: Annotated[float, Field(ge=0)] = Field(
        5.0, description="How often feedback and forgets stored by other replicas are folded in (0: never)."
    )
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL|EXTRA)$")
    report: Path | None = Field(None, description="A 'gmtrouter bench' report (results.md) for the console.")
    upstreams: dict[str, Upstream] = Field(default_factory=dict, description="LLM name -> its upstream endpoint.")
    rate_requests_per_minute: PerMinute = Field(
        600, description="Requests one user or tenant key may make per minute (0: no limit); admins are exempt."
    )
    rate_feedback_per_minute: PerMinute = Field(
        120, description="Feedback events one user or tenant key may send per minute (0: no limit)."
    )
    chat_params: list[str] = Field(
        default_factory=lambda: list(CHAT_PARAMS),
        description="Chat completion fields forwarded to upstreams; any other field is refused with 422.",
    )
    chat_max_tokens: Positive = Field(
        4096, description="Most tokens an answer may ask for (max_tokens); sent as max_tokens when a request has none."
    )
    chat_max_n: Positive = Field(1, description="Most answers one chat completion may ask for (n).")
    switch_cost: Annotated[float, Field(ge=0, le=MAX_SWITCH_COST, allow_inf_nan=False)] = Field(
        0.0,
        description="Logits every LLM but the one that answered a conversation's previous turn gives up, for "
        "requests that name no switch_cost (0: the model's own preference alone decides).",
    )
    prices: Path | None = Field(
        None,
        description="Price file {llm: {input, output, cached_input?}} (USD per 1M tokens): an LLM with a "
        "cached_input price costs less for a conversation that stays with it (its prompt cache).",
    )

    @model_validator(mode="after")
    def _llms_named_and_served_once(self) -> ServeConfig:
        for name in self.llms:
            if not name.strip() or name != name.strip() or len(name) > MAX_LLM_NAME:
                raise ValueError(
                    f"llms: '{name}' is not an LLM name; give 1 to {MAX_LLM_NAME} characters, no space at either end"
                )
        twice = sorted(name for name, spec in self.llms.items() if spec.upstream is not None and name in self.upstreams)
        if twice:
            raise ValueError(f"'{twice[0]}' has an upstream in both llms and upstreams; give it once")
        return self

    def all_upstreams(self) -> dict[str, Upstream]:
        """Every configured upstream: the `upstreams` table and those given with an LLM in `llms`."""
        given = {name: spec.upstream for name, spec in self.llms.items() if spec.upstream is not None}
        return {**self.upstreams, **given}

    def resolved_admin_key(self) -> str | None:
        """The admin key from the environment or the file, refused when it is short enough to guess."""
        key = os.environ.get(ADMIN_KEY_ENV) or self.admin_key
        if key is not None and len(key) < ADMIN_KEY_MIN:
            source = ADMIN_KEY_ENV if os.environ.get(ADMIN_KEY_ENV) else "admin_key in the config"
            raise GmtError(
                f"{source} has {len(key)} characters; an admin key needs at least {ADMIN_KEY_MIN} "
                "(make one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return key


def cached_input_prices(path: Path) -> dict[str, tuple[float, float]]:
    """LLM -> (input, cached input) USD per 1M tokens from a price file; a `GmtError` names what is wrong."""
    from gmtrouter.data.prices import PriceBook

    if not path.is_file():
        raise GmtError(f"{path}: no such price file; check --prices or 'prices' in the config")
    try:
        prices = PriceBook.read(path).cached_input_prices()
    except (ValueError, AttributeError, TypeError) as error:
        raise GmtError(
            f"{path}: not a price file ({str(error).splitlines()[0]}); "
            "write {llm: {input, output, cached_input}} in USD per 1M tokens"
        ) from None
    for llm, pair in prices.items():
        if not all(isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p < math.inf for p in pair):
            raise GmtError(f"{path}: '{llm}': input and cached_input must be numbers, 0 or more; got {list(pair)}")
    return {llm: (float(full), float(cached)) for llm, (full, cached) in prices.items()}


def _parse(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
            return loaded if loaded is not None else {}
        if suffix == ".json":
            return json.loads(text)
    except Exception as error:  # each parser has its own error type; all mean the same to the user
        raise GmtError(f"{path}: not valid {suffix.lstrip('.').upper()} ({str(error).splitlines()[0]})") from None
    raise GmtError(f"{path}: unknown config format '{suffix}'; use .toml, .yaml, .yml or .json")


def load_config(path: str | Path | None = None, **overrides: Any) -> ServeConfig:
    """The settings in `path` (if any) with `overrides` (options given on the command line, None = not given)."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise GmtError(f"{file}: no such config file; check the path")
        data = _parse(file)
        if not isinstance(data, dict):
            raise GmtError(f"{file}: the config must be a table of settings at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        source = f"{path}: " if path is not None else ""
        message = first["msg"].removeprefix("Value error, ")
        raise GmtError(f"{source}setting '{where}': {message}" if where else f"{source}{message}") from None
