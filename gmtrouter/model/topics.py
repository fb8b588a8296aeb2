"""Topics of queries: k-means centroids of the training queries' text embeddings, and each query's nearest."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


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
