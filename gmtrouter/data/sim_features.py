"""Per-(query, LLM) response features the synthetic users care about, computed once as numpy tables.

Four features, each a [rows, LLMs] table: answer quality (the cell score), log cost, log length in tokens and
the rare-word ratio of the response text. A feature missing from a cell is filled with that LLM's mean over
the cells that have it (its typical value); an LLM that never has it gets the matrix mean, and a feature no
cell has (or that never varies) is dropped, i.e. its column is all zeros. Every feature except quality is
then standardised (zero mean, unit standard deviation over the available cells), so a user weight of 1 means
"one standard deviation of this feature is worth one unit of utility". Quality stays on the matrix's score
scale ([0, 1]) so that "a correct answer" has the same meaning on every matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

from gmtrouter.data.matrix import MatrixRow, matrix_llms
from gmtrouter.data.prices import estimate_tokens

FEATURES = ("quality", "cost", "length", "rare")
WORD_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters; numbers and symbols are not words
RARE_MASS = 0.05  # rare words: the least frequent words that together make at most 5% of all word occurrences
COST_FLOOR = 1e-7  # USD; a free response (cost 0) counts as this much before the log


@dataclass(frozen=True)
class FeatureTables:
    """Everything the simulator knows about the matrix, as arrays indexed [row, llm]."""

    llms: list[str]
    available: np.ndarray  # [R, M] bool: the LLM has a cell for the row
    values: np.ndarray  # [F, R, M] features in FEATURES order, filled and (except quality) standardised
    expected_quality: np.ndarray  # [R, M] the LLM's mean score over rows of the row's category
    categories: np.ndarray  # [R] int category index of each row
    used: dict[str, str]  # feature -> how it was obtained (or why it was dropped)

    def by_task(self) -> FeatureTables:
        """Every feature at the LLM's mean over the rows of the row's category: what is known of an LLM's
        answer on a task before it exists (the community-taste reference's view)."""
        values = np.stack([_category_means(v, self.available, self.categories) for v in self.values])
        return replace(self, values=values)


def _fill_by_llm(raw: np.ndarray, available: np.ndarray) -> tuple[np.ndarray, int]:
    """Fill missing cells with the LLM's mean, else the global mean; (filled table, number of known cells)."""
    known = available & ~np.isnan(raw)
    n_known = int(known.sum())
    if n_known == 0:
        return np.zeros_like(raw), 0
    masked = np.where(known, raw, 0.0)
    count = known.sum(axis=0)
    global_mean = masked.sum() / n_known
    llm_mean = np.where(count > 0, masked.sum(axis=0) / np.maximum(count, 1), global_mean)
    return np.where(known, raw, llm_mean[None, :]), n_known


def _standardise(table: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Zero mean and unit sd over the available cells; a constant feature becomes all zeros."""
    cells = table[available]
    sd = float(cells.std())
    if sd < 1e-12:
        return np.zeros_like(table)
    return np.where(available, (table - cells.mean()) / sd, 0.0)


def rare_word_ratios(texts: Sequence[str], rare_mass: float = RARE_MASS) -> np.ndarray:
    """Share of each text's words that are rare in the word-frequency table of all `texts`.

    A word is rare when its corpus count is at most c*, the largest count such that all words counted at
    most c* together make no more than `rare_mass` of the word occurrences. Using a count threshold (not a
    rank) keeps words with equal counts on the same side. Texts without words get NaN.
    """
    vectorizer = CountVectorizer(lowercase=True, token_pattern=WORD_PATTERN)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no text has a single word
        return np.full(len(texts), np.nan)
    word_totals = np.asarray(counts.sum(axis=0)).ravel()
    levels, per_level = np.unique(word_totals, return_counts=True)
    mass = np.cumsum(levels * per_level) / word_totals.sum()
    below = levels[mass <= rare_mass]
    rare = word_totals <= (below[-1] if len(below) else 0)
    text_words = np.asarray(counts.sum(axis=1)).ravel()
    rare_words = np.asarray(counts @ rare.astype(float)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(text_words > 0, rare_words / text_words, np.nan)


def _category_means(scores: np.ndarray, available: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """[R, M]: each LLM's mean score over the rows of the row's category (else its global mean)."""
    n_cat = int(categories.max()) + 1
    known = available.astype(float)
    filled = np.where(available, scores, 0.0)
    onehot = np.eye(n_cat)[categories]  # [R, C]
    sums, counts = onehot.T @ filled, onehot.T @ known  # [C, M]
    overall = filled.sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), overall[None, :])
    return means[categories]


def build_features(rows: Sequence[MatrixRow]) -> FeatureTables:
    """The feature tables of a matrix (rows in file order, LLMs in first-seen order)."""
    llms = matrix_llms(rows)
    column = {llm: j for j, llm in enumerate(llms)}
    shape = (len(rows), len(llms))
    available = np.zeros(shape, dtype=bool)
    score, cost, tokens = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    text_at: list[tuple[int, int]] = []
    texts: list[str] = []
    for i, row in enumerate(rows):
        for llm, cell in row.responses.items():
            j = column[llm]
            available[i, j] = True
            score[i, j] = cell.score
            if cell.cost is not None:
                cost[i, j] = cell.cost
            if cell.tokens is not None:
                tokens[i, j] = cell.tokens
            elif cell.text:
                tokens[i, j] = estimate_tokens(cell.text)
            if cell.text:
                text_at.append((i, j))
                texts.append(cell.text)
    rare = np.full(shape, np.nan)
    if texts:
        at = np.asarray(text_at)
        rare[at[:, 0], at[:, 1]] = rare_word_ratios(texts)

    names = sorted({str(row.meta.get("category", "")) for row in rows})
    index = {name: c for c, name in enumerate(names)}
    categories = np.asarray([index[str(row.meta.get("category", ""))] for row in rows], dtype=int)

    used: dict[str, str] = {"quality": "cell score"}
    raw = {
        "cost": np.log10(np.maximum(cost, COST_FLOOR)),
        "length": np.log1p(tokens),
        "rare": rare,
    }
    how = {
        "cost": "log10 of the cell cost (USD)",
        "length": "log(1 + tokens); tokens from the cell, else estimated from its text",
        "rare": f"share of words in the rarest {RARE_MASS:.0%} of word occurrences of the matrix's texts",
    }
    values = [np.where(available, score, 0.0)]
    for name in FEATURES[1:]:
        filled, n_known = _fill_by_llm(raw[name], available)
        column_values = _standardise(filled, available)
        if n_known == 0:
            used[name] = "dropped: no cell has it"
        elif not column_values.any():
            used[name] = "dropped: the same for every cell"
        elif n_known < int(available.sum()):
            used[name] = f"{how[name]}; {n_known} of {int(available.sum())} cells known, others the LLM's mean"
        else:
            used[name] = how[name]
        values.append(column_values)
    return FeatureTables(
        llms=llms,
        available=available,
        values=np.stack(values),
        expected_quality=_category_means(score, available, categories),
        categories=categories,
        used=used,
    )
