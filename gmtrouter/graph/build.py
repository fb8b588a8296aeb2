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

from gmtrouter.graph.table import RATING_FEATURES, InteractionTable

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


def relations(multi_turn: bool, turn_nodes: bool = True) -> list[EdgeType]:
    """The edge types of a graph, with the track relations when multi-turn edges are on.

    Without turn nodes (an ablation) the response node is the hub of its interaction instead.
    """
    edges = list(BASE_RELATIONS) + (list(TRACK_RELATIONS) if multi_turn else [])
    if turn_nodes:
        return edges
    hub = {"turn": "response"}
    return [(hub.get(s, s), r, hub.get(d, d)) for s, r, d in edges if r not in ("got", "answers")]


def metadata(multi_turn: bool, turn_nodes: bool = True) -> tuple[list[str], list[EdgeType]]:
    """(node types, edge types) in the form PyG layers take."""
    types = [t for t in NODE_TYPES if turn_nodes or t != "turn"]
    return types, relations(multi_turn, turn_nodes)


@dataclass
class HeteroGraph:
    """Node counts, features and typed edges of one graph, with the maps back to table ids.

    A graph grows with `extend` (new interactions append nodes and edges; nothing is renumbered), so a
    service can add a user's feedback without rebuilding it; `user_nodes` is the subgraph around users.
    """

    multi_turn: bool
    turn_nodes: bool
    num_nodes: dict[str, int]
    edge_index: dict[EdgeType, torch.Tensor]  # each [2, E], row 0 source, row 1 destination
    query_x: torch.Tensor  # [Q, E] text embeddings of the query nodes
    response_x: torch.Tensor  # [N, E + RATING_FEATURES]
    response_llm: torch.Tensor  # [N] LLM id of each response (and of its turn)
    response_group: torch.Tensor  # [N] position of each response's record in `records`
    user_local: np.ndarray  # [table users] -> user node, -1 if absent (use the population node, 0)
    query_local: np.ndarray  # [table queries] -> query node, -1 if absent
    response_local: np.ndarray  # [table responses] -> response (= turn) node, -1 if absent
    user_ids: np.ndarray  # [U] table user id of each user node, -1 for the population node (node 0)
    records: np.ndarray  # table record ids shown in this graph, in the order they were added

    population_user = 0  # the node of a user with no history: the population prior; it has no edges

    @classmethod
    def empty(cls, table: InteractionTable, num_llms: int, multi_turn: bool, turn_nodes: bool = True) -> HeteroGraph:
        """A graph with the LLM nodes and the population user only."""
        dim = table.query_emb.shape[1]
        return cls(
            multi_turn=multi_turn,
            turn_nodes=turn_nodes,
            num_nodes={"user": 1, "llm": num_llms, "query": 0, "response": 0, "turn": 0},
            edge_index={edge: torch.zeros(2, 0, dtype=torch.long) for edge in relations(multi_turn, turn_nodes)},
            query_x=torch.zeros(0, dim),
            response_x=torch.zeros(0, table.query_emb.shape[1] + RATING_FEATURES),
            response_llm=torch.zeros(0, dtype=torch.long),
            response_group=torch.zeros(0, dtype=torch.long),
            user_local=np.zeros(0, np.int64),
            query_local=np.zeros(0, np.int64),
            response_local=np.zeros(0, np.int64),
            user_ids=np.array([-1]),
            records=np.zeros(0, np.int64),
        )

    def user_node(self, table_user: np.ndarray) -> np.ndarray:
        """User nodes for table user ids (-1 allowed), falling back to the population node."""
        table_user = np.asarray(table_user)
        known = (table_user >= 0) & (table_user < len(self.user_local))
        local = np.where(known, self.user_local[np.where(known, table_user, 0)], -1)
        return np.where(local >= 0, local, self.population_user)

    def _grow_maps(self, table: InteractionTable) -> None:
        def grown(array: np.ndarray, size: int) -> np.ndarray:
            return np.concatenate([array, np.full(size - len(array), -1, np.int64)])

        self.user_local = grown(self.user_local, len(table.user_vocab))
        self.query_local = grown(self.query_local, len(table.query_vocab))
        self.response_local = grown(self.response_local, len(table.resp_llm))

    def _add_nodes(self, kind: str, local: np.ndarray, table_ids: np.ndarray) -> np.ndarray:
        """Give node numbers to the table ids that have none yet; return the ids that were new."""
        new = np.unique(table_ids[local[table_ids] < 0]) if len(table_ids) else table_ids
        local[new] = self.num_nodes[kind] + np.arange(len(new))
        self.num_nodes[kind] += len(new)
        return new

    def extend(self, table: InteractionTable, records: np.ndarray, extra_users: Sequence[int] = ()) -> np.ndarray:
        """Append table records (and nodes for `extra_users`); return the new turn nodes."""
        records = np.setdiff1d(np.asarray(records, dtype=np.int64), self.records)
        self._grow_maps(table)
        counts = table.rec_offsets[records + 1] - table.rec_offsets[records]
        starts = np.repeat(table.rec_offsets[records], counts)
        responses = starts + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        resp_rec = table.resp_record[responses]

        users = np.concatenate([table.rec_user[records], np.asarray(extra_users, dtype=np.int64)])
        new_users = self._add_nodes("user", self.user_local, users)
        self.user_ids = np.concatenate([self.user_ids, new_users])
        new_queries = self._add_nodes("query", self.query_local, table.rec_query[records])
        self.query_x = torch.cat([self.query_x, torch.from_numpy(table.query_emb[new_queries])])
        turn = self.num_nodes["turn"] + np.arange(len(responses))
        self.response_local[responses] = turn
        self.num_nodes["turn"] += len(responses)
        self.num_nodes["response"] += len(responses)
        llm_of = table.resp_llm[responses]
        self.response_x = torch.cat([self.response_x, torch.from_numpy(table.response_x(responses))])
        self.response_llm = torch.cat([self.response_llm, torch.from_numpy(llm_of)])
        group = len(self.records) + np.repeat(np.arange(len(records)), counts)
        self.response_group = torch.cat([self.response_group, torch.from_numpy(group)])
        self.records = np.concatenate([self.records, records])

        user_of = self.user_local[table.rec_user[resp_rec]]
        query_of = self.query_local[table.rec_query[resp_rec]]
        hub = "turn" if self.turn_nodes else "response"
        new_edges = {
            (hub, "by", "user"): (turn, user_of),
            (hub, "asks", "query"): (turn, query_of),
            (hub, "served_by", "llm"): (turn, llm_of),
        }
        if self.turn_nodes:
            new_edges[("turn", "got", "response")] = (turn, turn)
        if self.multi_turn:
            prev = table.resp_prev[responses]
            prev_turn = np.where(prev >= 0, self.response_local[np.maximum(prev, 0)], -1)
            has = prev_turn >= 0
            new_edges[(hub, "prev", hub)] = (turn[has], prev_turn[has])
        for (src_type, rel, dst_type), (src, dst) in new_edges.items():
            for edge, (a, b) in (
                ((src_type, rel, dst_type), (src, dst)),
                (_reverse(src_type, rel, dst_type), (dst, src)),
            ):
                added = torch.from_numpy(np.stack([a, b]).astype(np.int64))
                self.edge_index[edge] = torch.cat([self.edge_index[edge], added], dim=1)
        return turn

    def user_nodes(self, table: InteractionTable, users: Sequence[int]) -> dict[str, torch.Tensor]:
        """The subgraph around table users: their user nodes and their turn and response nodes."""
        users = np.asarray(users, dtype=np.int64)
        mine = np.flatnonzero(np.isin(table.rec_user[table.resp_record], users))
        turns = self.response_local[mine[mine < len(self.response_local)]]
        turns = torch.from_numpy(np.sort(turns[turns >= 0]))
        nodes = torch.from_numpy(self.user_node(users))
        around = {"user": nodes[nodes != self.population_user], "response": turns}
        if self.turn_nodes:
            around["turn"] = turns
        return around


