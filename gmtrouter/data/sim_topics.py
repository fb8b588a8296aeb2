"""Topical continuity: each query's nearest neighbours, so a conversation can drift between related queries.

Neighbours are ranked by the cosine similarity of the queries' TF-IDF vectors (English stop words removed,
sublinear term frequency), with queries of the same `meta.category` always ranked before queries of another
category. Similarities are computed in blocks of rows, so memory stays at block x rows however big the matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

BLOCK = 1024


def query_vectors(queries: Sequence[str]):  # -> scipy.sparse.csr_matrix
    """L2-normalised TF-IDF vectors of the queries (all zeros for a query without any indexed word)."""
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float64)
    try:
        return vectorizer.fit_transform(queries)
    except ValueError:  # no query has a word left after stop words
        vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\S+", dtype=np.float64)
        return vectorizer.fit_transform(queries)


def nearest_neighbours(queries: Sequence[str], categories: np.ndarray, k: int) -> np.ndarray:
    """[R, k] indices of each query's k nearest other queries, nearest first (ties: lower index first).

    Equal similarities are broken by a tiny penalty that grows with the index, so the result does not
    depend on how the partial sort orders ties.

    With a single query there is no other; it is then its own neighbour.
    """
    n = len(queries)
    if n == 1:
        return np.zeros((1, max(k, 1)), dtype=int)
    k = max(1, min(k, n - 1))
    vectors = query_vectors(queries)
    categories = np.asarray(categories)
    result = np.empty((n, k), dtype=int)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        sim = (vectors[start:stop] @ vectors.T).toarray()
        sim += 2.0 * (categories[start:stop, None] == categories[None, :])  # same category first
        sim -= 1e-9 * np.arange(n) / n  # equal similarities: the lower index wins, on every platform
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never oneself
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        result[start:stop] = np.take_along_axis(top, order, axis=1)
    return result
