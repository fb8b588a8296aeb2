"""Training GMTRouter: user-conditioned sampling, pairwise/listwise loss, early stopping on validation AUC."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import holdout_split
from gmtrouter.evaluation.metrics import evaluate_scores
from gmtrouter.graph.build import HeteroGraph, TargetBatch
from gmtrouter.graph.sample import SamplingConfig, UserRecords, sample_step, shuffled_ranks
from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.communities import Communities, learn
from gmtrouter.model.comparisons import Comparisons
from gmtrouter.model.deviations import FitCache, Priors, responsive
from gmtrouter.model.loss import preference_loss
from gmtrouter.model.network import GMTRouterNet
from gmtrouter.model.population import Population
from gmtrouter.model.prior import PriorScores, comparison_loss
from gmtrouter.model.topics import fit_topics, topic_of
from gmtrouter.training.distributed import agree, workers
from gmtrouter.training.early_stopping import EarlyStopping

TUNING_FOLDS = 5
# Candidate prior strengths (a prior's precision on a deviation; inf: that deviation off). A user's deviation is
# never off, and only user priors that keep feedback visible are candidates (`responsive`: three consistent votes
# against an 80% population preference bring it to 65%, ten overturn it): a Gaussian prior up to 4, a Student-t
# one (one degree of freedom) up to 16, which holds one or two noisy votes more firmly and lets three through.
USER_PRIOR_GRID = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
USER_TAIL_GRID = [math.inf, 1.0]
TOPIC_PRIOR_GRID = [math.inf, 0.5, 1.0, 2.0, 4.0, 8.0]
STAY_PRIOR_GRID = [math.inf, 0.5, 1.0, 2.0, 4.0, 8.0]  # a user's stickiness to the previous turn's LLM
QUERY_PRIOR_GRID = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, math.inf]
# A user's own verdict on one query is never off and never stiffer than the query's shared one: what one user
# says of an answer is first their own, and only what is left reaches everybody's view of the query.
OWN_PRIOR_GRID = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
# Taste communities: how many (1: none), how much more tightly a user then keeps to theirs, and the folds that
# judge them: records of known users and whole users shown their first few records.
COMMUNITY_GRID = [1, 2, 4, 8]
COMMUNITY_STIFFNESS = [1.0, 4.0]
COMMUNITY_FOLDS = 3
EPISODE_SHOTS = (1, 3, 5, 10)


class Trainable(Protocol):
    """What training reads and sets on a router (GMTRouter is one): its settings, its network and its backbone.

    Training is a step of the router's `fit`, so it takes the router through this interface rather than by
    its class, which imports it."""

    # settings
    seed: int
    steps: int
    lr: float
    weight_decay: float
    eval_every: int
    patience: int
    residual: bool
    residual_margin: float
    thumbs_rate: float
    valid_frac: float
    valid_users: int
    users_per_step: int
    tune_users: int
    user_sampling: bool
    backbone: bool
    conversation: bool
    progress: bool
    user_prior: float | None
    user_tail: float | None
    query_prior: float | None
    stay_prior: float | None
    own_prior: float | None
    communities: int | None
    task_prior: float | None
    topic_prior: float | None
    # learned
    net_: GMTRouterNet
    population_: Population
    topics_: np.ndarray
    priors_: Priors
    communities_: Communities | None

    def table(self, records: Sequence[Interaction]) -> InteractionTable: ...
    def graph(self, table: InteractionTable, records: np.ndarray, extra_users: np.ndarray = ...) -> HeteroGraph: ...
    def sampling(self) -> SamplingConfig: ...
    def fit_population(self, table: InteractionTable, records: np.ndarray) -> None: ...
    def score_targets(
        self,
        table: InteractionTable,
        graph: HeteroGraph,
        scored: np.ndarray,
        shown: np.ndarray | None = ...,
        network: bool = ...,
        net: torch.nn.Module | None = ...,
    ) -> tuple[torch.Tensor, TargetBatch]: ...


def _validation_split(router: Trainable, train: list[Interaction]) -> tuple[list[Interaction], list[Interaction]]:
    """Hold out a share of each user's records (known-user style) when there is enough data."""
    return holdout_split(train, router.valid_frac, router.seed)


