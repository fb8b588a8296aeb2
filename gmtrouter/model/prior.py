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
from scipy.special import expit

from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.bradley_terry import log_loss, prior_curvature
from gmtrouter.model.communities import Communities, fit_members
from gmtrouter.model.comparisons import Comparisons, stay_bonus, usable_previous, with_average
from gmtrouter.model.deviations import FitCache, GroupFit, Priors, fit_groups, rows, stay_deviations
from gmtrouter.model.population import Population


def at_most_unseen(variances: np.ndarray, ids: np.ndarray, unseen: float) -> np.ndarray:
    """`rows` of `variances` for `ids`, `unseen` (what a user with no evidence has) for an id not there and
    the cap of the others (0: no cap): under the Student-t user prior the Laplace variance at a taste the
    evidence has released past the prior's scale can exceed it, and a user with votes would read as less known
    than a new one."""
    found = rows(variances, ids, unseen)
    return np.minimum(found, unseen) if unseen > 0 else found


@dataclass
class PriorScores:
    """The backbone: what everybody shares (`population`) and the deviations of every table user, user topic
    and query, with each one's posterior variance where it was asked for (exploration reads them)."""

    population: Population
    task: np.ndarray  # [topics, L]
    user: np.ndarray  # [table users, L]
    topic: np.ndarray  # [table users * topics, L], row user * topics + topic
    topics: int
    query: np.ndarray  # [table queries, L]
    query_topic: np.ndarray  # [table queries] the topic of every table query
    stay: np.ndarray | None = None  # [table users] each user's stickiness, beyond everybody's
    own: np.ndarray | None = None  # [table (user, query) pairs, L] a user's own verdict on a query
    variance: dict[str, np.ndarray] | None = None  # task, user, topic, own, query: like the deviations
    unseen_variance: dict[str, float] | None = None  # user, topic: the prior's, for a user not in the table
    membership: np.ndarray | None = None  # [table users, communities] each user's posterior community weights
    anchor: np.ndarray | None = None  # [table users, L] the mean of each user's mixture prior (communities)

    @property
    def strengths(self) -> np.ndarray:
        return self.population.strengths

    @classmethod
    def of(
        cls,
        table: InteractionTable,
        records: np.ndarray,
        population: Population,
        priors: Priors,
        query_topic: np.ndarray,
        topics: int,
        residual: np.ndarray | None = None,
        since: PriorScores | None = None,
        users: np.ndarray | None = None,
        posterior: bool = False,
        communities: Communities | None = None,
        cache: FitCache | None = None,
    ) -> PriorScores:
        """The deviations given the shown `records`; `query_topic` [table queries] is each query's topic and
        `population` what everybody shares (its stickiness 0: the conversation is not read). With `posterior`,
        every deviation's posterior variance too. `cache`: fits already made with the same inputs are taken
        from it (cross-validation of the priors).

        With `since`, the backbone before table users `users` showed more records, only their deviations and
        those of the queries they asked are fitted, from `records` = `refit_scope(table, users)`; every other
        deviation, and everybody's verdicts on topics, are kept from `since`. Given those verdicts, that is
        what a fit over every record gives, at the cost of those users' and queries' records alone.

        First, every user's verdicts on a topic of queries (a cluster of similar queries): which LLM is good
        at what, against the population strengths and, if given, the network's `residual`.
        User deviations come next, against everything else the model says of the user's comparisons
        (the population strengths, the topic's deviation and the network's residual [table records, L] on the
        user's own shown records): a user's consistent votes overturn the model's prediction for them, and a query
        only they asked cannot explain their votes away. A user's deviation on a topic (a cluster of similar
        queries) comes next, against the same plus their overall deviation: a taste that depends on the task.
        Query deviations come last, against all of that: what the users who saw answers to this query thought
        beyond their own taste. A user's stickiness is fitted right after their overall deviation, against the
        same plus everybody's stickiness.
        """
        comparisons = Comparisons.of(table, records)
        num_users, num_queries = len(table.user_vocab), len(table.query_vocab)
        strengths, stay = population.strengths, population.stay
        expected = np.broadcast_to(population.average(strengths[None]), (len(comparisons.record), len(strengths) + 1))
        if residual is not None:
            expected = expected + with_average(residual[comparisons.record])
        usable = usable_previous(table, records)
        previous = usable[comparisons.record]
        sticky = comparisons.stay(usable) if stay or np.isfinite(priors.stay) else None
        record_topic = query_topic[table.rec_query]
        variance: dict[str, np.ndarray] = {}
        users = np.zeros(0, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)

        def keep(name: str, fitted: GroupFit, rows: np.ndarray | None, prior: float) -> np.ndarray:
            """The deviations of one kind (and, with `posterior`, their variances): `fitted` where a full fit is
            made, else `since`'s with `rows` refitted (new users and queries at the prior)."""
            if posterior and fitted.variance is not None:
                old = (since.variance or {}).get(name) if since is not None else None
                variance[name] = merged(old, fitted.variance, rows, 1 / prior if np.isfinite(prior) else 0.0)
            return merged(getattr(since, name, None), fitted.mean, rows)

        def merged(
            old: np.ndarray | None, fitted: np.ndarray, rows: np.ndarray | None, fill: float = 0.0
        ) -> np.ndarray:
            if since is None or old is None:
                return fitted
            grown = np.full((len(fitted) - len(old), *old.shape[1:]), fill)  # new users, queries
            out = np.concatenate([old, grown])
            out[rows] = fitted[rows]
            return out

        def fit(name: str, groups, n_groups, shown: Comparisons, expect, prior, rows, tail=math.inf) -> np.ndarray:
            return keep(name, fit_groups(groups, n_groups, shown, expect, prior, tail, posterior, cache), rows, prior)

        if since is not None:
            task = since.task
            if posterior and since.variance is not None:
                variance["task"] = since.variance["task"]
        else:
            task = fit("task", record_topic, topics, comparisons, expected, priors.task, None)
        expected = expected + with_average(task[record_topic[comparisons.record]])
        # refitting, the users' own deviations come from their comparisons alone (the other users' are kept)
        mine = slice(None) if since is None else np.isin(table.rec_user[comparisons.record], users)
        theirs = comparisons.subset(mine)
        user_topic = table.rec_user * topics + record_topic
        topic_rows = (users[:, None] * topics + np.arange(topics)).ravel()
        user_stay = np.zeros(num_users)
        membership = anchor = None

        def sticky_fit() -> np.ndarray:
            """Each user's stickiness, against everything fitted so far; later parts are fitted against it."""
            nonlocal expected
            margin = comparisons.margin(expected) + stay * sticky
            fitted = stay_deviations(table.rec_user, num_users, theirs, margin[mine], sticky[mine], priors.stay)
            fitted = merged(since.stay if since is not None else None, fitted, users)
            amount = stay + fitted[table.rec_user[comparisons.record]]
            expected = expected + stay_bonus(previous, amount, expected.shape[1])
            return fitted

        if communities is None:
            user = fit("user", table.rec_user, num_users, theirs, expected[mine], priors.user, users, priors.user_tail)
            expected = expected + with_average(user[table.rec_user[comparisons.record]])
            if sticky is not None:
                user_stay = sticky_fit()
            topic = fit("topic", user_topic, num_users * topics, theirs, expected[mine], priors.topic, topic_rows)
            expected = expected + with_average(topic[user_topic[comparisons.record]])
        else:  # the users' deviations, overall and on topics, under the communities' mixture prior
            members = fit_members(
                communities,
                table.rec_user,
                num_users,
                record_topic,
                topics,
                theirs,
                expected[mine],
                priors.user,
                priors.user_tail,
                priors.topic,
            )
            user = keep("user", members.user, users, priors.user)
            topic = keep("topic", members.topic, topic_rows, priors.topic)
            membership = merged(getattr(since, "membership", None), members.weights, users, 0.0)
            anchor = merged(getattr(since, "anchor", None), members.anchor, users, 0.0)
            expected = expected + with_average(user[table.rec_user[comparisons.record]])
            expected = expected + with_average(topic[user_topic[comparisons.record]])
            if sticky is not None:
                user_stay = sticky_fit()
        own_rows = np.unique(table.rec_own[np.isin(table.rec_user, users)])
        own = fit("own", table.rec_own, len(table.own_vocab), theirs, expected[mine], priors.own, own_rows)
        expected = expected + with_average(own[table.rec_own[comparisons.record]])
        query_rows = np.unique(table.rec_query[np.isin(table.rec_user, users)])
        query = fit("query", table.rec_query, num_queries, comparisons, expected, priors.query, query_rows)
        unseen = {
            name: 1 / prior if np.isfinite(prior) else 0.0
            for name, prior in (("user", priors.user), ("topic", priors.topic))
        }
        if communities is not None:  # a user nobody knows could be of any community
            spread = (communities.weights @ communities.user**2) - (communities.weights @ communities.user) ** 2
            unseen["user"] += float(spread.mean())
        return cls(
            population,
            task,
            user,
            topic,
            topics,
            query,
            query_topic,
            user_stay,
            own,
            variance if posterior else None,
            unseen if posterior else None,
            membership,
            anchor,
        )

    def taste(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(each user's deviation from their prior's mean [users, L], its variance or None): what each user's own
        evidence says against the population, which settling the population's strengths reads."""
        own = self.user if self.anchor is None else self.user - self.anchor
        return own, None if self.variance is None else self.variance["user"]

    def follow(self, shift: np.ndarray, priors: Priors) -> None:
        """Move every user's deviation as refitting it would after the population's strengths moved by `shift`
        [L], to first order: a user whose data pins an LLM keeps their own score of it (the deviation gives back
        the shift), one who never rated it takes the shift whole."""
        if self.variance is None or not np.isfinite(priors.user):
            return
        curvature = prior_curvature(self.user, priors.user, priors.user_tail)
        self.user = self.user - np.clip(1 - curvature * self.variance["user"], 0.0, 1.0) * shift

    def widen(self, count: int, priors: Priors) -> None:
        """Take `count` more LLMs: nobody has rated them, so every deviation of them is 0, at the prior's
        variance where variances are kept (0 where that deviation is off)."""
        self.population = self.population.widened(count)
        for name in ("task", "user", "topic", "query", "own", "anchor"):
            if getattr(self, name) is not None:
                setattr(self, name, np.pad(getattr(self, name), ((0, 0), (0, count))))
        if self.variance is not None:
            precision = {
                "task": priors.task,
                "user": priors.user,
                "topic": priors.topic,
                "query": priors.query,
                "own": priors.own,
            }
            for name, value in self.variance.items():
                fill = 1 / precision[name] if np.isfinite(precision[name]) else 0.0
                self.variance[name] = np.pad(value, ((0, 0), (0, count)), constant_values=fill)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (scalars 0-d; no stickiness or variances: absent), to be saved with a model."""
        shared = {f.name: getattr(self.population, f.name) for f in fields(self.population)}
        out = {f"population.{k}": np.asarray(v) for k, v in shared.items() if v is not None}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "population" or value is None:
                continue
            if isinstance(value, dict):
                out.update({f"{f.name}.{k}": np.asarray(v) for k, v in value.items()})
            else:
                out[f.name] = np.asarray(value)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PriorScores:
        """The backbone `arrays` describes."""
        values: dict = {}
        population: dict = {}
        for name, value in arrays.items():
            head, _, key = name.partition(".")
            if head == "population":
                population[key] = np.asarray(value)
            elif key:
                values.setdefault(head, {})[key] = np.asarray(value) if head == "variance" else float(value)
            else:
                values[head] = np.asarray(value)
        values["topics"] = int(values["topics"])
        values["population"] = Population(
            population["strengths"],
            float(population["thumb_bias"]),
            float(population["stay"]),
            population.get("variance"),
        )
        return cls(**values)

    def scores(
        self,
        users: np.ndarray,
        queries: np.ndarray,
        topics: np.ndarray,
        llms: np.ndarray,
        previous: np.ndarray | None = None,
        owns: np.ndarray | None = None,
    ) -> np.ndarray:
        """[B, K] backbone scores of LLMs `llms` [B, K] for table users, queries (-1: unknown) and topics [B],
        each turn following the answer of LLM `previous` [B] (-1 or None: no previous turn); `owns` [B]: the
        table's (user, query) pair of each (-1 or None: the user never rated an answer to the query)."""
        return np.take_along_axis(self.matrix(users, queries, topics, previous, owns), llms, axis=1)

    def spread(
        self,
        users: np.ndarray,
        queries: np.ndarray,
        topics: np.ndarray,
        llms: np.ndarray,
        owns: np.ndarray | None = None,
        personal: float = 1.0,
    ) -> np.ndarray:
        """[B, K] the posterior standard deviation of each score (0 where no variances were fitted): the
        parts later routes reuse (the population's strengths, the topic's verdicts, the user's deviation overall
        and on the topic, and the query's where others have rated it) summed as if independent. A user not in
        the table has the prior's spread: everything about them is yet to be learnt. `personal` scales the
        standard deviation of the parts few later routes share (the user's, the query's, the own verdict's)
        against the population's and the topics', which every later route reuses. A user's evidence never leaves
        them less sure than a user with none (`at_most_unseen`)."""
        if self.variance is None:
            return np.zeros(np.shape(llms))
        users, topics = np.asarray(users), np.asarray(topics)
        user_topic = np.where(users >= 0, users * self.topics + topics, -1)
        unseen = self.unseen_variance or {}
        population = self.population.variance if self.population.variance is not None else 0.0
        mine = (
            at_most_unseen(self.variance["user"], users, unseen.get("user", 0.0))
            + at_most_unseen(self.variance["topic"], user_topic, unseen.get("topic", 0.0))
            + rows(self.variance["query"], np.asarray(queries))
        )
        if owns is not None and "own" in self.variance:
            mine = mine + rows(self.variance["own"], np.asarray(owns))
        total = population + self.variance["task"][topics] + personal**2 * mine
        return np.sqrt(np.take_along_axis(total, llms, axis=1))

    def margins(self, table: InteractionTable, comparisons: Comparisons) -> np.ndarray:
        """[C] each comparison's score difference, first minus second (a lone response meets the average)."""
        queries = table.rec_query[comparisons.record]
        users = table.rec_user[comparisons.record]
        owns = table.rec_own[comparisons.record]
        scores = self.population.average(self.matrix(users, queries, self.query_topic[queries], owns=owns))
        previous = table.rec_prev_llm[comparisons.record]
        return comparisons.margin(scores + stay_bonus(previous, self._stickiness(users), scores.shape[1]))

    def parts(
        self,
        users: np.ndarray,
        queries: np.ndarray,
        topics: np.ndarray,
        previous: np.ndarray | None = None,
        owns: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The backbone's score of every LLM [B, L] split into its parts (they sum to `matrix`): everybody's
        strengths, everybody's verdict on the topic, the user's taste overall and on the topic, the user's own
        verdict on the query, everybody else's on it, and the pull of the previous turn's LLM."""
        users = np.asarray(users)
        user_topic = np.where(users >= 0, users * self.topics + np.asarray(topics), -1)
        width = len(self.strengths)
        out = {
            "population": np.broadcast_to(self.strengths, (len(users), width)).copy(),
            "task": self.task[np.asarray(topics)],
            "user": rows(self.user, users),
            "user_topic": rows(self.topic, user_topic),
            "own": rows(self.own, np.asarray(owns))
            if owns is not None and self.own is not None
            else 0 * self.task[np.asarray(topics)],
            "query": rows(self.query, np.asarray(queries)),
        }
        out["stay"] = (
            np.zeros_like(out["population"])
            if previous is None
            else stay_bonus(previous, self._stickiness(users), width)
        )
        return out

    def matrix(
        self,
        users: np.ndarray,
        queries: np.ndarray,
        topics: np.ndarray,
        previous: np.ndarray | None = None,
        owns: np.ndarray | None = None,
    ) -> np.ndarray:
        """[B, L] backbone scores of every LLM for table users, queries (-1: unknown) and topics [B], each turn
        following the answer of LLM `previous` [B] (-1 or None: no previous turn), with each user's own verdict
        on the query where `owns` [B] names their (user, query) pair."""
        users = np.asarray(users)
        user_topic = np.where(users >= 0, users * self.topics + np.asarray(topics), -1)
        scores = (
            self.strengths
            + self.task[np.asarray(topics)]
            + rows(self.user, users)
            + rows(self.topic, user_topic)
            + rows(self.query, np.asarray(queries))
        )
        if owns is not None and self.own is not None:
            scores = scores + rows(self.own, np.asarray(owns))
        return scores if previous is None else scores + stay_bonus(previous, self._stickiness(users), scores.shape[1])

    def _stickiness(self, users: np.ndarray) -> np.ndarray:
        """[B] everybody's stickiness plus each table user's own (an unknown user, -1, has only everybody's)."""
        own = rows(self.stay[:, None], np.asarray(users))[:, 0] if self.stay is not None else 0.0
        return self.population.stay + own


def comparison_loss(comparisons: Comparisons, table: InteractionTable, prior: PriorScores) -> float:
    """Summed logistic loss of `comparisons` under the backbone's scores (a lone response meets the average)."""
    return float(log_loss(comparisons.target, prior.margins(table, comparisons)).sum())


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
