"""Request and response bodies of the HTTP API; FastAPI turns them into the OpenAPI schema at /docs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gmtrouter.data.schema import MAX_ID, MAX_TEXT, NO_NUL, FiniteFloat, Id, Interaction, Json, Rating

# Column sizes of the store (serve/store.py): every string that goes into a bounded column is checked against
# these at the API, so that a long value is a 422 here rather than a database error on PostgreSQL. The record's
# own fields are bounded by the record contract (data/schema.py), which every way in shares.
MAX_USER = MAX_ID  # routes.user, feedback.user, forgotten.user
MAX_IDEMPOTENCY = 200  # feedback.key is 'record:' + user + ':' + this (512 in all)
MAX_FEEDBACK_KEY = 512
MAX_CONVERSATION = 256  # routes.conversation
MAX_SWITCH_COST = 1000.0  # logits: far beyond any preference a model learns, so "always stay" fits below it
MAX_COST_WEIGHT = 1e6

UserId = Annotated[Id, Field(description="Who asks: the id feedback is kept under.")]
LLMName = Id
AnswerText = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)]
CostWeight = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_COST_WEIGHT,
        allow_inf_nan=False,
        strict=True,
        description="Logits given up per e-fold of expected cost; 0 ignores cost.",
    ),
]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY, pattern=NO_NUL)]
RouteId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
ConversationId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CONVERSATION,
        pattern=NO_NUL,
        description="The conversation this turn belongs to: later turns follow what the service routed in it.",
    ),
]
Explore = Annotated[
    bool | None,
    Field(description="false: no exploration for this request (true or none: the service's `explore` setting)."),
]
Arm = Literal["router", "control"]
SwitchCost = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_SWITCH_COST,
        allow_inf_nan=False,
        strict=True,
        description="Logits every LLM but the previous turn's gives up (default: the service's switch_cost).",
    ),
]


class RequestBody(BaseModel):
    """A request body: unknown fields refused, and no value converted from another type (`true` is no number,
    `"0.5"` no rating)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Forwarded(BaseModel):
    """Part of a chat request that goes on to an upstream LLM: fields of its own are kept, as plain JSON (a NaN
    would make the forwarded body invalid JSON)."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, Json] = Field(init=False)


class ContentPart(Forwarded):
    """One part of a message's content (OpenAI format): a text part's `text` must be a string."""

    type: Annotated[str, Field(min_length=1)]
    text: str | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs 'text': a string")
        return self


class ChatMessage(Forwarded):
    """One message of an OpenAI-style chat; fields beyond role and content are kept and forwarded, except the
    `model` an assistant turn may name (which LLM wrote it: what routing the next turn reads)."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    model: LLMName | None = Field(
        None, description="On an assistant message: the LLM that wrote it (routing reads the last one; not forwarded)."
    )


class RouteRequest(RequestBody):
    user: UserId | None = Field(None, description="Who asks (a key for exactly one user may leave it out).")
    messages: Annotated[
        list[ChatMessage],
        Field(min_length=1, description="The chat so far, to the user's last turn; answers may name their model."),
    ]
    candidates: Annotated[list[LLMName], Field(min_length=1)] | None = Field(
        None, description="LLMs to choose from (default: every LLM the router knows)."
    )
    cost_weight: CostWeight = 0.0
    conversation: ConversationId | None = None
    switch_cost: SwitchCost | None = None
    explore: Explore = None


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
    explored: bool = Field(
        False, description="The choice is not the top of the ranking: exploration tried an LLM it is unsure of."
    )
    arm: Arm = Field("router", description="Which policy chose: the router, or the control arm (control_share).")


class _RouteFeedback(RequestBody):
    route_id: RouteId


class RatingFeedback(_RouteFeedback):
    """A rating of the routed answer, on the scale of the router's training data."""

    kind: Literal["rating"]
    rating: Rating
    llm: LLMName | None = Field(None, description="Whose answer is rated (default: the routed choice).")
    text: AnswerText | None = Field(None, description="The answer's text, if the route did not keep it.")


class ThumbsFeedback(_RouteFeedback):
    """Thumbs up or down on the routed answer: the top or the bottom of the rating scale."""

    kind: Literal["thumbs"]
    thumbs: Literal["up", "down"]
    llm: LLMName | None = None
    text: AnswerText | None = None


class PairwiseFeedback(_RouteFeedback):
    """Which of two answers to the routed query the user preferred (both LLMs among the route's candidates)."""

    kind: Literal["pairwise"]
    a: LLMName
    b: LLMName
    winner: Literal["a", "b", "tie"]


