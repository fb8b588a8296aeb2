"""What every baseline shares: settings and saved state, records as arrays of rated pairs, tuning on validation.

Ties count as half a win for each side (a pair target of 0.5) in every baseline's fit: the Bradley-Terry
convention, which keeps the information that two LLMs did equally well instead of dropping it. The metrics
still leave tied pairs out, as the contract says.
"""

from __future__ import annotations

import inspect
import json
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from sklearn.model_selection import ParameterGrid

from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import holdout_split
from gmtrouter.evaluation.metrics import auc
from gmtrouter.graph.table import TIE, pair_targets, record_pairs
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.text.base import TextEncoder
from gmtrouter.text.encoders import get_encoder
from gmtrouter.utils.errors import GmtError

Fitted = TypeVar("Fitted")


@dataclass
class RecordTable:
    """Records flattened once: who asked what, which LLMs answered, and every pair of responses with its target.

    Pairs are taken within a record in record order (i before j); the target is 1 when i was rated higher,
    0 when lower, 0.5 for a tie.
    """

    users: list[str]  # user vocabulary, index = user id
    rec_user: np.ndarray  # [R]
    queries: list[str]  # query vocabulary (distinct texts), index = query id
    rec_query: np.ndarray  # [R]
    rec_category: list[str | None]  # [R] meta.category, when the source has one
    resp_llm: np.ndarray  # [N] LLM id of each response
    resp_rating: np.ndarray  # [N]
    offsets: np.ndarray  # [R + 1] responses of record r are offsets[r]:offsets[r + 1]
    pair_record: np.ndarray  # [P]
    pair_first: np.ndarray  # [P] LLM id of response i
    pair_second: np.ndarray  # [P] LLM id of response j
    pair_target: np.ndarray  # [P] 1, 0 or 0.5

    @property
    def num_records(self) -> int:
        return len(self.rec_user)

    @property
    def pair_user(self) -> np.ndarray:
        return self.rec_user[self.pair_record]

    @property
    def pair_query(self) -> np.ndarray:
        return self.rec_query[self.pair_record]

    @classmethod
    def build(cls, records: Sequence[Interaction], llms: Sequence[str]) -> RecordTable:
        """Flatten `records`; every response's LLM must be one of `llms`."""
        index = {name: i for i, name in enumerate(llms)}
        unknown = sorted({m for r in records for m in r.llms if m not in index})
        if unknown:
            raise GmtError(
                f"LLM(s) {', '.join(unknown)} are not known to this router (it knows {', '.join(llms)}); "
                "add them to the training data or leave them out"
            )
        users, rec_user = np.unique(np.array([r.user for r in records], dtype=object), return_inverse=True)
        queries, rec_query = np.unique(np.array([r.query for r in records], dtype=object), return_inverse=True)
        counts = np.array([len(r.responses) for r in records], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        resp_llm = np.array([index[x.llm] for r in records for x in r.responses], dtype=np.int64)
        resp_rating = np.array([x.rating for r in records for x in r.responses], dtype=np.float64)
        pair_record, a, b = record_pairs(offsets)
        target = pair_targets(resp_rating[a], resp_rating[b])
        return cls(
            users=[str(u) for u in users],
            rec_user=rec_user.astype(np.int64).reshape(-1),
            queries=[str(q) for q in queries],
            rec_query=rec_query.astype(np.int64).reshape(-1),
            rec_category=[r.meta.get("category") for r in records],
            resp_llm=resp_llm,
            resp_rating=resp_rating,
            offsets=offsets,
            pair_record=pair_record,
            pair_first=resp_llm[a],
            pair_second=resp_llm[b],
            pair_target=target,
        )

    def gather(self, scores: np.ndarray) -> list[np.ndarray]:
        """Per-record score arrays aligned with the responses, from an [R, LLMs] score matrix."""
        rows = np.repeat(np.arange(self.num_records), np.diff(self.offsets))
        flat = np.asarray(scores, dtype=float)[rows, self.resp_llm]
        return np.split(flat, self.offsets[1:-1])

    def pair_diff(self, scores: np.ndarray) -> np.ndarray:
        """score_i - score_j of every pair, from an [R, LLMs] score matrix."""
        return scores[self.pair_record, self.pair_first] - scores[self.pair_record, self.pair_second]


def pairs_auc(table: RecordTable, scores: np.ndarray) -> float:
    """Contract AUC of an [R, LLMs] score matrix on the table's differently rated pairs.

    Falls back to pairwise accuracy when the AUC is undefined (one label only), and to 0.5 with no pairs.
    """
    keep = table.pair_target != TIE
    diff = table.pair_diff(np.asarray(scores))[keep]
    label = (table.pair_target[keep] == 1).astype(int)
    if len(label) == 0:
        return 0.5
    value = auc(label, diff)
    if value == value:
        return value
    return float(np.mean(np.where(label == 1, diff > 0, diff < 0)))


def tune(
    grid: dict[str, list[Any]], run: Callable[[dict[str, Any]], tuple[float, Fitted]], validated: bool
) -> tuple[dict[str, Any], Fitted, float | None, list[dict[str, Any]]]:
    """(best params, what `run` fitted with them, its validation score, every trial) over `grid`.

    `run(params)` returns (validation score, fitted thing). Without a validation set nothing can be
    compared, so the first value of every list is taken untried.
    """
    if not validated:
        params = {key: values[0] for key, values in grid.items()}
        return params, run(params)[1], None, []
    best: tuple[float, dict[str, Any], Fitted] | None = None
    trials = []
    for params in ParameterGrid(grid):
        score, fitted = run(params)
        trials.append({"params": params, "valid_auc": score})
        if best is None or score > best[0] + 1e-9:
            best = (score, params, fitted)
    assert best is not None
    return best[1], best[2], best[0], trials


class BaselineRouter(PreferenceRouter):
    """A baseline: settings from the constructor, a grid tuned on validation, state saved as JSON plus tensors.

    Subclasses set `name` and `GRID` (setting name -> candidate values, the first being the default) and
    implement `_fit`, `_fitted`/`_restore` (their learned values) and `context`.
    """

    GRID: ClassVar[dict[str, list[Any]]] = {}
    grid: dict[str, Any] | None
    valid_frac: float
    seed: int

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, as saved in checkpoints."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def search_grid(self) -> dict[str, list[Any]]:
        """The default grid with the user's `grid` setting laid over it (a single value fixes that setting)."""
        given = dict(self.grid or {})
        unknown = sorted(set(given) - set(self.GRID))
        if unknown:
            raise GmtError(
                f"router '{self.name}' tunes no {', '.join(repr(k) for k in unknown)}; "
                f"its grid has: {', '.join(self.GRID) or 'nothing'}"
            )
        grid = dict(self.GRID)
        for key, values in given.items():
            values = list(values) if isinstance(values, list | tuple) else [values]
            if not values:
                raise GmtError(f"grid value for '{key}' is empty; give at least one candidate")
            grid[key] = values
        return grid

    def fit(self, train: Sequence[Interaction], valid: Sequence[Interaction] | None = None) -> BaselineRouter:
        """Tune on `valid` (default: a held-out share of each user's training records) and fit."""
        if not train:
            raise GmtError("no training records; give a file with at least one rated pair")
        self.llms_ = sorted({m for r in [*train, *(valid or [])] for m in r.llms})
        started = time.perf_counter()
        if valid is None:
            fit_part, held = holdout_split(train, self.valid_frac, self.seed)
        else:
            fit_part, held = list(train), list(valid)
        grid = self.search_grid()
        params, best, trials = self._fit(fit_part, held, grid)
        self.params_ = params
        self.training_log_ = {
            "params": params,
            "best_valid_auc": best,
            "train_records": len(fit_part),
            "valid_records": len(held),
            "trials": trials,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return self

    @abstractmethod
    def _fit(
        self, train: list[Interaction], valid: list[Interaction], grid: dict[str, list[Any]]
    ) -> tuple[dict[str, Any], float | None, list[dict[str, Any]]]:
        """Tune over `grid` on `valid` (may be empty), keep the chosen fit; return (params, best AUC, trials)."""

    @abstractmethod
    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able learned values, tensors) beyond the settings, LLMs and chosen params."""

    @abstractmethod
    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Set the learned attributes back from `_fitted`'s output."""

    def get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        fitted, tensors = self._fitted()
        config = {
            "settings": self.settings(),
            "llms": self.llms_,
            "params": self.params_,
            "training_log": self.training_log_,
            "fitted": fitted,
        }
        return json.loads(json.dumps(config)), {k: v.detach().clone().contiguous() for k, v in tensors.items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> BaselineRouter:
        router = cls(**config["settings"])
        router.llms_ = list(config["llms"])
        router.params_ = dict(config["params"])
        router.training_log_ = dict(config.get("training_log", {}))
        router._restore(config["fitted"], tensors)
        return router

    @abstractmethod
    def llm_scores(
        self, users: Sequence[str], queries: Sequence[str], categories: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """[n, LLMs] scores of every LLM for n requests, ignoring any history (the fitted model alone)."""

    def context(self, history: Sequence[Interaction]) -> BaselineContext:
        return BaselineContext(self, history)


class QueryEncoding:
    """For baselines that read the query: the shared cached text encoder (`encoder` setting)."""

    encoder: str

    def text_encoder(self) -> TextEncoder:
        if not hasattr(self, "_encoder"):
            self._encoder = get_encoder(self.encoder)
        return self._encoder

    def use_text_encoder(self, encoder: TextEncoder) -> None:
        """Embed texts with `encoder` from now on (same name; e.g. the static table a model folder kept: the
        setting's own encoder is not built first)."""
        current = self._encoder.name if hasattr(self, "_encoder") else self.encoder
        if encoder.name != current:
            raise GmtError(f"encoder '{encoder.name}' is not this router's '{current}'")
        self._encoder = encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] L2-normalised embeddings; each distinct text is encoded once."""
        if len(texts) == 0:
            return np.zeros((0, self.text_encoder().dim), dtype=np.float32)
        unique, inverse = np.unique(np.array(list(texts), dtype=object), return_inverse=True)
        return self.text_encoder().encode([str(t) for t in unique])[inverse.reshape(-1)]

    def history_texts(self, history: Sequence[Interaction]) -> list[str]:
        """The texts a checkpoint keeps embeddings of: queries only (no baseline reads response texts)."""
        return [r.query for r in history]


class BaselineContext(RoutingContext):
    """A fitted baseline bound to a history. The base scores every request with the fitted model alone."""

    def __init__(self, router: BaselineRouter, history: Sequence[Interaction]) -> None:
        self.router = router
        super().__init__(history)

    def refresh(self) -> None:
        """Nothing derives from the history unless the baseline is personalized."""

    def llm_scores(
        self, users: Sequence[str], queries: Sequence[str], categories: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """[n, LLMs] scores for n requests given this context's history."""
        return self.router.llm_scores(users, queries, categories)

    def score_records(self, records: Sequence[Interaction]) -> list[np.ndarray]:
        if not records:
            return []
        table = RecordTable.build(records, self.router.llms_)
        users = [r.user for r in records]
        queries = [r.query for r in records]
        return table.gather(self.llm_scores(users, queries, table.rec_category))

    def score(self, user: str, query: str, llms: Sequence[str]) -> np.ndarray:
        self.router.check_llms(llms)
        row = self.llm_scores([user], [query])[0]
        index = {m: i for i, m in enumerate(self.router.llms_)}
        return np.asarray([row[index[m]] for m in llms], dtype=float)