def train_network(router: Trainable, train: list[Interaction], valid: Sequence[Interaction] | None) -> dict[str, Any]:
    """Tune the backbone, then fit `router.net_`'s residual in place; return a log of the run.

    The backbone's priors are chosen first (by cross-validation on the training records); the network then
    learns a residual on top, and validation (from step 0, the backbone alone) keeps the best weights. The
    residual must beat the backbone alone by `residual_margin` validation AUC to be kept at all: on a small
    hold-out, smaller gains are noise, and keeping noise costs accuracy on unseen records.
    """
    started = time.perf_counter()
    if valid is None:
        train, valid = _validation_split(router, train)
    valid = list(valid)
    thumbs, thumb_of = thumb_versions(train)
    table = router.table(train + valid + thumbs)
    train_ids = np.arange(len(train))
    valid_ids = np.arange(len(train), len(train) + len(valid))
    thumb_ids = np.where(thumb_of >= 0, len(train) + len(valid) + thumb_of, -1)
    tuning = tune_backbone(router, table, train_ids)
    team = workers()  # None on a single process
    leader = team is None or team.leader
    # each rank draws its own users; rank 0 (and a single process) draws what it always did
    rng = np.random.default_rng(router.seed if leader else [router.seed, team.rank])
    torch.manual_seed(router.seed)
    net = router.net_
    steps = router.steps if router.residual else 0
    model = DistributedDataParallel(net, find_unused_parameters=True) if team and steps else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=router.lr, weight_decay=router.weight_decay)
    sampling = router.sampling()
    if not leader:
        valid = []  # rank 0 alone validates; it tells the others when to stop

    valid_ids, valid, shown_for_valid = _validation_users(router, table, train_ids, valid_ids, valid, rng)
    valid_graph = router.graph(table, shown_for_valid, extra_users=table.rec_user[valid_ids]) if valid else None
    full_graph = None if router.user_sampling else router.graph(table, train_ids)
    by_user = UserRecords.of(table.rec_user[train_ids])

    stopping = EarlyStopping(net, router.patience, start_margin=router.residual_margin)
    history: list[dict[str, float]] = []
    if valid:  # step 0: the backbone alone (the residual starts at zero)
        auc = _validation_auc(router, table, valid_graph, valid_ids, valid)
        stopping.check(0, auc)
        history.append({"step": 0, "loss": float("nan"), "valid_auc": auc})
    step = 0
    bar = tqdm(range(1, steps + 1), desc="training", unit="step", disable=not router.progress or not leader)
    step_seconds = 0.0  # the training steps' own time, validation left out: what grows with the data
    for step in bar:
        step_started = time.perf_counter()
        net.train()
        if router.user_sampling:
            drawn = by_user.sample(router.users_per_step, rng)  # None: every user takes part in every step
            pool, pool_thumbs = (train_ids, thumb_ids) if drawn is None else (train_ids[drawn], thumb_ids[drawn])
            visible, hidden = sample_step(table.rec_user[pool], sampling, rng)
            shown = as_thumbs(pool[visible], pool_thumbs[visible], router.thumbs_rate, rng)
            graph = router.graph(table, shown, extra_users=table.rec_user[pool[hidden]])
            scores, batch = router.score_targets(table, graph, pool[hidden], net=model)
        else:  # ablation: one graph of everything, targets drawn from inside it (but not from the backbone's)
            hidden = rng.choice(train_ids, min(len(train_ids), sampling.targets_per_step), replace=False)
            shown = np.setdiff1d(train_ids, hidden)
            scores, batch = router.score_targets(table, full_graph, hidden, shown=shown, net=model)
        loss = preference_loss(scores, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        step_seconds += time.perf_counter() - step_started

        if step % router.eval_every == 0 or step == steps:
            stop = False
            if valid:
                auc = _validation_auc(router, table, valid_graph, valid_ids, valid)
                history.append({"step": step, "loss": loss.item(), "valid_auc": auc})
                bar.set_postfix(loss=f"{loss.item():.3f}", valid_auc=f"{auc:.3f}")
                stop = stopping.check(step, auc)
            if agree(stop, team):
                break
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    stopping.restore()
    net.eval()
    router.fit_population(table, np.arange(len(train) + len(valid)))  # the thumb versions are not data
    return {
        "steps": step,
        "best_step": stopping.best_step,
        "best_valid_auc": stopping.best_score,
        "stop": stopping.summary(steps),
        "backbone": tuning,
        "train_records": len(train),
        "valid_records": len(valid),
        "seconds": round(time.perf_counter() - started, 2),
        "processes": team.world if team else 1,
        "tuning_seconds": tuning.pop("seconds", None),
        "seconds_per_step": round(step_seconds / step, 4) if step else None,
        "curve": history,
    }


def _validation_users(
    router: Trainable,
    table: InteractionTable,
    train_ids: np.ndarray,
    valid_ids: np.ndarray,
    valid: list[Interaction],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Interaction], np.ndarray]:
    """(validation records, the same as interactions, the training records their graph shows): those of at
    most `valid_users` users drawn once, or every one when there are no more users than that. Each check then
    encodes those users' graph, not everybody's, so its cost stays bounded as users grow."""
    users = np.unique(table.rec_user[valid_ids])
    if len(users) <= router.valid_users:
        return valid_ids, valid, train_ids
    chosen = rng.choice(users, router.valid_users, replace=False)
    keep = np.isin(table.rec_user[valid_ids], chosen)
    shown = train_ids[np.isin(table.rec_user[train_ids], chosen)]
    return valid_ids[keep], [record for record, kept in zip(valid, keep, strict=True) if kept], shown


