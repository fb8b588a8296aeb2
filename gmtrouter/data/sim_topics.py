"""Topical continuity: each query's nearest neighbours, so a conversation can drift between related queries.

Neighbours are ranked by the cosine similarity of the queries' TF-IDF vectors (English stop words removed,
sublinear term frequency), with queries of the same `meta.category` always ranked before queries of another
category. Similarities are computed in blocks of rows, so memory stays at block x pool size however big the
matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

BLOCK = 1024


def query_vectors(queries: Sequence[str]):  # -> scipy.sparse.csr_matrix
    """L2-normalised TF-IDF vectors of the queries (all zeros for a query without any indexed word)."""
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float32)
    try:
        return vectorizer.fit_transform(queries)
    except ValueError:  # no query has a word left after stop words
        vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\S+", dtype=np.float32)
        return vectorizer.fit_transform(queries)


def _top_k(vectors, rows: np.ndarray, pool: np.ndarray, categories: np.ndarray, k: int) -> np.ndarray:
    """[len(rows), k] the k most similar members of `pool` (sorted global indices) for each of `rows`,
    nearest first: same category before any other, then by cosine similarity; never the row itself."""
    n = int(pool.max()) + 1 if len(pool) else 1
    pool_vectors = vectors[pool].T.tocsr()
    # Equal similarities: the lower index wins, whatever order the partial sort leaves ties in.
    penalty = 1e-9 * pool / n
    result = np.empty((len(rows), k), dtype=int)
    for start in range(0, len(rows), BLOCK):
        block = rows[start : start + BLOCK]
        sim = (vectors[block] @ pool_vectors).toarray() - penalty
        sim += 2.0 * (categories[block][:, None] == categories[pool][None, :])
        at = np.minimum(np.searchsorted(pool, block), len(pool) - 1)  # the row's own place in the pool
        own = pool[at] == block
        sim[np.flatnonzero(own), at[own]] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        result[start : start + len(block)] = pool[np.take_along_axis(top, order, axis=1)]
    return result


def nearest_neighbours(queries: Sequence[str], categories: np.ndarray, k: int) -> np.ndarray:
    """[R, k] indices of each query's k nearest other queries, nearest first (ties: lower index first).

    A category with more than k queries is searched on its own (the cost grows with the sum of the squared
    category sizes, not the squared matrix size); the queries of smaller categories are compared with all.
    With a single query there is no other; it is then its own neighbour.
    """
    n = len(queries)
    if n == 1:
        return np.zeros((1, max(k, 1)), dtype=int)
    k = max(1, min(k, n - 1))
    vectors = query_vectors(queries)
    categories = np.asarray(categories)
    result = np.empty((n, k), dtype=int)
    everyone = np.arange(n)
    names, sizes = np.unique(categories, return_counts=True)
    for name, size in zip(names, sizes, strict=True):
        members = np.flatnonzero(categories == name)
        pool = members if size > k else everyone
        result[members] = _top_k(vectors, members, pool, categories, k)
    return result
