"""The router behind the API: one thread routes, another folds feedback in; the live router is swapped, never mutated.

Routing reads a `Router` that no other thread changes. The route worker takes whatever requests are waiting (up to
`batch_max`; when one of them has a query not yet embedded and the model reads query vectors, it waits up to
`batch_wait_ms` for more), embeds their new queries in one encoder call (none where the model reads no text),
scores each and answers them; their route rows are committed behind the answers (`RouteLog`).
Feedback is committed by the API first; the fold thread then builds a new `Router` over the history plus the new
records (one graph refresh for however many arrived meanwhile) and swaps it in, so routing never waits for a
refresh. A route for a user whose acknowledged feedback is not yet live waits for the
fold that contains it: the next route of that user reflects the feedback. Reloading a model and forgetting a user
go through the same fold thread, so every change to the history happens in one order; so do LLMs added or
retired at run time (`serve.catalog`), and a router started with no logs has its backbone's priors chosen again
in a thread of its own as its history grows, then swapped in the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmtrouter.api import FoldError, RouteDecision, Router, previous_model
from gmtrouter.data.schema import Interaction
from gmtrouter.registry.checkpoint import load_context_state, load_router, model_identity
from gmtrouter.routing.base import PreferenceRouter
from gmtrouter.routing.explore import THOMPSON_SCALE
from gmtrouter.serve.arms import CONTROL, ROUTER, ControlArm
from gmtrouter.serve.beliefs import Belief, EvidenceTally, beliefs
from gmtrouter.serve.catalog import Catalog, CatalogEntry, list_price_costs
from gmtrouter.serve.config import LLMSpec
from gmtrouter.serve.routelog import RouteLog
from gmtrouter.serve.store import RouteRow, Store, StoredFeedback
from gmtrouter.text.base import DEFAULT_ENCODER
from gmtrouter.text.querycache import QueryCacheEncoder
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.heap import collector_paused, settle_heap

log = logging.getLogger("gmtrouter.serve")
EXPLANATIONS_KEPT = 100_000  # (user, LLM) explanations kept for the live router at most
SYNC_LOOKBACK_S = 120.0  # rows committed by other replicas up to this late are still picked up
REFIT_AFTER = 200  # a router started with no logs chooses its priors again at this many records, and each doubling


@dataclass
class Routed:
    """A routing decision with its stored id and the past interactions that explain it."""

    route_id: str
    decision: RouteDecision
    explanation: list[dict[str, Any]]
    created: float
    arm: str = ROUTER  # which policy chose: the router, or the control arm


@dataclass
class ChatTurn:
    """Where a request stands in its conversation: what routing reads besides the query."""

    messages: list[dict[str, Any]] = field(default_factory=list)  # the chat so far (empty: the query alone)
    conversation: str | None = None
    switch_cost: float = 0.0
    previous_llm: str | None = None  # resolved by `Engine.previous_llm` before the job is queued


@dataclass
class _RouteJob:
    user: str
    query: str
    candidates: list[str] | None
    cost_weight: float
    turn: int
    answer: Callable[[Routed | BaseException], None]
    chat: ChatTurn = field(default_factory=ChatTurn)
    explore: bool | None = None  # False: no exploration for this request


@dataclass
class _Op:
    """A change to the history, applied by the fold thread in submission order."""

    kind: str  # observe | forget | reload | sync | llms | refit
    seq: int = 0
    rows: list[StoredFeedback] = field(default_factory=list)
    user: str = ""
    texts: frozenset[str] = frozenset()  # forget: texts of the user's deleted rows, to drop from encoder caches
    model_dir: Path | None = None
    done: Callable[[Any], None] | None = None
    refitted: _Refit | None = None


@dataclass
class _Refit:
    """A copy of the live model whose backbone's priors were chosen again over `records` records."""

    model: PreferenceRouter
    of: PreferenceRouter  # the model it was copied from: a reload meanwhile makes it stale
    records: int
    llm_changes: int  # LLMs added before it started: one added meanwhile makes it stale


