"""Request and response bodies of the HTTP API; FastAPI turns them into the OpenAPI schema at /docs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gmtrouter.data.schema import Interaction

# Column sizes of the store (serve/store.py): every string that goes into a bounded column is checked against
# these at the API, so that a long value is a 422 here rather than a database error on PostgreSQL.
MAX_USER = 256  # routes.user, feedback.user, forgotten.user
MAX_IDEMPOTENCY = 200  # feedback.key is 'record:' + user + ':' + this (512 in all)
MAX_FEEDBACK_KEY = 512
MAX_CONVERSATION = 256  # routes.conversation
MAX_SWITCH_COST = 1000.0  # logits: far beyond any preference a model learns, so "always stay" fits below it

UserId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_USER,
        pattern="^[^\x00]*$",
        description="Who asks: the id feedback is kept under.",
    ),
]
LLMName = Annotated[str, Field(min_length=1, max_length=256)]
Rating = Annotated[float, Field(allow_inf_nan=False)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY)]
ConversationId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CONVERSATION,
        pattern="^[^\x00]*$",
        description="The conversation this turn belongs to: later turns follow what the service routed in it.",
    ),
]
SwitchCost = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_SWITCH_COST,
        allow_inf_nan=False,
        description="Logits every LLM but the previous turn's gives up (default: the service's switch_cost).",
    ),
]


class ContentPart(BaseModel):
    """One part of a message's content (OpenAI format): a text part's `text` must be a string."""

    model_config = ConfigDict(extra="allow")

    type: Annotated[str, Field(min_length=1)]
    text: str | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs 'text': a string")
        return self


class ChatMessage(BaseModel):
    """One message of an OpenAI-style chat; fields beyond role and content are kept and forwarded, except the
    `model` an assistant turn may name (which LLM wrote it: what routing the next turn reads)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    model: LLMName | None = Field(
        None, description="On an assistant message: the LLM that wrote it (routing reads the last one; not forwarded)."
    )


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: UserId
    messages: Annotated[
        list[ChatMessage],
        Field(min_length=1, description="The chat so far, to the user's last turn; answers may name their model."),
    ]
    candidates: Annotated[list[LLMName], Field(min_length=1)] | None = Field(
        None, description="LLMs to choose from (default: every LLM the router knows)."
    )
    cost_weight: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = Field(
        0.0, description="Logits given up per e-fold of expected cost; 0 ignores cost."
    )
    conversation: ConversationId | None = None
    switch_cost: SwitchCost | None = None


class RankedLLMOut(BaseModel):
    llm: str
    score: float = Field(description="Preference logit for this user and query.")
    expected_cost: float | None = Field(description="Mean cost per answer in the history (USD), if known.")
    adjusted: float = Field(description="Score less cost_weight x log cost: what the ranking sorts by.")


class PastInteraction(BaseModel):
    """A past interaction of the user that weighed in the choice."""

    conversation: str
    turn: int
    query: str
    ratings: dict[str, float]
    weight: float


class RouteResponse(BaseModel):
    route_id: str = Field(description="Refer to this route when giving feedback.")
    user: str
    llm: str = Field(description="The choice: the top of the ranking.")
    known_user: bool
    cost_weight: float
    ranking: list[RankedLLMOut]
    explanation: list[PastInteraction] = Field(description="Empty when the router cannot attribute its choice.")
    notes: list[str]
    previous_llm: str | None = Field(
        description="The LLM that answered the conversation's previous turn, as the route used it (None: none known)."
    )
    switch_cost: float = Field(description="Logits subtracted from every candidate but previous_llm.")


class _RouteFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    route_id: Annotated[str, Field(min_length=1, max_length=64)]


class RatingFeedback(_RouteFeedback):
    """A rating of the routed answer, on the scale of the router's training data."""

    kind: Literal["rating"]
    rating: Rating
    llm: LLMName | None = Field(None, description="Whose answer is rated (default: the routed choice).")
    text: str | None = Field(None, description="The answer's text, if the route did not keep it.")


class ThumbsFeedback(_RouteFeedback):
    """Thumbs up or down on the routed answer: the top or the bottom of the rating scale."""

    kind: Literal["thumbs"]
    thumbs: Literal["up", "down"]
    llm: LLMName | None = None
    text: str | None = None


class PairwiseFeedback(_RouteFeedback):
    """Which of two answers to the routed query the user preferred (both LLMs among the route's candidates)."""

    kind: Literal["pairwise"]
    a: LLMName
    b: LLMName
    winner: Literal["a", "b", "tie"]


class RecordFeedback(BaseModel):
    """A whole canonical interaction record (docs/data.md), e.g. from a side-by-side UI."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["record"]
    record: Interaction
    idempotency_key: IdempotencyKey | None = None


Feedback = Annotated[RatingFeedback | ThumbsFeedback | PairwiseFeedback | RecordFeedback, Field(discriminator="kind")]


class FeedbackResponse(BaseModel):
    feedback_id: int
    user: str
    kind: str
    route_id: str | None
    duplicate: bool = Field(description="True when this repeats feedback already stored (nothing new was added).")
    record: Interaction


class UserOut(BaseModel):
    user: str
    known: bool = Field(description="Whether the router has any interaction of this user.")
    interactions: int = Field(description="Interactions in the user's history (training data and feedback).")
    stored_feedback: int = Field(description="Feedback rows stored for this user.")
    preferred_llms: list[str] = Field(description="LLMs by how often they won this user's comparisons.")
    win_rate: dict[str, float]


class ForgetOut(BaseModel):
    user: str
    feedback_deleted: int
    routes_deleted: int


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[UserId] = Field(default_factory=list, description="User ids, or 'PREFIX*' for a tenant.")
    admin: bool = False
    name: Annotated[str, Field(max_length=256)] = ""


class KeyOut(BaseModel):
    key_id: str
    name: str
    users: list[str]
    admin: bool
    created: float
    revoked: float | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown once: only a salted digest is stored.")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: Annotated[str, Field(min_length=1)]


class ReloadOut(BaseModel):
    model_dir: str
    model_version: str
    data_hash: str
    llms: list[str]
    history_records: int
    stored_feedback_replayed: int
    stored_feedback_skipped: int
    seconds: float


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: Annotated[str, Field(min_length=1, description="Folder for the new model.")]
    data: str | None = Field(None, description="Records (JSONL) to train on besides the stored feedback.")
    settings: dict[str, str | int | float | bool] = Field(default_factory=dict, description="--set key=value.")
    reload: bool = Field(True, description="Swap the new model in when training succeeds.")


class JobOut(BaseModel):
    job_id: str
    status: Literal["running", "succeeded", "failed"]
    output: str
    returncode: int | None = None
    log_tail: str = ""
    reloaded: bool = False


class HealthOut(BaseModel):
    """Readiness, and which model answers; no server paths (this endpoint needs no key)."""

    status: Literal["ok"]
    model_version: str = Field(description="SHA-256 of the model's config and weights (16 hex digits).")
    data_hash: str = Field(description="SHA-256 of the records the model was trained on.")
    llms: list[str]
    history_records: int
    pending_changes: int = Field(description="Feedback and forgets acknowledged but not yet live.")
    schema_version: str = Field(description="The database's schema revision (Alembic).")


class ErrorOut(BaseModel):
    detail: str = Field(description="One line that says what to fix.")


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions request; `model: auto` routes. Other OpenAI fields are forwarded unchanged."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    user: UserId | None = None
    conversation: ConversationId | None = None
    switch_cost: SwitchCost | None = None