def tune_backbone(router: Trainable, table: InteractionTable, train_ids: np.ndarray) -> dict[str, Any]:
    """Set the population strengths and query topics, and choose the priors by cross-validation.

    The backbone has no weights to train, so every candidate is scored on `TUNING_FOLDS` folds of the
    training records (each fold holds out a share of every user's records, shown the rest) by the pairwise
    log-loss of the held-out comparisons: many more held-out records than one validation split, and a smooth
    criterion, so the choice is stable. The user and query priors are chosen together, then the task prior
    and the topic prior, each given the ones before; a user's stickiness to the previous turn's LLM is chosen
    right after the user and query priors. Priors fixed in the settings are kept.
    """
    started = time.perf_counter()
    router.fit_population(table, train_ids)
    router.topics_ = fit_topics(table.query_emb[np.unique(table.rec_query[train_ids])], router.seed)
    router.communities_ = None
    if not router.backbone:
        router.priors_ = Priors(math.inf, math.inf, math.inf, math.inf)
        return {}
    query_topic = topic_of(table.query_emb, router.topics_)
    topics = max(len(router.topics_), 1)

    def grid(setting: float | None, values: list[float]) -> list[float]:
        return [setting] if setting is not None else values

    rng = np.random.default_rng(router.seed)
    drawn = UserRecords.of(table.rec_user[train_ids]).sample(router.tune_users, rng)
    tuned_ids = train_ids if drawn is None else train_ids[drawn]  # the priors are chosen on these users' records
    folds = _folds(table.rec_user[tuned_ids], TUNING_FOLDS, rng)
    by_record = [(tuned_ids[folds != fold], tuned_ids[folds == fold]) for fold in range(TUNING_FOLDS)]
    cache = FitCache()  # candidates share their earlier parts: every query prior refits the same users first

    def best(candidates: list[Priors], splits: list[tuple[np.ndarray, np.ndarray]] = by_record) -> Priors:
        loss = np.zeros(len(candidates))
        for shown, held in splits:
            comparisons = Comparisons.of(table, held)
            for i, priors in enumerate(candidates):
                prior = PriorScores.of(table, shown, router.population_, priors, query_topic, topics, cache=cache)
                loss[i] += comparison_loss(comparisons, table, prior)
        return candidates[int(np.argmin(loss))]

    tails = grid(router.user_tail, USER_TAIL_GRID)
    users = [(user, tail) for user in grid(router.user_prior, USER_PRIOR_GRID) for tail in tails]
    users = [(user, tail) for user, tail in users if responsive(user, tail)] or users  # settings fixed by hand stay
    chosen = best(
        [
            Priors(user, query, user_tail=tail)
            for user, tail in users
            for query in grid(router.query_prior, QUERY_PRIOR_GRID)
        ]
    )
    shared = [
        (own, query)
        for own in grid(router.own_prior, OWN_PRIOR_GRID)
        for query in grid(router.query_prior, QUERY_PRIOR_GRID)
    ]
    shared = [(own, query) for own, query in shared if own <= query] or shared  # settings fixed by hand stay
    chosen = best([replace(chosen, own=own, query=query) for own, query in shared])
    if router.conversation:
        chosen = best([replace(chosen, stay=stay) for stay in grid(router.stay_prior, STAY_PRIOR_GRID)])
    topical = bool(len(router.topics_))
    task_grid = grid(router.task_prior, TOPIC_PRIOR_GRID) if topical else [math.inf]
    # The task deviation is what carries a query's neighbours' verdicts to a query never seen, so it is judged
    # on folds of whole queries: held-out records of seen queries would let the query deviation answer instead.
    query_folds = rng.integers(TUNING_FOLDS, size=len(table.query_vocab))[table.rec_query[tuned_ids]]
    by_query = [(tuned_ids[query_folds != fold], tuned_ids[query_folds == fold]) for fold in range(TUNING_FOLDS)]
    chosen = best([replace(chosen, task=task) for task in task_grid], by_query)
    topic_grid = grid(router.topic_prior, TOPIC_PRIOR_GRID) if topical else [math.inf]
    router.priors_ = best([replace(chosen, topic=topic) for topic in topic_grid])
    tried = choose_communities(router, table, tuned_ids, query_topic, topics, by_record, rng, cache)
    return {
        "task_prior": _finite(router.priors_.task),
        "user_prior": _finite(router.priors_.user),
        "user_tail": _finite(router.priors_.user_tail),
        "query_prior": _finite(router.priors_.query),
        "topic_prior": _finite(router.priors_.topic),
        "stay_prior": _finite(router.priors_.stay),
        "own_prior": _finite(router.priors_.own),
        "stay": router.population_.stay,
        "topics": len(router.topics_),
        "communities": 0 if router.communities_ is None else router.communities_.count,
        "community_losses": tried,
        "folds": TUNING_FOLDS,
        "tuning_records": len(tuned_ids),
        "seconds": round(time.perf_counter() - started, 2),
    }


