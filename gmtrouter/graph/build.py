"""The heterogeneous interaction graph: five node types, four turn relations (and a track relation), reversed.

Each shown response makes one turn node and one response node. The turn node links the user who asked, the
query, the response (which carries the rating) and the LLM that answered; on multi-turn data it also links
the turn it follows on its track. Every relation has its reverse, so every node type is updated.

A graph is always a subset of an `InteractionTable`'s records: the records a user has *shown*. The records
being scored are never in it; `targets` builds their (user, query, LLMs, ratings) batch separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gmtrouter.graph.table import InteractionTable

NODE_TYPES = ("user", "llm", "query", "response", "turn")
EdgeType = tuple[str, str, str]
BASE_RELATIONS: tuple[EdgeType, ...] = (
    ("turn", "by", "user"),
    ("user", "made", "turn"),
    ("turn", "asks", "query"),
    ("query", "asked_in", "turn"),
    ("turn", "got", "response"),
    ("response", "answers", "turn"),
    ("turn", "served_by", "llm"),
    ("llm", "served", "turn"),
)
TRACK_RELATIONS: tuple[EdgeType, ...] = (("turn", "next", "turn"), ("turn", "prev", "turn"))


def relations(multi_turn: bool) -> list[EdgeType]:
    """The edge types of a graph, with the track relations when multi-turn edges are on."""
    return list(BASE_RELATIONS) + (list(TRACK_RELATIONS) if multi_turn else [])


def metadata(multi_turn: bool) -> tuple[list[str], list[EdgeType]]:
    """(node types, edge types) in the form PyG layers take."""
    return list(NODE_TYPES), relations(multi_turn)


@dataclass
class HeteroGraph:
    """Node counts, features and typed edges of one graph, with the maps back to table ids."""

    num_nodes: dict[str, int]
    edge_index: dict[EdgeType, torch.Tensor]  # each [2, E], row 0 source, row 1 destination
    query_x: torch.Tensor  # [Q, E] text embeddings of the query nodes
    response_x: torch.Tensor  # [N, E + RATING_FEATURES]
    response_llm: torch.Tensor  # [N] LLM id of each response (and of its turn)
    user_local: np.ndarray  # [table users] -> user node, -1 if absent (use the population node, 0)
    query_local: np.ndarray  # [table queries] -> query node, -1 if absent
    user_ids: np.ndarray  # [U] table user id of each user node, -1 for the population node (node 0)
    records: np.ndarray  # table record ids shown in this graph

    population_user = 0  # the node of a user with no history: the population prior; it has no edges

    def user_node(self, table_user: np.ndarray) -> np.ndarray:
        """User nodes for table user ids (-1 allowed), falling back to the population node."""
        table_user = np.asarray(table_user)
        local = np.where(table_user >= 0, self.user_local[np.maximum(table_user, 0)], -1)
        return np.where(local >= 0, local, self.population_user)


def _edges(src: np.ndarray, dst: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([src, dst]).astype(np.int64))


def build_graph(
    table: InteractionTable,
    records: np.ndarray,
    num_llms: int,
    multi_turn: bool = True,
    extra_users: Sequence[int] | np.ndarray = (),
) -> HeteroGraph:
    """The graph of `records` (table record ids). `extra_users` get a node even without records there."""
    records = np.unique(np.asarray(records, dtype=np.int64))
    counts = table.rec_offsets[records + 1] - table.rec_offsets[records]
    starts = np.repeat(table.rec_offsets[records], counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    responses = starts + within  # table response ids, sorted
    resp_rec = table.resp_record[responses]

    users_present = np.unique(np.concatenate([table.rec_user[records], np.asarray(extra_users, dtype=np.int64)]))
    user_local = np.full(len(table.users), -1, dtype=np.int64)
    user_local[users_present] = np.arange(1, len(users_present) + 1)
    queries_present = np.unique(table.rec_query[records])
    query_local = np.full(len(table.query_texts), -1, dtype=np.int64)
    query_local[queries_present] = np.arange(len(queries_present))

    n = len(responses)
    turn = np.arange(n)
    user_of = user_local[table.rec_user[resp_rec]]
    query_of = query_local[table.rec_query[resp_rec]]
    llm_of = table.resp_llm[responses]
    edge_index = {
        ("turn", "by", "user"): _edges(turn, user_of),
        ("user", "made", "turn"): _edges(user_of, turn),
        ("turn", "asks", "query"): _edges(turn, query_of),
        ("query", "asked_in", "turn"): _edges(query_of, turn),
        ("turn", "got", "response"): _edges(turn, turn),
        ("response", "answers", "turn"): _edges(turn, turn),
        ("turn", "served_by", "llm"): _edges(turn, llm_of),
        ("llm", "served", "turn"): _edges(llm_of, turn),
    }
    if multi_turn:
        local = np.full(len(table.resp_llm), -1, dtype=np.int64)
        local[responses] = turn
        prev = table.resp_prev[responses]
        prev_local = np.where(prev >= 0, local[np.maximum(prev, 0)], -1)
        has = prev_local >= 0
        edge_index[("turn", "next", "turn")] = _edges(prev_local[has], turn[has])
        edge_index[("turn", "prev", "turn")] = _edges(turn[has], prev_local[has])

    return HeteroGraph(
        num_nodes={
            "user": len(users_present) + 1,  # node 0 is the population node
            "llm": num_llms,
            "query": len(queries_present),
            "response": n,
            "turn": n,
        },
        edge_index=edge_index,
        query_x=torch.from_numpy(table.query_emb[queries_present]),
        response_x=torch.from_numpy(table.resp_x[responses]),
        response_llm=torch.from_numpy(llm_of),
        user_local=user_local,
        query_local=query_local,
        user_ids=np.concatenate([[-1], users_present]),
        records=records,
    )


@dataclass
class TargetBatch:
    """Records to score against a graph: padded to the largest number of responses K."""

    user: torch.Tensor  # [B] user node
    query_x: torch.Tensor  # [B, E] query text embedding
    query_node: torch.Tensor  # [B] query node in the graph, -1 when the query is not in it
    llm: torch.Tensor  # [B, K] LLM ids (0 where padded)
    mask: torch.Tensor  # [B, K] True for real responses
    rating: torch.Tensor  # [B, K] ratings (0 where padded)


def targets(table: InteractionTable, graph: HeteroGraph, records: np.ndarray) -> TargetBatch:
    """The scoring batch of table records `records` against `graph` (which must not contain them)."""
    records = np.asarray(records, dtype=np.int64)
    counts = table.rec_offsets[records + 1] - table.rec_offsets[records]
    width = int(counts.max()) if len(records) else 1
    slot = np.arange(width)
    mask = slot[None, :] < counts[:, None]
    index = np.where(mask, table.rec_offsets[records][:, None] + slot[None, :], 0)
    ratings = np.where(mask, table.resp_rating[index], 0.0).astype(np.float32)
    query = table.rec_query[records]
    return TargetBatch(
        user=torch.from_numpy(graph.user_node(table.rec_user[records])),
        query_x=torch.from_numpy(table.query_emb[query]),
        query_node=torch.from_numpy(graph.query_local[query]),
        llm=torch.from_numpy(np.where(mask, table.resp_llm[index], 0)),
        mask=torch.from_numpy(mask),
        rating=torch.from_numpy(ratings),
    )
