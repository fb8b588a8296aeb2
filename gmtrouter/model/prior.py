"""The Bradley-Terry backbone of GMTRouter: what the simple rules know, computed from the graph's records.

A score is  θ_m + τ_{t,m} + δ_{u,m} + δ_{u,t,m} + γ_{q,m} + [m = p](σ + σ_u) + (the network's residual), with t
the query's topic (its nearest k-means centroid of the training queries' embeddings), τ_t everybody's deviation
on that topic (which LLM is good at what), δ_{u,t} the user's own on it (taste that depends on the task), p
the LLM that answered the conversation's previous turn (if any), σ how much everybody prefers the answer to
stay with it and σ_u how much more (or less) user u does (their stickiness); and

- θ are the population strengths (one Bradley-Terry fit over every training comparison),
- δ_u is user u's deviation, fitted on the comparisons u shows in the graph with a prior of strength
  `user_prior` (a MAP estimate: 40 consistent votes move it further than 4); the prior may be a Student-t
  (`user_tail` degrees of freedom), which holds a few noisy votes near 0 as firmly as a strong Gaussian but
  lets many consistent ones through,
- γ_q is query q's deviation, fitted on every user's comparisons of answers to the same query text, with a
  prior of strength `query_prior` (what the users thought of the answers to *this* question beyond their
  own taste).

Both deviations are read from the records shown in the graph, never from the records being scored, so a new
user adapts from their first interaction without retraining, and a scored label never leaks into its own
prior. A lone rated response (a thumbs up or down) is a comparison against a virtual opponent of average
strength, with its rating on the training data's global scale as the outcome: a thumb carries direction.
An infinite prior switches that deviation off. The previous LLM enters a fit only when the record it was
read from is shown too (or the record named it itself), so no hidden rating reaches a deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit, log_expit
from sklearn.cluster import KMeans

from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.bradley_terry import bradley_terry

GLOBAL_SCALE = 1  # column of the table's `resp_feats` with the rating on the data's global scale


@dataclass(frozen=True)
class Comparisons:
    """Rated comparisons among a set of records: pairs of responses, and lone responses against the average.

    `second` is `num_llms` (the virtual average opponent) for a lone response.
    """

    record: np.ndarray  # [C] table record id
    first: np.ndarray  # [C] LLM id
    second: np.ndarray  # [C] LLM id, or num_llms for the virtual opponent
    target: np.ndarray  # [C] 1, 0, 0.5 (tie) for pairs; the global-scale rating in [0, 1] for a lone response

    def margin(self, scores: np.ndarray) -> np.ndarray:
        """[C] each comparison's score difference, first minus second, from `scores` [C, L + 1] (every LLM's
        score for the comparison's record, the virtual average opponent last)."""
        rows = np.arange(len(self.record))
        return scores[rows, self.first] - scores[rows, self.second]

    def subset(self, keep: np.ndarray | slice) -> Comparisons:
        """The comparisons `keep` selects."""
        return Comparisons(self.record[keep], self.first[keep], self.second[keep], self.target[keep])

    def stay(self, previous: np.ndarray) -> np.ndarray:
        """[C] +1 where the first side is the LLM that answered the previous turn (`previous` [table records],
        -1: unknown), -1 where the second is, 0 where neither (the virtual opponent never is)."""
        prev = previous[self.record]
        known = prev >= 0
        return (known & (self.first == prev)).astype(np.float64) - (known & (self.second == prev))

    @classmethod
    def of(cls, table: InteractionTable, records: np.ndarray) -> Comparisons:
        """The comparisons inside table records `records`."""
        shown = np.zeros(table.num_records, dtype=bool)
        shown[np.asarray(records, dtype=np.int64)] = True
        pairs = shown[table.pair_record]
        sizes = np.diff(table.rec_offsets)
        lone = np.flatnonzero(shown & (sizes == 1))
        lone_response = table.rec_offsets[lone]
        num_llms = len(table.llms)
        return cls(
            record=np.concatenate([table.pair_record[pairs], lone]),
            first=np.concatenate([table.resp_llm[table.pair_first[pairs]], table.resp_llm[lone_response]]),
            second=np.concatenate(
                [table.resp_llm[table.pair_second[pairs]], np.full(len(lone), num_llms, dtype=np.int64)]
            ),
            target=np.concatenate(
                [table.pair_target[pairs], table.resp_feats[lone_response, GLOBAL_SCALE].astype(np.float64)]
            ),
        )