_REVERSE = {
    "by": "made",
    "asks": "asked_in",
    "got": "answers",
    "served_by": "served",
    "prev": "next",
}


def _reverse(src: str, rel: str, dst: str) -> EdgeType:
    return (dst, _REVERSE[rel], src)


def build_graph(
    table: InteractionTable,
    records: np.ndarray,
    num_llms: int,
    multi_turn: bool = True,
    extra_users: Sequence[int] | np.ndarray = (),
    turn_nodes: bool = True,
) -> HeteroGraph:
    """The graph of `records` (table record ids). `extra_users` get a node even without records there."""
    graph = HeteroGraph.empty(table, num_llms, multi_turn, turn_nodes)
    graph.extend(table, np.sort(np.asarray(records, dtype=np.int64)), extra_users)
    return graph


@dataclass
class TargetBatch:
    """Records to score against a graph: padded to the largest number of responses K."""

    user: torch.Tensor  # [B] user node
    query_x: torch.Tensor  # [B, E] query text embedding
    query_node: torch.Tensor  # [B] query node in the graph, -1 when the query is not in it
    llm: torch.Tensor  # [B, K] LLM ids (0 where padded)
    mask: torch.Tensor  # [B, K] True for real responses
    rating: torch.Tensor  # [B, K] ratings (0 where padded)
    prior: torch.Tensor | None = None  # [B, K] backbone scores the network's output is added to (None: zeros)


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
