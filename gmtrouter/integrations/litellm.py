"""gmtrouter as LiteLLM's router: each request to a model group goes to the deployment gmtrouter ranks first for
its user, and what happened to the answer (a failure, the user's thumbs or rating) goes back as feedback.

    gmt = GmtRouting.from_settings(url="http://127.0.0.1:8000", api_key=KEY, llms={"openai/gpt-4o": "gpt-4o"})
    router = litellm.Router(model_list=MODEL_LIST, plugins=[gmt.plugin])  # or: gmt.strategy(router), below
    litellm.callbacks.append(gmt.callback)
    answer = await router.acompletion(model="auto", messages=CHAT, metadata={"user": "alice"})
    gmt.feedback(answer, thumbs="up")

Two ways in, for the two interfaces LiteLLM offers: `plugin` is a routing plugin (`Router(plugins=[...])`, the
proxy's `router_settings.plugins`) that narrows the group's candidate models to gmtrouter's choice, so LiteLLM's
own strategy, cooldowns and retries still apply, and pick alone when gmtrouter cannot answer; `strategy(router)`
is a custom routing strategy (`CustomRoutingStrategyBase`, sync and async) that returns the deployment itself and
falls back to LiteLLM's default, weighted simple shuffle. Either way a request is never failed by gmtrouter: when
it is down, refuses, or knows none of the deployments' models, a warning is logged and LiteLLM picks.
The route id travels in the request's metadata to `callback`, a LiteLLM `CustomLogger`. See docs/integrations.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.core_helpers import get_metadata_variable_name_from_kwargs
from litellm.router_strategy.simple_shuffle import simple_shuffle
from litellm.types.router import CustomRoutingStrategyBase, RoutingContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gmtrouter.integrations.client import Client, Feedback, ServiceClient, Thumbs, Unavailable
from gmtrouter.utils.errors import GmtError

logger = logging.getLogger(__name__)

SIGNAL = "gmtrouter"  # the key of the route in the request's metadata (and in a plugin's signals)
USER_KEYS = ("user_api_key_end_user_id", "trace_user_id", "user")  # proxy end user, Langfuse user, plain
WARN_EVERY_SECONDS = 60.0


class Settings(BaseModel):
    """What the integration needs: where gmtrouter is, and how LiteLLM's models are named there."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="A `gmtrouter serve` service, e.g. http://127.0.0.1:8000.")
    api_key: str | None = Field(None, description="Its key (better: the environment variable in api_key_env).")
    api_key_env: str = "GMTROUTER_API_KEY"
    model: str | None = Field(None, description="Instead of url: a model folder, routed in this process.")
    llms: dict[str, str] = Field(default_factory=dict, description="LiteLLM model -> gmtrouter LLM.")
    model_groups: list[str] | None = Field(None, description="Model groups to route (default: every group).")
    cost_weight: float = Field(0.0, ge=0)
    timeout: float = Field(2.0, gt=0, description="Seconds to wait for gmtrouter before LiteLLM picks alone.")
    failures_as_feedback: bool = True
    keep: int = Field(100_000, ge=1, description="Answers remembered for feedback (and feedback kept to resend).")

    @classmethod
    def read(cls, path: str | Path) -> Settings:
        """Settings from a YAML or JSON file; a bad file is one `GmtError` naming the setting."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise GmtError(f"{path}: {error.strerror}; give the gmtrouter settings file") from None
        try:
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError both are
            raise GmtError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {error}") from None
        return cls.checked(data or {}, str(path))

    @classmethod
    def checked(cls, data: Mapping[str, Any], where: str = "gmtrouter settings") -> Settings:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "settings"
            raise GmtError(f"{where}: '{field}': {first['msg']}") from None

    def client(self) -> Client:
        """The client these settings name: the service at `url`, or the model folder `model` in process."""
        if (self.url is None) == (self.model is None):
            raise GmtError("gmtrouter settings: give either 'url' (a gmtrouter service) or 'model' (a model folder)")
        if self.model is not None:  # imported here: a gateway asking a service over HTTP never loads torch
            from gmtrouter.api import Router
            from gmtrouter.integrations.local import LocalClient

            return LocalClient(Router.load(self.model), cost_weight=self.cost_weight, keep=self.keep)
        key = self.api_key or os.environ.get(self.api_key_env)
        if not key:
            raise GmtError(f"gmtrouter settings: no API key; set {self.api_key_env} or 'api_key'")
        return ServiceClient(self.url, key, timeout=self.timeout, cost_weight=self.cost_weight)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Choice:
    """gmtrouter's route for one request, in LiteLLM's names: the models that serve its choice."""

    route_id: str
    llm: str
    user: str
    models: dict[str, str]  # every candidate LiteLLM model gmtrouter knows -> its gmtrouter LLM
    tried: tuple[str, ...] = ()  # LLMs earlier attempts of this request went to (LiteLLM retries after a failure)

    @property
    def chosen(self) -> set[str]:
        return {model for model, llm in self.models.items() if llm == self.llm}

    def signal(self) -> dict[str, Any]:
        """What the request's metadata carries to the callback (plain JSON, as LiteLLM logs it)."""
        signal = {"route_id": self.route_id, "llm": self.llm, "user": self.user, "models": dict(self.models)}
        return {**signal, "tried": [*self.tried, self.llm]}


