"""Routing policies of the online benchmark: the two references that know the truth, and the simple learners.

A policy sees the stream (who asks which query, the candidates), picks one candidate a round and learns from the
feedback on it. The oracle and the best single LLM read the truth by definition; no other policy does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from gmtrouter.bench.online.world import Stream, Truth
from gmtrouter.data.schema import Interaction


class Unavailable(Exception):
    """The policy cannot run in this scenario with this version of gmtrouter (the message says why)."""


class Policy(ABC):
    """Start once per run, then choose and learn once a round."""

    name: str = ""

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        """Take the run's stream and, in a warm start, the other users' logs."""
        self.stream = stream

    @abstractmethod
    def choose(self, t: int, candidates: np.ndarray) -> int:
        """The LLM (an index into `stream.llms`) routed in round `t`, one of `candidates`."""

    def learn(self, t: int, llm: int, feedback: float) -> None:  # noqa: B027 (a policy that never learns)
        """The user's thumb (1 up, 0 down) or rating in [0, 1] on the answer of `llm` in round `t`."""

    def close(self) -> None:  # noqa: B027 (most policies hold nothing)
        """Release what the policy holds (a service, files)."""


def best_single_llm(stream: Stream, truth: Truth) -> int:
    """The LLM with the highest mean utility over all rounds, among those that are a candidate in every round."""
    always = stream.active.all(axis=0)
    return int(np.argmax(np.where(always, truth.utility.mean(axis=0), -np.inf)))


class Oracle(Policy):
    """The attainable oracle: the LLM of the highest expected utility for this user and the query's task."""

    name = "oracle"

    def __init__(self, truth: Truth) -> None:
        self.expected = truth.expected

    def choose(self, t: int, candidates: np.ndarray) -> int:
        return int(candidates[np.argmax(self.expected[t, candidates])])


class BestSingle(Policy):
    """The best single LLM in hindsight, every round."""

    name = "best-single"

    def __init__(self, truth: Truth) -> None:
        self.truth = truth

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        self.llm = best_single_llm(stream, self.truth)

    def choose(self, t: int, candidates: np.ndarray) -> int:
        return self.llm


def _argmax_random(values: np.ndarray, rng: np.random.Generator) -> int:
    """The index of the largest value, ties broken uniformly."""
    top = np.flatnonzero(values >= values.max() - 1e-12)
    return int(top[0] if len(top) == 1 else rng.choice(top))


class WinRate(Policy):
    """The shrunk per-user win-rate rule, greedy: the population's share of thumbs up per LLM (Laplace-smoothed),
    each user's share shrunk toward it by `shrink` pseudo-observations; ties broken at random."""

    name = "win-rate"

    def __init__(self, seed: int, shrink: float = 5.0) -> None:
        self.rng, self.shrink = np.random.default_rng(seed), shrink

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        n, m = len(stream.user_names), len(stream.llms)
        self.up, self.seen = np.zeros((n, m)), np.zeros((n, m))
        self.pop_up, self.pop_seen = np.zeros(m), np.zeros(m)
        index = {llm: j for j, llm in enumerate(stream.llms)}
        for response in (x for record in warm for x in record.responses if x.llm in index):
            self.pop_up[index[response.llm]] += response.rating  # a vote's 1 / 0 / 0.5 as a win share
            self.pop_seen[index[response.llm]] += 1

    def choose(self, t: int, candidates: np.ndarray) -> int:
        u = self.stream.user[t]
        population = (self.pop_up + 1) / (self.pop_seen + 2)
        score = (self.up[u] + self.shrink * population) / (self.seen[u] + self.shrink)
        return int(candidates[_argmax_random(score[candidates], self.rng)])

    def learn(self, t: int, llm: int, feedback: float) -> None:
        u = self.stream.user[t]
        self.up[u, llm] += feedback
        self.seen[u, llm] += 1
        self.pop_up[llm] += feedback
        self.pop_seen[llm] += 1


class LinUCB(Policy):
    """LinUCB on query embeddings (the PILOT-style anchor, arXiv 2508.21141): one ridge regression per LLM from
    the query's text embedding (and a constant) to the feedback, routed by the upper confidence bound
    theta.x + alpha * sqrt(x' A^-1 x). It knows queries, not users."""

    name = "linucb"

    def __init__(self, embeddings: np.ndarray, seed: int, alpha: float = 0.5, ridge: float = 1.0) -> None:
        self.x = np.concatenate([embeddings, np.ones((len(embeddings), 1))], axis=1).astype(np.float64)
        self.rng, self.alpha, self.ridge = np.random.default_rng(seed), alpha, ridge

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        m, d = len(stream.llms), self.x.shape[1]
        gram = np.broadcast_to(self.ridge * np.eye(d), (m, d, d)).copy()
        self.b = np.zeros((m, d))
        row_of = {query: i for i, query in reversed(list(enumerate(stream.queries)))}
        index = {llm: j for j, llm in enumerate(stream.llms)}
        seen = [
            (index[x.llm], row_of[r.query], x.rating)
            for r in warm
            if r.query in row_of
            for x in r.responses
            if x.llm in index
        ]
        if seen:  # the warm start's votes: every response is one observation of its LLM
            llm, rows, rating = (np.asarray(column) for column in zip(*seen, strict=True))
            for j in np.unique(llm):
                x = self.x[rows[llm == j]]
                gram[j] += x.T @ x
                self.b[j] = x.T @ rating[llm == j]
        self.inverse = np.linalg.inv(gram)  # [M, d, d]
        self.theta = np.einsum("mde,me->md", self.inverse, self.b)

    def choose(self, t: int, candidates: np.ndarray) -> int:
        x = self.x[self.stream.row[t]]
        spread = (self.inverse @ x) @ x  # [M] x' A^-1 x of every LLM (no copy of the inverses)
        bound = self.theta @ x + self.alpha * np.sqrt(np.maximum(spread, 0.0))
        return int(candidates[_argmax_random(bound[candidates], self.rng)])

    def learn(self, t: int, llm: int, feedback: float) -> None:
        x = self.x[self.stream.row[t]]
        ax = self.inverse[llm] @ x  # Sherman-Morrison: (A + x x')^-1 from A^-1
        self.inverse[llm] -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.b[llm] += feedback * x
        self.theta[llm] = self.inverse[llm] @ self.b[llm]


class EpsilonGreedy(Policy):
    """Another policy, except that a share `epsilon` of the rounds goes to a uniformly drawn candidate; every
    round's feedback reaches the inner policy."""

    def __init__(self, inner: Policy, seed: int, epsilon: float = 0.1, name: str | None = None) -> None:
        self.inner, self.epsilon, self.rng = inner, epsilon, np.random.default_rng(seed)
        self.name = name or f"epsilon-{inner.name}"

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        self.inner.start(stream, warm)

    def choose(self, t: int, candidates: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.choice(candidates))
        return self.inner.choose(t, candidates)

    def learn(self, t: int, llm: int, feedback: float) -> None:
        self.inner.learn(t, llm, feedback)

    def close(self) -> None:
        self.inner.close()
