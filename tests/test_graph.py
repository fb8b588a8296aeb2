"""The interaction graph: node and edge structure, track edges, incremental pieces, and no label leakage."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmtrouter.data.conversation import continued_llm
from gmtrouter.graph.build import BASE_RELATIONS, TRACK_RELATIONS, build_graph, targets
from gmtrouter.graph.sample import SamplingConfig, sample_step
from gmtrouter.graph.table import InteractionTable
from gmtrouter.text.hashing import HashingEncoder
from tests.conftest import make_record

LLMS = ["a", "b", "c"]


def battle_records():
    """Two users; u1 has a three-turn battle a vs b, u2 a single-answer chat and a shared query."""
    return [
        make_record("u1", "q1", {"a": 1.0, "b": 0.0}, turn=1, conversation="c1"),
        make_record("u1", "q2", {"a": 0.0, "b": 1.0}, turn=2, conversation="c1"),
        make_record("u1", "q3", {"a": 0.5, "b": 0.5}, turn=3, conversation="c1"),
        make_record("u2", "q1", {"c": 1.0}, turn=1, conversation="c2"),
        make_record("u2", "q4", {"a": 1.0, "c": 0.0}, turn=2, conversation="c2"),
    ]


@pytest.fixture
def table() -> InteractionTable:
    return InteractionTable.build(battle_records(), LLMS, HashingEncoder(16), (0.0, 1.0))


def edges(graph, relation) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index[relation].T.tolist()))


def test_nodes_and_reverse_relations(table) -> None:
    graph = build_graph(table, np.arange(5), len(LLMS))
    assert graph.num_nodes == {"user": 3, "llm": 3, "query": 4, "response": 9, "turn": 9}
    for src, rel, dst in BASE_RELATIONS + TRACK_RELATIONS:
        assert (src, rel, dst) in graph.edge_index
    forward = edges(graph, ("turn", "by", "user"))
    backward = edges(graph, ("user", "made", "turn"))
    assert backward == {(d, s) for s, d in forward}
    # node 0 is the population user: no edges at all
    assert all(user != graph.population_user for _, user in forward)
    # q1 is shared by u1 and u2: one query node with three turns
    q1 = graph.query_local[table.query_texts.index("q1")]
    assert sum(dst == q1 for _, dst in edges(graph, ("turn", "asks", "query"))) == 3


def test_track_edges_follow_each_llm(table) -> None:
    graph = build_graph(table, np.arange(5), len(LLMS))
    turn_of = {}  # (record, llm) -> turn node
    for node, response in enumerate(range(len(table.resp_llm))):
        turn_of[int(table.resp_record[response]), LLMS[table.resp_llm[response]]] = node
    expected = {
        (turn_of[0, "a"], turn_of[1, "a"]),
        (turn_of[0, "b"], turn_of[1, "b"]),
        (turn_of[1, "a"], turn_of[2, "a"]),
        (turn_of[1, "b"], turn_of[2, "b"]),
        # u2's first turn showed one answer: both answers of turn 2 follow it
        (turn_of[3, "c"], turn_of[4, "a"]),
        (turn_of[3, "c"], turn_of[4, "c"]),
    }
    assert edges(graph, ("turn", "next", "turn")) == expected
    single = build_graph(table, np.arange(5), len(LLMS), multi_turn=False)
    assert ("turn", "next", "turn") not in single.edge_index


def test_response_carries_its_rating(table) -> None:
    graph = build_graph(table, np.array([0]), len(LLMS))
    # within-record min-max rating, then the global scale, then has-text
    assert graph.response_x[:, -3].tolist() == [1.0, 0.0]
    assert graph.response_x[:, -1].tolist() == [1.0, 1.0]


def test_subgraph_drops_edges_to_missing_turns(table) -> None:
    graph = build_graph(table, np.array([0, 2]), len(LLMS))  # turn 2 missing: no track edges across it
    assert graph.edge_index[("turn", "next", "turn")].shape[1] == 0
    assert graph.num_nodes["turn"] == 4


def test_targets_are_never_in_their_graph(table) -> None:
    graph = build_graph(table, np.array([0, 1, 3]), len(LLMS), extra_users=[table.users.index("u2")])
    batch = targets(table, graph, np.array([2, 4]))
    assert not set(graph.records) & {2, 4}
    assert batch.mask.tolist() == [[True, True], [True, True]]
    assert batch.rating.tolist() == [[0.5, 0.5], [1.0, 0.0]]
    # q3 is not in the graph, q4 neither; both users have nodes
    assert batch.query_node.tolist() == [-1, -1]
    assert batch.user.tolist() == [graph.user_local[table.users.index(u)] for u in ("u1", "u2")]


def test_unknown_user_maps_to_population(table) -> None:
    graph = build_graph(table, np.array([0]), len(LLMS))
    u2 = table.users.index("u2")
    assert graph.user_node(np.array([u2, -1])).tolist() == [0, 0]


def test_sampling_keeps_visible_and_targets_disjoint() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 12)
    for _ in range(50):
        visible, hidden = sample_step(users, SamplingConfig(max_visible=5, targets_per_step=64), rng)
        assert not set(visible) & set(hidden)
        shown = np.bincount(users[visible], minlength=30)
        assert shown.max() <= 5
        assert len(hidden) == 64


def test_unknown_llm_is_refused() -> None:
    from gmtrouter.utils.errors import GmtError

    with pytest.raises(GmtError, match="LLM\\(s\\) z are not known"):
        InteractionTable.build([make_record("u", "q", {"z": 1.0, "a": 0.0})], LLMS, HashingEncoder(16), (0, 1))


conversation_logs = st.lists(
    st.tuples(
        st.integers(0, 3),  # conversation
        st.integers(1, 4),  # turn
        st.dictionaries(st.sampled_from("abcd"), st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=4),
        st.one_of(st.none(), st.sampled_from(["a", "b", "z"])),  # the record's own previous_llm ("z": unknown)
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(log=conversation_logs, cut=st.integers(0, 14))
def test_previous_turns_and_tracks_match_their_record_by_record_definition(log, cut) -> None:
    """The table's previous LLM of each record is `previous_llms`'s over the records there when it arrived, and
    each response follows the previous turn's response of its LLM (or its single response), whether the records
    arrive in one batch or two."""
    records = [
        make_record("u", f"q{i}", ratings, turn=turn, conversation=f"c{c}").model_copy(update={"previous_llm": prev})
        for i, (c, turn, ratings, prev) in enumerate(log)
    ]
    llms = ["a", "b", "c", "d"]
    table = InteractionTable.build(records[:cut], llms, HashingEncoder(8), (0.0, 1.0))
    table.extend(records[cut:])
    first_of_turn: dict[tuple[str, int], int] = {}
    for index, record in enumerate(records):
        first_of_turn.setdefault((record.conversation, record.turn), index)
    for index, record in enumerate(records):
        seen = cut if index < cut else len(records)  # what the table held when this record arrived
        before = first_of_turn.get((record.conversation, record.turn - 1))
        before = before if before is not None and before < seen else None
        named = record.previous_llm
        expected = named if named else (continued_llm(records[before]) if before is not None else None)
        assert table.rec_prev_llm[index] == (llms.index(expected) if expected in llms else -1)
        for k, response in enumerate(record.responses):
            follows = table.resp_prev[table.rec_offsets[index] + k]
            if before is None:
                assert follows == -1
            elif len(records[before].responses) == 1:
                assert follows == table.rec_offsets[before]
            else:
                shown = records[before].llms
                assert follows == (
                    table.rec_offsets[before] + shown.index(response.llm) if response.llm in shown else -1
                )