def population_strengths(table: InteractionTable, records: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """[LLMs] Bradley-Terry strengths over every comparison in `records`, all users pooled."""
    comparisons = Comparisons.of(table, records)
    is_pair = comparisons.second < len(table.llms)
    zeros = np.zeros(int(is_pair.sum()), dtype=np.int64)
    return bradley_terry(
        zeros,
        comparisons.first[is_pair],
        comparisons.second[is_pair],
        comparisons.target[is_pair],
        1,
        len(table.llms),
        l2,
    )[0]


def usable_previous(table: InteractionTable, records: np.ndarray) -> np.ndarray:
    """[table records] the previous turn's LLM where a fit on `records` may use it: named by the record itself,
    or read from a record that is among `records` as well; -1 elsewhere."""
    shown = np.zeros(table.num_records + 1, dtype=bool)
    shown[np.asarray(records, dtype=np.int64)] = True
    source = table.rec_prev_from
    return np.where((source < 0) | shown[np.where(source < 0, -1, source)], table.rec_prev_llm, -1)


def stay_bonus(previous: np.ndarray, amount: np.ndarray | float, width: int) -> np.ndarray:
    """[B, width] `amount` (one per row, or one for all) in the column of each row's previous LLM, 0 elsewhere
    and in rows whose previous LLM is unknown (-1): how stickiness enters a row of scores."""
    previous = np.asarray(previous, dtype=np.int64)
    out = np.zeros((len(previous), width))
    known = np.flatnonzero(previous >= 0)
    out[known, previous[known]] = np.broadcast_to(amount, previous.shape)[known]
    return out


def stay_deviations(
    groups: np.ndarray, n_groups: int, comparisons: Comparisons, margin: np.ndarray, stay: np.ndarray, prior: float
) -> np.ndarray:
    """[n_groups] each group's MAP preference for staying with the previous turn's LLM, beyond the `margin` [C]
    the rest of the model gives each comparison (first minus second); `stay` [C] is `Comparisons.stay`.

    It is a Bradley-Terry fit of two options, "stay" and "switch", over the comparisons that put the previous
    LLM against another: the strength difference is the stickiness (its prior precision is `prior` / 2)."""
    use = stay != 0
    if not np.isfinite(prior) or not use.any():
        return np.zeros(n_groups)
    present, compact = np.unique(groups[comparisons.record[use]], return_inverse=True)
    first = (stay[use] < 0).astype(np.int64)  # option 0 is "stay": it is the first side where stay = +1
    strengths = bradley_terry(
        compact, first, 1 - first, comparisons.target[use], len(present), 2, prior, margin[use], tol=1e-6
    )
    out = np.zeros(n_groups)
    out[present] = strengths[:, 0] - strengths[:, 1]
    return out


def population_stay(table: InteractionTable, records: np.ndarray, strengths: np.ndarray, l2: float = 1.0) -> float:
    """Everybody's preference for the previous turn's LLM, beyond the population `strengths`, over `records`."""
    comparisons = Comparisons.of(table, records)
    margin = comparisons.margin(
        np.broadcast_to(with_average(strengths[None]), (len(comparisons.record), len(strengths) + 1))
    )
    groups = np.zeros(table.num_records, dtype=np.int64)
    stay = comparisons.stay(usable_previous(table, records))
    return float(stay_deviations(groups, 1, comparisons, margin, stay, l2)[0])


def refit_scope(table: InteractionTable, users: np.ndarray) -> np.ndarray:
    """The table records that fitting the deviations of table users `users`, and of every query they asked,
    reads: their records, and every record of those queries."""
    theirs = np.isin(table.rec_user, users)
    return np.flatnonzero(theirs | np.isin(table.rec_query, np.unique(table.rec_query[theirs])))


def deviations(
    groups: np.ndarray,
    n_groups: int,
    comparisons: Comparisons,
    expected: np.ndarray,
    prior: float,
    tail: float = math.inf,
) -> np.ndarray:
    """[n_groups, LLMs] each group's MAP deviation from what is `expected` of its comparisons.

    `groups` [table records] names the group of every record (a user, a query, a user's topic);
    `expected` [C, L + 1] holds, for each comparison, the scores the rest of the model gives every LLM and
    (last column) the virtual average opponent. Groups without comparisons (and every group when `prior` is
    infinite) stay at 0. A finite `tail` makes the prior a Student-t with that many degrees of freedom.
    """
    num_llms = expected.shape[1] - 1
    if not np.isfinite(prior) or len(comparisons.record) == 0:
        return np.zeros((n_groups, num_llms))
    offset = comparisons.margin(expected)
    present, compact = np.unique(groups[comparisons.record], return_inverse=True)
    fitted = bradley_terry(
        compact,
        comparisons.first,
        comparisons.second,
        comparisons.target,
        len(present),
        num_llms + 1,
        prior,
        offset,
        iterations=20,
        tol=1e-6,
        # The virtual opponent's column (a user's overall rating bias) keeps a Gaussian prior: with a heavy
        # tail it could take all of a user's thumbs at once, and a thumb on one LLM would undo those on another.
        tail=np.append(np.full(num_llms, tail), math.inf),
    )
    out = np.zeros((n_groups, num_llms))
    out[present] = fitted[:, :num_llms]
    return out


def preference_after(votes: int, prior: float, tail: float, preference: float = 0.8) -> float:
    """One user's P(B > A) after `votes` consistent votes for B, where the population prefers A at
    `preference`, under a user prior of precision `prior` and `tail`."""
    wins = np.ones(votes)
    index = np.zeros(votes, dtype=np.int64)
    offset = -math.log(preference / (1 - preference))
    theta = bradley_terry(index, index + 1, index, wins, 1, 2, prior, offset, tol=1e-6, tail=tail)[0]
    return float(1 / (1 + math.exp(-(offset + theta[1] - theta[0]))))


def responsive(prior: float, tail: float) -> bool:
    """Whether a user prior keeps feedback visible: against an 80% population preference, three consistent votes
    bring the user's P(B > A) to at least 0.35 and ten votes past 0.5."""
    return preference_after(3, prior, tail) >= 0.35 and preference_after(10, prior, tail) > 0.5


def fit_topics(query_emb: np.ndarray, seed: int, per_topic: int = 20, most: int = 16) -> np.ndarray:
    """[K, E] unit centroids of the query embeddings (k-means, about `per_topic` queries a topic, at most
    `most` topics); [0, E] when there are too few queries for two topics."""
    count = min(most, len(query_emb) // per_topic)
    if count < 2:
        return np.zeros((0, query_emb.shape[1]), np.float32)
    km = KMeans(n_clusters=count, n_init=3, random_state=seed).fit(query_emb)
    centres = km.cluster_centers_
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-9)).astype(np.float32)