def tried_of(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The LLMs earlier attempts of this request were routed to: a retry after a failure goes elsewhere."""
    signal = (metadata.get("routing_plugin_signals") or {}).get(SIGNAL) or metadata.get(SIGNAL) or {}
    return tuple(signal.get("tried", ())) if isinstance(signal, dict) else ()


def model_of(deployment: Mapping[str, Any]) -> str:
    """A deployment's provider model (`litellm_params.model`), the name the routing table maps."""
    return str((deployment.get("litellm_params") or {}).get("model") or "")


def user_of(request: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> str | None:
    """Who asks: the request's `user`, else the proxy's end user, a Langfuse `trace_user_id` or `metadata.user`."""
    for value in (request.get("user"), *((metadata or {}).get(key) for key in USER_KEYS)):
        if isinstance(value, str) and value:
            return value
    return None


class _Warnings:
    """Each kind of warning at most once a minute: a gateway that loses gmtrouter must not drown its log."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            self._last[key] = now
            logger.warning(message, *args)


class GmtRouting:
    """gmtrouter for one LiteLLM setup: the routing plugin, the custom strategy and the feedback callback share it."""

    def __init__(
        self,
        client: Client,
        llms: Mapping[str, str] | None = None,
        model_groups: Sequence[str] | None = None,
        failures_as_feedback: bool = True,
        keep: int = 100_000,
    ) -> None:
        self.client = client
        self.llms = dict(llms or {})
        self.model_groups = None if model_groups is None else set(model_groups)
        self.warn = _Warnings()
        self.plugin = GmtRoutingPlugin(self)
        self.callback = GmtFeedbackLogger(self, failures_as_feedback=failures_as_feedback, keep=keep)

    @classmethod
    def from_settings(cls, settings: Settings | Mapping[str, Any] | None = None, **fields: Any) -> GmtRouting:
        """From `Settings` (or their fields as a mapping or keywords)."""
        if not isinstance(settings, Settings):
            settings = Settings.checked({**(settings or {}), **fields})
        return cls(
            settings.client(),
            llms=settings.llms,
            model_groups=settings.model_groups,
            failures_as_feedback=settings.failures_as_feedback,
            keep=settings.keep,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> GmtRouting:
        return cls.from_settings(Settings.read(path))

    def strategy(self, router: Any) -> GmtRoutingStrategy:
        """A custom routing strategy for `router` (give it to `router.register_plugin`)."""
        return GmtRoutingStrategy(self, router)

    def llm_of(self, model: str) -> str:
        """gmtrouter's name for a LiteLLM model: the table's, else the model without its provider prefix."""
        return self.llms.get(model) or model.split("/", 1)[-1]

    def _candidates(self, models: Sequence[str], known: Sequence[str]) -> dict[str, str]:
        """Each LiteLLM model gmtrouter knows -> its LLM; the others are named once a minute and left to LiteLLM."""
        names, known_set = {}, set(known)
        for model in dict.fromkeys(models):
            llm = self.llm_of(model)
            if llm in known_set:
                names[model] = llm
            else:
                self.warn(
                    f"unknown:{model}",
                    "gmtrouter does not know the LLM '%s' of LiteLLM deployment model '%s' (it knows: %s); map the "
                    "model in the 'llms' table or train with that LLM; until then gmtrouter never picks it",
                    llm,
                    model,
                    ", ".join(sorted(known_set)),
                )
        return names

    def _asks(self, group: object, user: str | None, messages: object) -> bool:
        """Whether this request is gmtrouter's to route: a chat to a routed group, from a known user."""
        if self.model_groups is not None and group not in self.model_groups:
            return False
        if not messages:
            return False  # embeddings and other calls without a chat
        if user is None:
            self.warn(
                f"no-user:{group}",
                "a request to model group '%s' names no user, so LiteLLM picks; send 'user' (or metadata 'user')",
                group,
            )
            return False
        return True

    def _open(self, candidates: dict[str, str], tried: tuple[str, ...]) -> list[str] | None:
        """The LLMs to ask gmtrouter about: those not tried yet, if that leaves a choice (or a retry's way out)."""
        llms = sorted(set(candidates.values()) - set(tried))
        return llms if len(llms) >= (1 if tried else 2) else None

    def _gave_up(self, error: GmtError) -> None:
        kind = "unavailable" if isinstance(error, Unavailable) else "refused"
        self.warn(kind, "gmtrouter could not route (%s); LiteLLM's own strategy picks", error)

    async def achoose(
        self, group: object, user: str | None, messages: Any, models: Sequence[str], tried: tuple[str, ...] = ()
    ) -> Choice | None:
        """gmtrouter's choice among `models` (less the LLMs this request already `tried`), or None when LiteLLM
        should pick (logged)."""
        if not self._asks(group, user, messages):
            return None
        try:
            candidates = self._candidates(models, await self.client.allms())
            llms = self._open(candidates, tried)
            if llms is None:
                return None
            route = await self.client.aroute(user, messages, llms)  # type: ignore[arg-type]
        except GmtError as error:
            self._gave_up(error)
            return None
        return Choice(route.route_id, route.llm, user, candidates, tried)  # type: ignore[arg-type]

    def choose(
        self, group: object, user: str | None, messages: Any, models: Sequence[str], tried: tuple[str, ...] = ()
    ) -> Choice | None:
        """`achoose` for LiteLLM's synchronous calls."""
        if not self._asks(group, user, messages):
            return None
        try:
            candidates = self._candidates(models, self.client.llms())
            llms = self._open(candidates, tried)
            if llms is None:
                return None
            route = self.client.route(user, messages, llms)  # type: ignore[arg-type]
        except GmtError as error:
            self._gave_up(error)
            return None
        return Choice(route.route_id, route.llm, user, candidates, tried)  # type: ignore[arg-type]

    def feedback(self, answer: Any, thumbs: Thumbs | None = None, rating: float | None = None) -> bool:
        """A user's thumbs or rating of a routed answer (a LiteLLM response or its id), sent to gmtrouter."""
        return self.callback.feedback(answer, thumbs=thumbs, rating=rating)

    async def afeedback(self, answer: Any, thumbs: Thumbs | None = None, rating: float | None = None) -> bool:
        return await self.callback.afeedback(answer, thumbs=thumbs, rating=rating)


class GmtRoutingPlugin:
    """A LiteLLM routing plugin: narrows a request's candidate models to those serving gmtrouter's choice.

    LiteLLM then picks among the deployments of that model with its own strategy (there may be several, e.g. one
    per region); when gmtrouter cannot answer the candidates stay as they were. Plugins run on async calls only.
    """

    def __init__(self, routing: GmtRouting) -> None:
        self.routing = routing

    async def run(self, context: RoutingContext) -> RoutingContext:
        metadata = context.metadata
        user = user_of({}, metadata)
        models = context.candidate_models
        messages = context.structured_messages
        choice = await self.routing.achoose(metadata.get("model_group"), user, messages, models, tried_of(metadata))
        if choice is not None:
            context.candidate_models = [model for model in models if model in choice.chosen]
            context.signals[SIGNAL] = choice.signal()
        return context


class GmtRoutingStrategy(CustomRoutingStrategyBase):
    """A LiteLLM custom routing strategy: returns a deployment of the model gmtrouter chose for the request.

    Among several deployments of that model, and whenever gmtrouter cannot answer, it picks as LiteLLM's default
    strategy does (simple shuffle, by the deployments' weight, rpm or tpm); the async pick chooses among the
    deployments LiteLLM reports healthy (not cooling down).
    """

    def __init__(self, routing: GmtRouting, router: Any) -> None:
        self.routing = routing
        self.router = router

    def _pick(
        self, model: str, deployments: list[Mapping[str, Any]], request: dict[str, Any], choice: Choice | None
    ) -> Mapping[str, Any]:
        if not deployments:
            raise GmtError(f"LiteLLM has no deployment for model '{model}'")
        if choice is not None:
            chosen = [d for d in deployments if model_of(d) in choice.chosen]
            if chosen:
                request.setdefault(get_metadata_variable_name_from_kwargs(request), {})[SIGNAL] = choice.signal()
                deployments = chosen
        return simple_shuffle(lambda name: None, deployments, model, request)

    @staticmethod
    def _request(request_kwargs: dict[str, Any] | None) -> tuple[dict[str, Any], Mapping[str, Any]]:
        request = request_kwargs if request_kwargs is not None else {}
        metadata = request.get(get_metadata_variable_name_from_kwargs(request)) or {}
        return request, metadata

    async def async_get_available_deployment(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]] | None = None,
        input: Any = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        request, metadata = self._request(request_kwargs)
        deployments = list(await self.router.select(model, dict(request), kind="healthy"))
        choice = None
        if not specific_deployment:
            user = user_of(request, metadata)
            models = [model_of(d) for d in deployments]
            choice = await self.routing.achoose(model, user, messages, models, tried_of(metadata))
        return self._pick(model, deployments, request, choice)

    def get_available_deployment(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]] | None = None,
        input: Any = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        request, metadata = self._request(request_kwargs)
        deployments = list(self.router.registry().deployments(model) or [])
        choice = None
        if not specific_deployment:
            user, models = user_of(request, metadata), [model_of(d) for d in deployments]
            choice = self.routing.choose(model, user, messages, models, tried_of(metadata))
        return self._pick(model, deployments, request, choice)