def _history_key(record: Interaction) -> tuple[str, str, int]:
    return record.user, record.conversation, record.turn


def _texts(record: Interaction) -> list[str]:
    return [record.query, *(r.text for r in record.responses if r.text)]


def explanation_of(router: Router, user: str, query: str, llm: str, against: str | None = None) -> list[dict[str, Any]]:
    """The user's past interactions that did most for `llm` (against the runner-up `against`, for a route):
    what made it win for them (empty when the population's preference alone decided)."""
    return router.explain(user, query, llm, against)


def runner_up(decision: RouteDecision) -> str | None:
    """The best-ranked candidate other than the chosen one."""
    return next((r.llm for r in decision.ranking if r.llm != decision.llm), None)


class Engine:
    """Holds the live router and the two threads that read and replace it."""

    def __init__(
        self,
        store: Store,
        model_dir: str | Path | None,
        batch_max: int = 64,
        batch_wait_ms: float = 2.0,
        query_cache: int = 100_000,
        sync_seconds: float = 5.0,
        torch_threads: int = 1,
        on_batch: Callable[[int, int], None] | None = None,
        on_fold: Callable[[float, int], None] | None = None,
        cached_input_prices: Mapping[str, tuple[float, float]] | None = None,
        llms: Mapping[str, LLMSpec] | None = None,
        encoder: str = DEFAULT_ENCODER,
        explore: str | None = None,
        explore_seed: int | None = None,
        ucb_width: float = 1.0,
        thompson_scale: float = THOMPSON_SCALE,
        arms: ControlArm | None = None,
        on_llms: Callable[[dict[str, CatalogEntry]], None] | None = None,
        refit_after: int = REFIT_AFTER,
    ) -> None:
        """`model_dir` None starts a router with no logs over `llms` (the config's LLMs, by name), embedding
        texts with `encoder`; with a model, `llms` it does not know are added to it. `explore` defaults to
        thompson with no model and off with one; `on_llms` hears every change of the stored LLMs."""
        self.store = store
        self.routes = RouteLog(store)
        self.catalog = Catalog(store)
        self.cached_input_prices = dict(cached_input_prices or {})
        self.batch_max = batch_max
        self.batch_wait = max(0.0, batch_wait_ms) / 1000
        self.query_cache = max(query_cache, 4 * batch_max)
        self.sync_seconds = sync_seconds
        self.on_batch = on_batch or (lambda size, encoded: None)
        self.on_fold = on_fold or (lambda seconds, records: None)
        self.on_llms = on_llms or (lambda entries: None)
        self.config_llms = dict(llms or {})
        self.encoder = encoder
        self.explore = explore or ("thompson" if model_dir is None else "off")
        self.ucb_width, self.thompson_scale = ucb_width, thompson_scale
        self.arms = arms or ControlArm()
        self.refit_after = refit_after
        self._rng = np.random.default_rng(explore_seed)  # one stream of draws for every router swapped in
        self._seed = explore_seed
        torch.set_num_threads(torch_threads)
        self._routes: queue.SimpleQueue[_RouteJob | None] = queue.SimpleQueue()
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the sequence numbers and waiters below
        self._router_lock = threading.Lock()  # held while a batch is scored or feedback is observed in place
        self._seq = 0  # last op submitted
        self._live = 0  # last op whose effect is live
        self._user_seq: dict[str, int] = {}  # user -> last op holding feedback of theirs
        self._waiters: list[tuple[int, Callable[[None], None]]] = []
        # feedback row id -> its user, for the rows in the live history; a forget drops its user's ids, because
        # SQLite reuses the id of a deleted last row and a new row must not pass for one already folded
        self._folded: dict[int, str] = {}
        self._tombstones: dict[str, float] = {}
        self._unfoldable: dict[int, str] = {}  # feedback row id -> why folding it failed (it stays out)
        self._last_sync = time.time()
        self._explained: dict[tuple[str, str, str | None], list[dict[str, Any]]] = {}  # (user, LLM, against)
        self._explained_by: Router | None = None  # the router those explanations are of
        self._entries: dict[str, CatalogEntry] = {}  # the stored LLMs, as last applied to the live router
        self._llm_changes = 0  # LLMs added to the live model so far (a refit begun before one is stale)
        self._refitted_at = 0  # history size at the last refit of a router with no logs
        self._refitting = False
        self._evidence = EvidenceTally()
        self.model_llms: list[str] = []  # the LLMs the loaded model came with
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.router, self.load_info = self._load(self.model_dir)
        self.on_llms(self._entries)
        self._threads = [
            threading.Thread(target=self._route_loop, name="gmtrouter-route", daemon=True),
            threading.Thread(target=self._fold_loop, name="gmtrouter-fold", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._maybe_refit()

    # ------------------------------------------------------------------------------------------ loading

    @property
    def cold(self) -> bool:
        """Whether the live router started with no logs (its priors are chosen again as its history grows)."""
        return self.model_dir is None

    def _specs(self) -> dict[str, LLMSpec]:
        """What is known of each LLM: the config's `llms`, then the stored ones (an add at run time wins)."""
        stored = {name: e.spec for name, e in self._entries.items() if e.added is not None}
        return {**self.config_llms, **stored}

    def _router(
        self, model: PreferenceRouter, history: list[Interaction], state: dict[str, torch.Tensor] | None = None
    ) -> Router:
        """A router over `history` with the service's settings: exploration (one stream of draws for all
        routers), the retired LLMs and list prices where the history holds no cost."""
        router = Router(
            model,
            history,
            cached_input_prices=self.cached_input_prices,
            context_state=state,
            explore=self.explore,
            ucb_width=self.ucb_width,
            thompson_scale=self.thompson_scale,
        )
        router.rng = self._rng
        self._configure_llms(router)
        return router

    def _configure_llms(self, router: Router) -> None:
        """Apply the stored LLMs' retirements and prices to `router` (the caller holds the router lock where
        `router` is live)."""
        known = set(router.llms)
        router.retired = {name for name, e in self._entries.items() if e.retired is not None and name in known}
        for name, cost in list_price_costs(self._specs()).items():
            if name in known and name not in router.costs:
                router.costs[name] = cost

    def _load(self, model_dir: Path | None) -> tuple[Router, dict[str, Any]]:
        """A router from a model folder (or, with none, one with no logs over the configured LLMs) with the
        stored LLMs added and the stored feedback replayed into its history (one refresh)."""
        started = time.perf_counter()
        with collector_paused():  # `settle_heap` collects once and freezes after every load
            self._entries = self.catalog.entries()
            wanted = {name: spec.description for name, spec in self._specs().items()}
            if model_dir is None:
                settings = {"encoder": self.encoder, "seed": self._seed, "query_cache": self.query_cache}
                model, history = Router.cold(list(wanted), wanted, refit_after=None, **settings).model, []
            else:
                model, history = load_router(model_dir)
                encoder = getattr(model, "text_encoder", None)
                if encoder is not None and hasattr(model, "use_text_encoder"):
                    model.use_text_encoder(QueryCacheEncoder(encoder(), self.query_cache))
            self.model_llms = list(model.llms_)
            new_llms = [name for name in wanted if name not in model.llms_]
            if new_llms and not hasattr(model, "add_llm"):
                log.warning("the %s router cannot take LLMs it was not trained on; left out: %s", model.name, new_llms)
            elif new_llms:
                for name in new_llms:
                    model.add_llm(name, wanted[name])
            tombstones = self.store.tombstones()
            saved = len(history)
            history = [r for r in history if r.user not in tombstones]
            seen = {_history_key(r) for r in history}
            rows = self.store.feedback_rows()
            known = set(model.llms_)
            added, skipped = 0, 0
            for row in rows:
                if not set(row.record.llms) <= known:
                    skipped += 1
                    continue
                if _history_key(row.record) not in seen:
                    history.append(row.record)
                    seen.add(_history_key(row.record))
                    added += 1
            # the saved context holds for the saved history and LLMs only: no user forgotten, no feedback added
            unchanged = model_dir is not None and len(history) == saved and not added and not new_llms
            state = load_context_state(model_dir) if unchanged else None
            router = self._router(model, history, state)
        self._folded = {row.id: row.user for row in rows}
        self._tombstones = tombstones
        self._refitted_at = 0
        identity = model_identity(model_dir) if model_dir is not None else {"model_version": "cold", "data_hash": ""}
        info = {
            "model_dir": str(model_dir) if model_dir is not None else None,
            **identity,
            "llms": router.llms,
            "history_records": len(history),
            "stored_feedback_replayed": added,
            "stored_feedback_skipped": skipped,
            "stored_feedback_unreadable": len(self.store.unreadable),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if skipped:
            log.warning("%d stored feedback records name LLMs the router at %s does not know", skipped, model_dir)
        return router, info

    # ------------------------------------------------------------------------------------------ routing

    async def previous_llm(
        self, user: str, messages: Sequence[Mapping[str, Any]], conversation: str | None
    ) -> str | None:
        """The LLM that answered the previous turn: the `model` on the chat's last assistant message, else the
        choice of the newest route stored for this user's `conversation`.

        The store, not this replica's memory, answers for a conversation id: it survives restarts, sees every
        replica's routes, and is keyed by the user, so one user's conversation id never reads another's routes.
        """
        named = previous_model(messages)
        if named is not None or conversation is None:
            return named
        return await asyncio.to_thread(self.routes.last_choice, user, conversation)

    async def route(
        self,
        user: str,
        query: str,
        candidates: list[str] | None,
        cost_weight: float,
        turn: int = 1,
        chat: ChatTurn | None = None,
        explore: bool | None = None,
    ) -> Routed:
        """Route one request (after this user's acknowledged feedback is live) and store it; `chat` places it in
        its conversation, `explore=False` keeps it from exploring."""
        chat = chat or ChatTurn()
        if chat.previous_llm is None:
            chat.previous_llm = await self.previous_llm(user, chat.messages, chat.conversation)
        live = await self.caught_up(user)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Routed] = loop.create_future()

        def answer(result: Routed | BaseException) -> None:
            _call_soon(loop, future, result)

        self._routes.put(_RouteJob(user, query, candidates, cost_weight, turn, answer, chat, explore))
        routed = await future
        if not live:
            routed.decision.notes.append(f"feedback of '{user}' is still being folded in; this route does not show it")
        return routed

    def _route_loop(self) -> None:
        while True:
            job = self._routes.get()
            if job is None:
                return
            self._route_batch(self._gather(job))

    def _gather(self, first: _RouteJob) -> list[_RouteJob]:
        """The requests waiting now; if one needs its query embedded, up to `batch_wait` s more for others.

        One encoder call for many queries costs far less than one call each, so a fresh query waits a few
        milliseconds for company; a batch of cached queries never waits.
        """
        batch = [first]
        deadline: float | None = None
        while len(batch) < self.batch_max:
            try:
                if deadline is None:
                    more = self._routes.get_nowait()
                else:
                    more = self._routes.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if deadline is None and self.batch_wait and self._needs_encoding(batch):
                    deadline = time.monotonic() + self.batch_wait
                    continue
                break
            if more is None:
                self._routes.put(None)
                break
            batch.append(more)
        return batch

    def _needs_encoding(self, batch: list[_RouteJob]) -> bool:
        return self.router.needs_encoding([job.query for job in batch])

    def _route_batch(self, batch: list[_RouteJob]) -> None:
        with self._router_lock:
            self._route_batch_locked(batch)

    def _route_batch_locked(self, batch: list[_RouteJob]) -> None:
        router = self.router  # one router for the whole batch, even if a reload swaps it meanwhile
        try:
            encoded = router.encode_queries([job.query for job in batch])  # none where the model reads no text
        except Exception as error:  # the encoder failing fails the batch, not the thread
            log.exception("encoding a batch of %d queries failed", len(batch))
            for job in batch:
                job.answer(error)
            return
        results: list[tuple[_RouteJob, Routed]] = []
        for job in batch:
            try:
                results.append((job, self._route_one(router, job)))
            except Exception as error:
                job.answer(error)
        rows = [
            RouteRow(
                id=r.route_id,
                user=job.user,
                query=job.query,
                candidates=[x.llm for x in r.decision.ranking],
                choice=r.decision.llm,
                ranking=[vars(x) for x in r.decision.ranking],
                created=r.created,
                turn=job.turn,
                conversation=job.chat.conversation,
                previous_llm=r.decision.previous_llm,
                switch_cost=r.decision.switch_cost,
                explored=r.decision.explored,
                arm=r.arm,
            )
            for job, r in results
        ]
        try:  # committed behind the answer, in one transaction with whatever else queued meanwhile
            self.routes.add(rows)
        except Exception as error:  # the database is failing and refused them: nothing was answered or stored
            for job, _ in results:
                job.answer(error)
            return
        for job, routed in results:
            job.answer(routed)
        self.on_batch(len(batch), encoded)

    def _explanation(
        self, router: Router, user: str, query: str, llm: str, against: str | None = None
    ) -> list[dict[str, Any]]:
        """`explanation_of`, kept per (user, LLM) for as long as `router` and its history stay as they are (the
        fold clears it when it changes the history in place): a route of a known user costs no history scan."""
        if self._explained_by is not router:
            self._explained_by, self._explained = router, {}
        key = (user, llm, against)
        found = self._explained.get(key)
        if found is None:
            if len(self._explained) >= EXPLANATIONS_KEPT:
                self._explained.clear()
            found = self._explained[key] = explanation_of(router, user, query, llm, against)
        return [dict(item) for item in found]  # callers may change theirs

    def _route_one(self, router: Router, job: _RouteJob) -> Routed:
        """The router's decision for one request, or the control arm's where the route's draw gives it that."""
        route_id = uuid.uuid4().hex
        control = self.arms.takes(route_id)
        chat = job.chat
        decision = router.route(
            job.user,
            chat.messages or job.query,
            job.candidates,
            job.cost_weight,
            switch_cost=chat.switch_cost,
            previous_llm=chat.previous_llm,
            explore=False if control else job.explore,
        )
        arm = ROUTER
        if control:
            decision, arm = self.arms.decide(router, decision)
        # a control route was not chosen from the user's history: nothing of theirs explains it
        why = []
        if arm != CONTROL:
            why = self._explanation(router, job.user, job.query, decision.llm, runner_up(decision))
        return Routed(route_id, decision, why, time.time(), arm)

    def preview(
        self, user: str, query: str, candidates: list[str] | None, cost_weight: float
    ) -> tuple[RouteDecision, list[dict[str, Any]]]:
        """What `route` would answer, and why, without storing anything and without exploring (the console's Try
        it; blocking)."""
        with self._router_lock:
            router = self.router
            decision = router.route(user, query, candidates, cost_weight, explore=False)
            return decision, explanation_of(router, user, query, decision.llm, runner_up(decision))

    def explain(self, user: str, query: str, llm: str, against: str | None = None) -> list[dict[str, Any]]:
        """The user's past interactions that did most for `llm` (against the runner-up `against`), by the live
        router (blocking)."""
        with self._router_lock:
            return explanation_of(self.router, user, query, llm, against)

    def beliefs(self, user: str) -> list[Belief]:
        """What the live router believes of `user` (`serve.beliefs`; blocking)."""
        with self._router_lock:
            return beliefs(self.router, user)

    def llm_evidence(self) -> dict[str, tuple[int, int]]:
        """Per LLM, the comparisons and thumbs of the live history that involve it (blocking)."""
        with self._router_lock:
            return self._evidence.of(self.router.context.history)

    # ------------------------------------------------------------------------------------------ folding

    def _submit(self, op: _Op, users: Sequence[str] = ()) -> int:
        with self._lock:
            self._seq += 1
            op.seq = self._seq
            for user in users:
                self._user_seq[user] = op.seq
        self._ops.put(op)
        return op.seq

    def observe(self, rows: Sequence[StoredFeedback]) -> None:
        """Fold committed feedback rows into the history (soon; routes of their users wait for it)."""
        if rows:
            self._submit(_Op("observe", rows=list(rows)), [row.user for row in rows])

    async def _await_op(self, op: _Op, users: Sequence[str] = ()) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        op.done = lambda result: _call_soon(loop, future, result)
        self._submit(op, users)
        return await future

    async def forget(self, user: str, texts: frozenset[str] = frozenset()) -> None:
        """Drop the user's history from the live router and their texts from the encoder's caches (the caller has
        deleted their rows; `texts` are the texts those rows held)."""
        await self._await_op(_Op("forget", user=user, texts=texts), [user])

    async def reload(self, model_dir: str | Path) -> dict[str, Any]:
        """Load another model in the background and swap it in; requests in flight finish on the old one."""
        return await self._await_op(_Op("reload", model_dir=Path(model_dir)))

    async def llms_changed(self) -> None:
        """Bring the live router to the stored LLMs (the caller has just changed them); returns once it routes
        among them."""
        await self._await_op(_Op("llms"))

    async def caught_up(self, user: str, timeout: float = 120.0) -> bool:
        """Wait until every feedback of `user` acknowledged so far is live; False if it took over `timeout`."""
        with self._lock:
            needed = self._user_seq.get(user, 0)
            if needed <= self._live:
                return True
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((needed, lambda _: _call_soon(loop, future, None)))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False

    def pending(self) -> int:
        """Ops submitted but not yet live."""
        return self._seq - self._live

    @property
    def refitting(self) -> bool:
        """Whether the priors of a router with no logs are being chosen again (the result not live yet)."""
        return self._refitting

    def _fold_loop(self) -> None:
        while True:
            self._maybe_refit()
            try:
                op = self._ops.get(timeout=self.sync_seconds or None)
            except queue.Empty:
                op = _Op("sync")
            if op is None:
                return
            ops = [op]
            while True:
                try:
                    more = self._ops.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._ops.put(None)
                    break
                ops.append(more)
            if self.sync_seconds and time.time() - self._last_sync >= self.sync_seconds:
                ops.append(_Op("sync"))
            try:
                self._fold(ops)
            except Exception:  # keep folding later feedback; the failed batch is retried at the next start
                log.exception("folding %d changes into the history failed", len(ops))
                for op in ops:
                    if op.done is not None:
                        op.done(RuntimeError("the history could not be updated; see the server log"))
            self._advance(max(op.seq for op in ops))

    def _fold(self, ops: list[_Op]) -> None:
        """Apply ops in order to a copy of the history; build and swap in one new router per run of changes."""
        history: list[Interaction] | None = None
        model: PreferenceRouter | None = None  # a refitted model to swap in with the history
        added = 0
        for op in ops:
            if op.kind == "reload":
                if history is not None:
                    self._swap(history, added, model)
                    history, model, added = None, None, 0
                try:
                    router, info = self._load(op.model_dir)
                except Exception as error:
                    op.done(error)
                    continue
                self.router, self.model_dir, self.load_info = router, op.model_dir, info
                settle_heap()
                op.done(info)
                continue
            if op.kind in ("llms", "sync"):
                entries = self.catalog.entries()
                if op.kind == "llms" or entries != self._entries:
                    self._apply_llms(entries)
                if op.kind == "llms":
                    continue
            if op.kind == "observe" and history is None:
                # New feedback only: observe it in place, re-encoding just the subgraph around its users.
                fresh: list[Interaction] = []
                if self._add_rows(fresh, op.rows):
                    started = time.perf_counter()
                    self._observe_in_place(fresh, op.rows)
                    self.on_fold(time.perf_counter() - started, len(fresh))
                continue
            if op.kind == "refit":
                fit, self._refitting = op.refitted, False
                if fit is None or fit.of is not self.router.model or fit.llm_changes != self._llm_changes:
                    continue  # a reload or a new LLM came in between: chosen again at the next fold
                model, self._refitted_at = fit.model, fit.records
            if history is None:
                history = list(self.router.context.history)
            if op.kind == "observe":
                added += self._add_rows(history, op.rows)
            elif op.kind == "forget":
                texts = set(op.texts) | {t for r in history if r.user == op.user for t in _texts(r)}
                history[:] = [r for r in history if r.user != op.user]
                self._unfold(op.user)
                self._tombstones[op.user] = time.time()
                self._drop_texts(texts, history)
                added += 1
            elif op.kind == "sync":
                try:
                    added += self._sync(history)
                except Exception as error:  # the database is away: try again at the next sync
                    log.warning("picking up other replicas' feedback failed (%s); retrying later", error)
                    self._last_sync -= self.sync_seconds
            elif op.kind == "refit":
                added += 1
        if history is not None and added:
            self._swap(history, added, model)
        for op in ops:
            if op.done is not None and op.kind != "reload":
                op.done(None)

    def _observe_in_place(self, fresh: list[Interaction], rows: Sequence[StoredFeedback]) -> None:
        """Fold new records into the live router; records it cannot fold are left out (and named), the rest go in.

        `Router.observe_many` adds all or none, so a record that fails leaves the router as it was; it is dropped
        and the others are folded again.
        """
        try:
            with self._router_lock:
                self.router.observe_many(fresh)
                self._explained = {}  # the history changed in place
            return
        except FoldError as error:
            bad, reason = set(error.indices) or set(range(len(fresh))), str(error)
        ids = {id(row.record): row.id for row in rows}
        for index in sorted(bad):
            row_id = ids.get(id(fresh[index]), -1)
            self._unfoldable[row_id] = reason
            self._folded.pop(row_id, None)  # not in the history; `_add_rows` skips it from now on
            log.error("feedback row %d cannot be folded and is left out of the history: %s", row_id, reason)
        kept = [record for index, record in enumerate(fresh) if index not in bad]
        if kept and len(kept) < len(fresh):
            self._observe_in_place(kept, rows)

    def unfoldable(self) -> int:
        """Stored feedback rows left out of the history: unreadable ones, and ones folding failed on."""
        return len(self.store.unreadable.keys() | self._unfoldable.keys())

    def _apply_llms(self, entries: dict[str, CatalogEntry]) -> None:
        """Add the stored LLMs the live router does not know yet (in place: a new LLM joins at the population's
        average) and apply every retirement and price."""
        router = self.router
        new = [name for name, e in entries.items() if e.added is not None and name not in router.llms]
        if new and not hasattr(router.context, "add_llm"):
            log.warning("the %s router cannot take LLMs it was not trained on; left out: %s", router.model.name, new)
            new = []
        with self._router_lock:
            self._entries = entries
            for name in new:
                router.add_llm(name, entries[name].spec.description)
            self._configure_llms(router)
            self._explained = {}  # the router changed in place
        self._llm_changes += len(new)
        self.on_llms(entries)

    def _maybe_refit(self) -> None:
        """Start choosing the priors of a router with no logs again once its history has reached `refit_after`
        records, and each time it has doubled since: in a thread of its own, on a copy of the model, so that
        routing and folding go on meanwhile (it takes seconds); the result is swapped in by the fold thread."""
        router = self.router
        due = max(self.refit_after, 2 * self._refitted_at)
        if not self.cold or self._refitting or not self.refit_after or len(router.context.history) < due:
            return
        self._refitting = True
        job = (router.model, list(router.context.history), self._llm_changes)
        threading.Thread(target=self._refit, args=job, name="gmtrouter-refit", daemon=True).start()

    def _refit(self, model: PreferenceRouter, records: list[Interaction], llm_changes: int) -> None:
        started = time.perf_counter()
        try:
            fresh = copy.copy(model)  # the backbone's settings are replaced, not changed in place
            fresh.refit_backbone(records)
        except Exception:
            log.exception("choosing the priors again over %d records failed; tried again when it doubles", len(records))
            self._refitted_at, self._refitting = len(records), False
            return
        log.info("priors chosen again over %d records in %.1f s", len(records), time.perf_counter() - started)
        self._submit(_Op("refit", refitted=_Refit(fresh, model, len(records), llm_changes)))

    def _unfold(self, user: str) -> None:
        self._folded = {i: u for i, u in self._folded.items() if u != user}

    def _drop_texts(self, texts: set[str], history: Sequence[Interaction]) -> None:
        """Remove a forgotten user's texts from the encoder's caches, except those other users' history holds."""
        encoder = getattr(self.router.model, "text_encoder", None)
        forget = getattr(encoder(), "forget", None) if encoder is not None else None
        if forget is None or not texts:
            return
        kept = {t for r in history for t in _texts(r)}
        forget([t for t in texts if t not in kept])

    def _add_rows(self, history: list[Interaction], rows: Sequence[StoredFeedback]) -> int:
        known = set(self.router.llms)
        count = 0
        forgotten = [row.id for row in rows if row.user in self._tombstones]
        if forgotten:  # committed just before their user was forgotten: only rows still stored may enter
            alive = {(row.id, row.key) for row in self.store.feedback_rows(ids=forgotten)}
            rows = [row for row in rows if row.user not in self._tombstones or (row.id, row.key) in alive]
        for row in rows:
            if row.id in self._folded or row.id in self._unfoldable or not set(row.record.llms) <= known:
                continue
            self._folded[row.id] = row.user
            history.append(row.record)
            count += 1
        return count

    def _sync(self, history: list[Interaction]) -> int:
        """Pick up what other replicas stored: feedback rows not yet folded, users forgotten elsewhere."""
        since = self._last_sync - SYNC_LOOKBACK_S
        self._last_sync = time.time()
        changed = 0
        for user, at in self.store.tombstones(since).items():
            if at > self._tombstones.get(user, 0.0):  # forgotten by another replica: drop, then re-add what is left
                self._tombstones[user] = at
                history[:] = [r for r in history if r.user != user]
                self._unfold(user)
                for row in self.store.feedback_rows(user=user):
                    history.append(row.record)
                    self._folded[row.id] = row.user
                changed += 1
        unseen = [i for i in self.store.feedback_ids(created_since=since) if i not in self._folded]
        return changed + self._add_rows(history, self.store.feedback_rows(ids=unseen) if unseen else [])

    def _swap(self, history: list[Interaction], changes: int, model: PreferenceRouter | None = None) -> None:
        started = time.perf_counter()
        self.router = self._router(model or self.router.model, history)
        self.on_fold(time.perf_counter() - started, changes)

    def _advance(self, seq: int) -> None:
        with self._lock:
            self._live = max(self._live, seq)
            ready = [w for w in self._waiters if w[0] <= self._live]
            self._waiters = [w for w in self._waiters if w[0] > self._live]
        for _, wake in ready:
            wake(None)

    def close(self) -> None:
        """Stop both threads after the work already queued."""
        self._routes.put(None)
        self._ops.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self.routes.close()


def _call_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any) -> None:
    """Settle an event-loop future from a worker thread (a loop already closed has no one left to answer)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


__all__ = ["ChatTurn", "Engine", "GmtError", "Routed", "explanation_of"]