def topic_of(query_emb: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[n] the nearest topic of each query embedding (0 when there are no topics)."""
    if len(centroids) == 0:
        return np.zeros(len(query_emb), dtype=np.int64)
    return np.argmax(query_emb @ centroids.T, axis=1).astype(np.int64)


def with_average(scores: np.ndarray) -> np.ndarray:
    """[n, L] scores -> [n, L + 1] with the average LLM's score (the virtual opponent of a lone response) last."""
    return np.concatenate([scores, scores.mean(axis=1, keepdims=True)], axis=1)


@dataclass(frozen=True)
class Priors:
    """Precisions of the priors on the deviations (inf: that deviation off), Gaussian but for the user's."""

    user: float
    query: float
    topic: float = math.inf  # the user's deviation on one topic of queries, beyond their overall one
    task: float = math.inf  # everybody's deviation on one topic of queries: which LLM is good at what
    user_tail: float = math.inf  # degrees of freedom of the user prior's Student-t (inf: Gaussian)
    stay: float = math.inf  # a user's stickiness to the previous turn's LLM, beyond everybody's


@dataclass
class PriorScores:
    """The backbone: population strengths and the deviations of every table user, user topic and query."""

    strengths: np.ndarray  # [L]
    task: np.ndarray  # [topics, L]
    user: np.ndarray  # [table users, L]
    topic: np.ndarray  # [table users * topics, L], row user * topics + topic
    topics: int
    query: np.ndarray  # [table queries, L]
    query_topic: np.ndarray  # [table queries] the topic of every table query
    stay_population: float = 0.0  # everybody's preference for the previous turn's LLM
    stay: np.ndarray | None = None  # [table users] each user's own, beyond everybody's

    @classmethod
    def of(
        cls,
        table: InteractionTable,
        records: np.ndarray,
        strengths: np.ndarray,
        priors: Priors,
        query_topic: np.ndarray,
        topics: int,
        residual: np.ndarray | None = None,
        stay: float = 0.0,
        since: PriorScores | None = None,
        users: np.ndarray | None = None,
    ) -> PriorScores:
        """The deviations given the shown `records`; `query_topic` [table queries] is each query's topic and
        `stay` everybody's preference for the previous turn's LLM (0: the conversation is not read).

        With `since`, the backbone before table users `users` showed more records, only their deviations and
        those of the queries they asked are fitted, from `records` = `refit_scope(table, users)`; every other
        deviation, and everybody's verdicts on topics, are kept from `since`. Given those verdicts, that is
        what a fit over every record gives, at the cost of those users' and queries' records alone.

        First, every user's verdicts on a topic of queries (a cluster of similar queries): which LLM is good
        at what, against the population strengths and, if given, the network's `residual`.
        User deviations come next, against everything else the model says of the user's comparisons
        (the population strengths, the topic's deviation and the network's residual [table records, L] on the
        user's own shown records): a user's consistent votes overturn the model's prediction for them, and a query only
        they asked cannot explain their votes away. A user's deviation on a topic (a cluster of similar
        queries) comes next, against the same plus their overall deviation: a taste that depends on the task.
        Query deviations come last, against all of that: what the users who saw answers to this query thought
        beyond their own taste. A user's stickiness is fitted right after their overall deviation, against the
        same plus everybody's stickiness.
        """
        comparisons = Comparisons.of(table, records)
        num_users, num_queries = len(table.user_vocab), len(table.query_vocab)
        expected = np.broadcast_to(with_average(strengths[None]), (len(comparisons.record), len(strengths) + 1))
        if residual is not None:
            expected = expected + with_average(residual[comparisons.record])
        usable = usable_previous(table, records)
        previous = usable[comparisons.record]
        sticky = comparisons.stay(usable) if stay or np.isfinite(priors.stay) else None
        record_topic = query_topic[table.rec_query]

        def kept(name: str, fitted: np.ndarray, rows: np.ndarray) -> np.ndarray:
            """`fitted` where a full fit is made, else `since`'s deviations with `rows` fitted."""
            if since is None:
                return fitted
            old = getattr(since, name)
            old = np.zeros((0, *fitted.shape[1:])) if old is None else old
            out = np.concatenate([old, np.zeros((len(fitted) - len(old), *old.shape[1:]))])  # new users, queries
            out[rows] = fitted[rows]
            return out

        users = np.zeros(0, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
        task = since.task if since is not None else deviations(record_topic, topics, comparisons, expected, priors.task)
        expected = expected + with_average(task[record_topic[comparisons.record]])
        # refitting, the users' own deviations come from their comparisons alone (the other users' are kept)
        own = slice(None) if since is None else np.isin(table.rec_user[comparisons.record], users)
        theirs = comparisons.subset(own)
        user = deviations(table.rec_user, num_users, theirs, expected[own], priors.user, priors.user_tail)
        user = kept("user", user, users)
        expected = expected + with_average(user[table.rec_user[comparisons.record]])
        user_stay = np.zeros(num_users)
        if sticky is not None:
            margin = comparisons.margin(expected) + stay * sticky
            user_stay = stay_deviations(table.rec_user, num_users, theirs, margin[own], sticky[own], priors.stay)
            user_stay = kept("stay", user_stay, users)
            # later deviations are fitted against the stickiness too
            amount = stay + user_stay[table.rec_user[comparisons.record]]
            expected = expected + stay_bonus(previous, amount, expected.shape[1])
        user_topic = table.rec_user * topics + record_topic
        topic = deviations(user_topic, num_users * topics, theirs, expected[own], priors.topic)
        topic = kept("topic", topic, (users[:, None] * topics + np.arange(topics)).ravel())
        expected = expected + with_average(topic[user_topic[comparisons.record]])
        query = deviations(table.rec_query, num_queries, comparisons, expected, priors.query)
        query = kept("query", query, np.unique(table.rec_query[np.isin(table.rec_user, users)]))
        return cls(strengths, task, user, topic, topics, query, query_topic, stay, user_stay)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (scalars 0-d; no stickiness: absent), to be saved with a model."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: np.asarray(value) for name, value in values.items() if value is not None}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PriorScores:
        """The backbone `arrays` describes."""
        values: dict = {name: np.asarray(value) for name, value in arrays.items()}
        values["topics"] = int(values["topics"])
        values["stay_population"] = float(values.get("stay_population", 0.0))
        return cls(**values)

    def scores(
        self,
        users: np.ndarray,
        queries: np.ndarray,
        topics: np.ndarray,
        llms: np.ndarray,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """[B, K] backbone scores of LLMs `llms` [B, K] for table users, queries (-1: unknown) and topics [B],
        each turn following the answer of LLM `previous` [B] (-1 or None: no previous turn)."""
        return np.take_along_axis(self.matrix(users, queries, topics, previous), llms, axis=1)

    def margins(self, table: InteractionTable, comparisons: Comparisons) -> np.ndarray:
        """[C] each comparison's score difference, first minus second (a lone response meets the average)."""
        queries = table.rec_query[comparisons.record]
        users = table.rec_user[comparisons.record]
        scores = with_average(self.matrix(users, queries, self.query_topic[queries]))
        previous = table.rec_prev_llm[comparisons.record]
        return comparisons.margin(scores + stay_bonus(previous, self._stickiness(users), scores.shape[1]))

    def matrix(
        self, users: np.ndarray, queries: np.ndarray, topics: np.ndarray, previous: np.ndarray | None = None
    ) -> np.ndarray:
        """[B, L] backbone scores of every LLM for table users, queries (-1: unknown) and topics [B], each turn
        following the answer of LLM `previous` [B] (-1 or None: no previous turn)."""
        users = np.asarray(users)
        user_topic = np.where(users >= 0, users * self.topics + np.asarray(topics), -1)
        scores = (
            self.strengths
            + self.task[np.asarray(topics)]
            + _rows(self.user, users)
            + _rows(self.topic, user_topic)
            + _rows(self.query, np.asarray(queries))
        )
        return scores if previous is None else scores + stay_bonus(previous, self._stickiness(users), scores.shape[1])

    def _stickiness(self, users: np.ndarray) -> np.ndarray:
        """[B] everybody's stickiness plus each table user's own (an unknown user, -1, has only everybody's)."""
        own = _rows(self.stay[:, None], np.asarray(users))[:, 0] if self.stay is not None else 0.0
        return self.stay_population + own


def comparison_loss(comparisons: Comparisons, table: InteractionTable, prior: PriorScores) -> float:
    """Summed logistic loss of `comparisons` under the backbone's scores (a lone response meets the average)."""
    z = prior.margins(table, comparisons)
    target = comparisons.target
    return float(-(target * log_expit(z) + (1 - target) * log_expit(-z)).sum())


def record_evidence(table: InteractionTable, records: np.ndarray, prior: PriorScores, llm: int) -> np.ndarray:
    """[len(records)] how far each record pushes LLM `llm` up (+) or down (-) for its user: over the record's
    comparisons that `llm` takes part in, the outcome minus the backbone's predicted probability, signed by
    `llm`'s side. At the fitted deviations these surprises are what holds a user's deviation away from 0, so
    the records with the largest ones are the ones that explain it."""
    records = np.asarray(records, dtype=np.int64)
    comparisons = Comparisons.of(table, records)
    p = expit(prior.margins(table, comparisons))
    side = (comparisons.first == llm).astype(np.float64) - (comparisons.second == llm)
    position = np.full(table.num_records, -1, dtype=np.int64)
    position[records] = np.arange(len(records))
    return np.bincount(position[comparisons.record], weights=side * (comparisons.target - p), minlength=len(records))


def _rows(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows of `table` for ids, zeros where an id is -1 or beyond the table."""
    known = (ids >= 0) & (ids < len(table))
    rows = table[np.where(known, ids, 0)] if len(table) else np.zeros((len(ids), table.shape[1]))
    return np.where(known[:, None], rows, 0.0)