@dataclass(frozen=True)
class Answered:
    """A routed answer LiteLLM returned: its route and the gmtrouter LLM whose deployment answered it."""

    route_id: str
    llm: str
    user: str


def _route_and_llm(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, str] | None:
    """(the route's signal, the gmtrouter LLM of the deployment that served this attempt, that deployment's model)
    from a LiteLLM logging event; None for a request gmtrouter did not route."""
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") or params.get("litellm_metadata") or {}
    signal = (metadata.get("routing_plugin_signals") or {}).get(SIGNAL) or metadata.get(SIGNAL)
    if not isinstance(signal, dict) or "route_id" not in signal:
        return None
    deployment = str(metadata.get("deployment") or "")
    return signal, signal.get("models", {}).get(deployment), deployment


class GmtFeedbackLogger(CustomLogger):
    """LiteLLM's callback for gmtrouter: remembers which LLM answered each routed request, sends a thumbs down
    for an LLM whose call failed (LiteLLM's retry is a new route, so the two never share a route), and sends the
    user's thumbs or rating when asked (`feedback`). Feedback that cannot reach gmtrouter is kept and sent again,
    in order, with the next one (`pending`, `flush`); gmtrouter's idempotency keys make a resent one count once.
    """

    def __init__(self, routing: GmtRouting, failures_as_feedback: bool = True, keep: int = 100_000) -> None:
        super().__init__()
        # LiteLLM keeps one callback per class and public settings: this id makes each GmtRouting's callback its own
        self.instance = uuid.uuid4().hex
        self.routing = routing
        self.failures_as_feedback = failures_as_feedback
        self.keep = keep
        self.answers: OrderedDict[str, Answered] = OrderedDict()
        self.pending: deque[Feedback] = deque(maxlen=keep)

    # -- what LiteLLM reports --------------------------------------------------------------------

    def _answered(self, kwargs: Mapping[str, Any], response: Any) -> None:
        found = _route_and_llm(kwargs)
        answer_id = getattr(response, "id", None)
        if found is None or not isinstance(answer_id, str):
            return
        signal, llm, deployment = found
        if llm is None:  # e.g. a fallback to another model group, whose models were not candidates
            self.routing.warn(
                f"not-candidate:{deployment}", "answer from '%s', which gmtrouter did not rank", deployment
            )
            return
        self.answers[answer_id] = Answered(signal["route_id"], llm, signal.get("user", ""))
        while len(self.answers) > self.keep:
            self.answers.popitem(last=False)

    def _failure(self, kwargs: Mapping[str, Any]) -> Feedback | None:
        found = _route_and_llm(kwargs) if self.failures_as_feedback else None
        if found is None or found[1] is None:
            return None
        return Feedback(found[0]["route_id"], found[1], thumbs="down")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:  # type: ignore[override]
        self._answered(kwargs, response_obj)

    def log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:  # type: ignore[override]
        self._answered(kwargs, response_obj)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:  # type: ignore[override]
        failure = self._failure(kwargs)
        if failure is not None:
            await self._asend(failure, raise_refusal=False)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:  # type: ignore[override]
        failure = self._failure(kwargs)
        if failure is not None:
            self._send(failure, raise_refusal=False)

    async def async_post_call_response_headers_hook(  # type: ignore[override]
        self, data: dict, user_api_key_dict: Any, response: object, *args: Any, **kwargs: Any
    ) -> dict[str, str] | None:
        """The proxy's answer names its route, so that a client can send feedback to gmtrouter itself."""
        answered = self.answers.get(getattr(response, "id", None) or "")
        signal = _route_and_llm({"litellm_params": data})
        if answered is not None:
            return {"x-gmtrouter-route-id": answered.route_id, "x-gmtrouter-llm": answered.llm}
        if signal is not None:
            return {"x-gmtrouter-route-id": signal[0]["route_id"], "x-gmtrouter-llm": signal[0]["llm"]}
        return None

    # -- what users say ------------------------------------------------------------------------

    def _user_feedback(self, answer: Any, thumbs: Thumbs | None, rating: float | None) -> Feedback:
        if (thumbs is None) == (rating is None):
            raise GmtError("give either thumbs ('up' or 'down') or a rating")
        if thumbs is not None and thumbs not in ("up", "down"):
            raise GmtError(f"thumbs must be 'up' or 'down', got {thumbs!r}")
        answer_id = answer if isinstance(answer, str) else getattr(answer, "id", None)
        answered = self.answers.get(answer_id) if isinstance(answer_id, str) else None
        if answered is None:
            raise GmtError(
                f"answer {answer_id!r} was not routed by gmtrouter, or is older than the last {self.keep} answers"
            )
        return Feedback(answered.route_id, answered.llm, thumbs=thumbs, rating=rating)

    def feedback(self, answer: Any, thumbs: Thumbs | None = None, rating: float | None = None) -> bool:
        """Send a user's thumbs or rating of `answer`; False when gmtrouter is unreachable and it is kept."""
        return self._send(self._user_feedback(answer, thumbs, rating))

    async def afeedback(self, answer: Any, thumbs: Thumbs | None = None, rating: float | None = None) -> bool:
        return await self._asend(self._user_feedback(answer, thumbs, rating))

    # -- delivery ------------------------------------------------------------------------------

    def _kept(self, feedback: Feedback, error: Unavailable) -> bool:
        self.pending.append(feedback)
        self.routing.warn("feedback-kept", "feedback kept to send again (%d waiting): %s", len(self.pending), error)
        return False

    def _refused(self, feedback: Feedback, error: GmtError, raise_refusal: bool) -> bool:
        if raise_refusal:
            raise error
        logger.warning("gmtrouter refused feedback on route %s: %s", feedback.route_id, error)
        return False

    def flush(self) -> int:
        """Send the kept feedback, oldest first, until gmtrouter is unreachable again; how many are still kept."""
        while self.pending:
            try:
                self.routing.client.feedback(self.pending[0])
            except Unavailable:
                break
            except GmtError as error:
                logger.warning("gmtrouter refused kept feedback on route %s: %s", self.pending[0].route_id, error)
            self.pending.popleft()
        return len(self.pending)

    async def aflush(self) -> int:
        while self.pending:
            try:
                await self.routing.client.afeedback(self.pending[0])
            except Unavailable:
                break
            except GmtError as error:
                logger.warning("gmtrouter refused kept feedback on route %s: %s", self.pending[0].route_id, error)
            self.pending.popleft()
        return len(self.pending)

    def _send(self, feedback: Feedback, raise_refusal: bool = True) -> bool:
        if self.flush():
            return self._kept(feedback, Unavailable("gmtrouter is still unreachable"))
        try:
            self.routing.client.feedback(feedback)
        except Unavailable as error:
            return self._kept(feedback, error)
        except GmtError as error:
            return self._refused(feedback, error, raise_refusal)
        return True

    async def _asend(self, feedback: Feedback, raise_refusal: bool = True) -> bool:
        if await self.aflush():
            return self._kept(feedback, Unavailable("gmtrouter is still unreachable"))
        try:
            await self.routing.client.afeedback(feedback)
        except Unavailable as error:
            return self._kept(feedback, error)
        except GmtError as error:
            return self._refused(feedback, error, raise_refusal)
        return True