def choose_communities(
    router: Trainable,
    table: InteractionTable,
    tuned_ids: np.ndarray,
    query_topic: np.ndarray,
    topics: int,
    by_record: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    cache: FitCache | None = None,
) -> dict[str, float]:
    """Set `router.communities_`: how many taste communities (none, or 2, 4, 8) and how tightly a user keeps to
    theirs (the user and topic priors as tuned, or `COMMUNITY_STIFFNESS` times stiffer), by the held-out log-loss
    on folds of records (known users) and on folds of whole users shown their first 1, 3, 5 or 10 records (new
    users: what communities are for). Communities are learnt on each fold's shown records, as at the end on the
    tuned users'. Returns the loss of every candidate tried."""
    counts = [router.communities] if router.communities is not None else COMMUNITY_GRID
    base = router.priors_
    candidates = [(1, 1.0)] if 1 in counts else []
    for count in (c for c in counts if c > 1):
        for stiffness in COMMUNITY_STIFFNESS:
            if stiffness == 1.0 or responsive(base.user * stiffness, base.user_tail):
                candidates.append((count, stiffness))
    router.communities_ = None
    if len(candidates) <= 1:
        count, stiffness = candidates[0] if candidates else (1, 1.0)
    else:
        splits = by_record[:COMMUNITY_FOLDS] + _episodes(table.rec_user[tuned_ids], tuned_ids, rng)
        loss = dict.fromkeys(candidates, 0.0)
        for shown, held in splits:
            comparisons = Comparisons.of(table, held)
            for count, stiffness in candidates:
                priors = _stiffened(base, stiffness)
                communities = learn_communities(router, table, shown, priors, query_topic, topics, count, cache)
                prior = PriorScores.of(
                    table, shown, router.population_, priors, query_topic, topics, communities=communities, cache=cache
                )
                loss[count, stiffness] += comparison_loss(comparisons, table, prior)
        count, stiffness = min(loss, key=loss.get)
    if count > 1:
        router.priors_ = _stiffened(base, stiffness)
        router.communities_ = learn_communities(
            router, table, tuned_ids, router.priors_, query_topic, topics, count, cache
        )
    return {} if len(candidates) <= 1 else {f"{c}x{k:g}": round(v, 2) for (c, k), v in loss.items()}