class RecordFeedback(RequestBody):
    """A whole canonical interaction record (docs/data.md), e.g. from a side-by-side UI."""

    kind: Literal["record"]
    record: Interaction
    idempotency_key: IdempotencyKey | None = None


Feedback = Annotated[RatingFeedback | ThumbsFeedback | PairwiseFeedback | RecordFeedback, Field(discriminator="kind")]


class FeedbackResponse(BaseModel):
    feedback_id: int
    user: str
    kind: str
    route_id: str | None = Field(None, description="The route this feedback rates (absent for a record sent alone).")
    duplicate: bool = Field(description="True when this repeats feedback already stored (nothing new was added).")
    record: Interaction


class ScoreInterval(BaseModel):
    score: float = Field(description="Preference logit (Bradley-Terry): higher is preferred.")
    low: float = Field(description="Lower end of its 95% posterior interval.")
    high: float = Field(description="Upper end of its 95% posterior interval.")


class PreferenceOut(BaseModel):
    """The router's own view of one LLM for this user, on a question nobody asked (the user's overall view)."""

    llm: str
    user: ScoreInterval = Field(description="This user's score, as routing reads it.")
    new_user: ScoreInterval = Field(description="A user with no history: the population's view.")
    comparisons: int = Field(description="This user's comparisons (two or more rated answers) involving the LLM.")
    thumbs: int = Field(description="This user's thumbs or ratings on the LLM's lone answers.")


class UserOut(BaseModel):
    user: str
    known: bool = Field(description="Whether the router has any interaction of this user.")
    interactions: int = Field(description="Interactions in the user's history (training data and feedback).")
    stored_feedback: int = Field(description="Feedback rows stored for this user.")
    preferred_llms: list[str] = Field(description="LLMs by the router's score for this user, best first.")
    preferences: list[PreferenceOut] = Field(description="The router's view of each LLM, best first.")
    win_rate: dict[str, float] = Field(description="How often each LLM won this user's comparisons (raw counts).")


class ForgetOut(BaseModel):
    user: str
    feedback_deleted: int
    routes_deleted: int


class KeyCreate(RequestBody):
    users: list[UserId] = Field(default_factory=list, description="User ids, or 'PREFIX*' for a tenant.")
    admin: bool = False
    name: Annotated[str, Field(max_length=256, pattern=NO_NUL)] = ""


class KeyOut(BaseModel):
    key_id: str
    name: str
    users: list[str]
    admin: bool
    created: float
    revoked: float | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown once: only a salted digest is stored.")


ServerPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL)]


class ReloadRequest(RequestBody):
    model_dir: ServerPath


class ReloadOut(BaseModel):
    model_dir: str
    model_version: str
    data_hash: str
    llms: list[str]
    history_records: int
    stored_feedback_replayed: int
    stored_feedback_skipped: int = Field(description="Stored feedback naming LLMs this model does not know.")
    stored_feedback_unreadable: int = Field(
        description="Stored feedback rows that cannot be folded (broken or outside the record's bounds); the "
        "server log names their ids."
    )
    seconds: float


class RetrainRequest(RequestBody):
    output: Annotated[ServerPath, Field(description="Folder for the new model.")]
    data: ServerPath | None = Field(None, description="Records (JSONL) to train on besides the stored feedback.")
    settings: dict[Id, Annotated[str, Field(max_length=MAX_ID, pattern=NO_NUL)] | int | FiniteFloat | bool] = Field(
        default_factory=dict, description="--set key=value."
    )
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
    feedback_unreadable: int = Field(
        description="Stored feedback rows the router could not fold (left out of the history; the server log "
        "names their ids)."
    )
    pending_routes: int = Field(0, description="Routes answered whose rows are not yet committed (a moment's worth).")
    refitting: bool = Field(
        False,
        description="A router started with no logs is choosing its priors again over its history (seconds; "
        "scores move for everyone once the result is live).",
    )
    schema_version: str = Field(description="The database's schema revision (Alembic).")


class ErrorOut(BaseModel):
    detail: str = Field(description="One line that says what to fix.")


class ChatCompletionRequest(Forwarded):
    """OpenAI chat completions request; `model: auto` routes. Other fields are forwarded if `chat_params` allows
    them; `candidates`, `cost_weight`, `conversation` and `switch_cost` are the router's and are not."""

    model: Annotated[Id, Field(description="'auto' routes; the name of a served LLM goes straight to it.")]
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    user: UserId | None = None
    candidates: Annotated[list[LLMName], Field(min_length=1)] | None = None
    cost_weight: CostWeight = 0.0
    conversation: ConversationId | None = None
    switch_cost: SwitchCost | None = None
    explore: Explore = None