def learn_communities(
    router: Trainable,
    table: InteractionTable,
    shown: np.ndarray,
    priors: Priors,
    query_topic: np.ndarray,
    topics: int,
    count: int,
    cache: FitCache | None = None,
) -> Communities | None:
    """`count` taste communities learnt by EM from the users' `shown` records (None for one); `cache`: as for
    `PriorScores.of`."""
    users = len(table.user_vocab)
    records = np.bincount(table.rec_user[shown], minlength=users)

    def refit(communities: Communities | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        prior = PriorScores.of(
            table, shown, router.population_, priors, query_topic, topics, communities=communities, cache=cache
        )
        return prior.user, prior.topic.reshape(users, topics, -1), prior.membership, records

    return learn(count, refit, router.seed)


def _stiffened(priors: Priors, stiffness: float) -> Priors:
    """`priors` with the user's deviations, overall and on topics, held `stiffness` times more tightly."""
    return replace(priors, user=priors.user * stiffness, topic=priors.topic * stiffness)


def _episodes(
    record_users: np.ndarray, ids: np.ndarray, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of whole users: in each, a share of the users shows only their first k records (k cycling through
    `EPISODE_SHOTS`, in record order) and is scored on the rest; everybody else shows everything."""
    users = np.unique(record_users)
    fold_of = rng.integers(COMMUNITY_FOLDS, size=len(users))
    shots = np.asarray(EPISODE_SHOTS)[rng.integers(len(EPISODE_SHOTS), size=len(users))]
    position = np.searchsorted(users, record_users)
    order = np.argsort(record_users, kind="stable")
    rank = np.empty(len(record_users), dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(record_users[order])) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    rank[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    splits = []
    for fold in range(COMMUNITY_FOLDS):
        out = fold_of[position] == fold
        held = out & (rank >= shots[position])
        splits.append((ids[~held], ids[held]))
    return splits


def thumb_versions(records: Sequence[Interaction]) -> tuple[list[Interaction], np.ndarray]:
    """(thumb records, index into them for each record or -1): each decisively rated comparison, seen as a thumbs
    up on its best response or a thumbs down on its worst (alternating), the way feedback often arrives."""
    thumbs: list[Interaction] = []
    index = np.full(len(records), -1, dtype=np.int64)
    for i, record in enumerate(records):
        ratings = record.ratings
        if len(ratings) < 2 or max(ratings) == min(ratings):
            continue
        pick = ratings.index(max(ratings)) if i % 2 == 0 else ratings.index(min(ratings))
        index[i] = len(thumbs)
        thumbs.append(record.model_copy(update={"responses": [record.responses[pick]]}))
    return thumbs, index


def as_thumbs(shown: np.ndarray, thumbs: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """`shown` with a share `rate` of the records that have a thumb version replaced by it (never both)."""
    swap = (thumbs >= 0) & (rng.random(len(shown)) < rate)
    return np.where(swap, thumbs, shown)


def _folds(record_users: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold id for every record, dealt round-robin within each user in random order; -1 (never held out)
    for a user's last record, so every user shows something in every fold."""
    order, sizes, rank = shuffled_ranks(record_users, rng)
    fold = np.where(rank < np.repeat(sizes, sizes) - 1, (rank + rng.integers(folds)) % folds, -1)
    out = np.empty(len(record_users), dtype=np.int64)
    out[order] = fold
    return out


def _finite(value: float) -> float | None:
    """A prior for JSON: None where the deviation is off."""
    return value if math.isfinite(value) else None


def _auc_of(records: Sequence[Interaction], scores: list[np.ndarray]) -> float:
    result = evaluate_scores(records, scores)
    auc = result["auc"]
    return float(auc) if auc == auc else float(result["accuracy"])


def _validation_auc(
    router: Trainable, table: InteractionTable, graph, scored: np.ndarray, records: Sequence[Interaction]
) -> float:
    router.net_.eval()
    with torch.no_grad():
        scores, batch = router.score_targets(table, graph, scored)
    counts = batch.mask.sum(dim=1).numpy()
    return _auc_of(records, [scores.numpy()[i, : counts[i]] for i in range(len(records))])
