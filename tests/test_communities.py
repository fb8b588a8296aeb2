"""Taste communities in the simulator, and the community-posterior reference that measures what knowing them is
worth: the files without communities stay as they were, the communities are real, and the Bayes rule behaves as
one (the population's scores with no history, the communities' with many, never the scored ratings)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit
from scipy.stats import norm

from gmtrouter.data.matrix import MatrixRow, write_matrix
from gmtrouter.data.schema import Interaction, Response, write_records
from gmtrouter.data.sim_check import community_reference
from gmtrouter.data.sim_config import SimConfig
from gmtrouter.data.sim_posterior import (
    CommunityModel,
    community_posterior_scores,
    community_posteriors,
    known_community_scores,
)
from gmtrouter.data.simulate import simulate
from gmtrouter.evaluation.metrics import rated_pairs
from gmtrouter.utils.errors import GmtError
from tests.cli_support import assert_one_line_error, in_child
from tests.sim_matrices import gsm8k_matrix, toy_matrix


@pytest.fixture(scope="module")
def six_llms(data_dir: Path) -> list[MatrixRow]:
    """GSM8K with six LLMs (RouteLLM's two and the four GPT-3 systems)."""
    return gsm8k_matrix(data_dir, with_gpt3=True)


@pytest.fixture(scope="module")
def world(six_llms: list[MatrixRow]) -> tuple[list[Interaction], SimConfig]:
    config = SimConfig(users=80, records_per_user=40, communities=4, seed=5)
    return simulate(six_llms, config).records, config


def digest(records: list[Interaction], tmp_path: Path) -> str:
    path = tmp_path / "sim.jsonl"
    write_records(path, records)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# Digests of files written before communities existed: without --communities every byte stays as it was.
BEFORE = {
    (): "f42196069e56e7ce",
    (("archetypes", "specialist,task-critic,loyal"),): "f1e47fdea274fbb3",
    (("switch_aversion", 1.0),): "a571c31e76dc02f9",
    (("candidates", 3),): "f2bf070a98e0b6a3",
}


@pytest.mark.parametrize("changes", list(BEFORE))
def test_without_communities_every_byte_stays(changes: tuple, tmp_path: Path) -> None:
    config = SimConfig(users=12, records_per_user=10, seed=3, **dict(changes))
    assert digest(simulate(toy_matrix(60), config).records, tmp_path) == BEFORE[changes]


def test_communities_are_seeded_and_drawn_on_their_own_stream(tmp_path: Path) -> None:
    """Same seed, same bytes; another seed, another file; and the same users ask the same queries and are shown
    the same candidates as without communities: only their taste (and so utilities and ratings) differ."""
    matrix, config = toy_matrix(60), SimConfig(users=24, records_per_user=12, seed=3, communities=3)
    first = simulate(matrix, config).records
    assert digest(first, tmp_path) == digest(simulate(matrix, config).records, tmp_path)
    assert digest(first, tmp_path) != digest(simulate(matrix, dataclasses.replace(config, seed=4)).records, tmp_path)
    plain = simulate(matrix, dataclasses.replace(config, communities=0)).records
    for with_, without in zip(first, plain, strict=True):
        assert (with_.user, with_.conversation, with_.turn, with_.query) == (
            without.user,
            without.conversation,
            without.turn,
            without.query,
        )
        assert with_.llms == without.llms
    assert {len({r.meta["community"] for r in first if r.user == u}) for u in {r.user for r in first}} == {1}
    assert sorted({r.meta["community"] for r in first}) == [0, 1, 2]
    assert all(np.shape(r.meta["community_utility"]) == (3, 2) for r in first)


def test_a_members_utility_is_the_communitys_plus_a_personal_affinity_per_llm(
    world: tuple[list[Interaction], SimConfig],
) -> None:
    """meta.utility minus the own community's utility is one number per (user, LLM), whatever the query."""
    records, config = world
    personal: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in records:
        own = record.meta["community_utility"][record.meta["community"]]
        for llm, mine, shared in zip(record.llms, record.meta["utility"], own, strict=True):
            personal[record.user, llm].append(mine - shared)
    assert max(np.ptp(values) for values in personal.values()) < 2e-4  # rounding only
    values = np.asarray([v[0] for v in personal.values()])
    assert values.std() == pytest.approx(config.affinity_sd, rel=0.2)


def win_rate_accuracy(records: list[Interaction], by: list[Interaction]) -> float:
    """Pairwise accuracy on `records` of scoring each LLM by its share of won pairs in `by`."""
    wins: dict[str, float] = defaultdict(float)
    games: dict[str, int] = defaultdict(int)
    for record in by:
        for llm, rating, other in zip(record.llms, record.ratings, reversed(record.ratings), strict=True):
            wins[llm] += rating > other
            games[llm] += rating != other
    rate = {m: wins[m] / games[m] for m in games if games[m]}
    pairs = rated_pairs(records, [[rate.get(m, 0.5) for m in r.llms] for r in records])
    return float(pairs.correct.mean())


def test_members_of_a_community_agree_more_than_users_of_different_ones(
    world: tuple[list[Interaction], SimConfig],
) -> None:
    """Each user's ratings are predicted better by the other members of their community than by everyone else."""
    records, _ = world
    users = defaultdict(list)
    for record in records:
        users[record.user].append(record)
    within, across = [], []
    for user, mine in users.items():
        community = mine[0].meta["community"]
        peers = [r for r in records if r.user != user and r.meta["community"] == community]
        others = [r for r in records if r.meta["community"] != community]
        within.append(win_rate_accuracy(mine, peers))
        across.append(win_rate_accuracy(mine, others))
    assert np.mean(within) > np.mean(across) + 0.1


@pytest.mark.parametrize("personal_sd", [0.0, 0.5])
def test_the_rules_outcome_probabilities_are_the_integrals_they_stand_for(personal_sd: float) -> None:
    model = CommunityModel(temperature=0.5, tie_margin=0.1, tie_prob=0.5, personal_sd=personal_sd)
    diff = np.asarray([-2.0, -0.3, 0.0, 0.05, 0.4, 3.0])
    found = model.outcomes(diff)
    assert found.sum(axis=1) == pytest.approx(np.ones(len(diff)))
    sd = np.sqrt(2) * personal_sd
    for d, (first, _, tie) in zip(diff, found, strict=True):
        if sd == 0:
            window = abs(d) < 0.1
            assert (first, tie) == pytest.approx(((1 - 0.5 * window) * expit(d / 0.5), 0.5 * window))
            continue

        def win(x: float, d: float = d) -> float:
            return (1 - 0.5 * (abs(x) < 0.1)) * expit(x / 0.5) * norm.pdf(x, d, sd)

        expected = sum(integrate.quad(win, a, b)[0] for a, b in [(-np.inf, -0.1), (-0.1, 0.1), (0.1, np.inf)])
        assert first == pytest.approx(expected, abs=1e-8)
        assert tie == pytest.approx(0.5 * (norm.cdf(0.1, d, sd) - norm.cdf(-0.1, d, sd)), abs=1e-12)


def accuracy(records: list[Interaction], scores: list[list[float]]) -> float:
    return float(rated_pairs(records, scores).correct.mean())


def test_with_no_history_every_user_gets_the_populations_scores(world: tuple[list[Interaction], SimConfig]) -> None:
    """k = 0: the prior mixture of the communities' predictive margins, the same for every user."""
    records, config = world
    model = CommunityModel.of(config)
    scored = records[:400]
    scores = np.asarray(community_posterior_scores([], scored, model))
    margins = [model.margin(np.asarray([a - b for a, b in r.meta["community_utility"]])) for r in scored]
    assert scores[:, 0] - scores[:, 1] == pytest.approx(np.mean(margins, axis=1))
    other = [r.model_copy(update={"user": "someone else"}) for r in scored]
    assert community_posterior_scores([], other, model) == community_posterior_scores([], scored, model)


def test_the_scored_ratings_are_never_read(world: tuple[list[Interaction], SimConfig]) -> None:
    records, config = world
    model = CommunityModel.of(config)
    history = [r for r in records if r.turn <= 2]
    scored = [r for r in records if r.turn > 2]
    flipped = [
        r.model_copy(update={"responses": [Response(llm=x.llm, rating=1.0 - x.rating) for x in r.responses]})
        for r in scored
    ]
    assert community_posterior_scores(history, flipped, model) == community_posterior_scores(history, scored, model)


def test_more_shots_find_the_community_and_approach_the_oracle(six_llms: list[MatrixRow]) -> None:
    """With no personal part, 35 shots find every user's community and the rule ranks as the oracle does; with
    the default personal part, accuracy climbs from the population's towards the oracle and ends at the rule
    that is told the community."""
    for personal_sd in (0.0, 0.5):
        config = SimConfig(users=60, records_per_user=45, communities=4, seed=2, affinity_sd=personal_sd)
        records = simulate(six_llms, config).records
        curve = community_reference(records, CommunityModel.of(config), shots=(0, 3, 35))
        found = curve["accuracy"]
        assert found["0"] < found["3"] < found["35"] <= curve["oracle_accuracy"] + 1e-9
        assert found["35"] == pytest.approx(curve["known_community_accuracy"], abs=0.01)
        assert curve["own_community_posterior"]["35"] > 0.95
        if personal_sd == 0:
            assert found["35"] == pytest.approx(curve["oracle_accuracy"], abs=0.005)
        else:
            assert curve["oracle_accuracy"] - found["35"] > 0.01  # the personal part is small but real


def test_the_rule_refuses_records_it_cannot_read(world: tuple[list[Interaction], SimConfig]) -> None:
    records, config = world
    model = CommunityModel.of(config)
    plain = records[0].model_copy(update={"meta": {"category": "math"}})
    with pytest.raises(GmtError, match="needs records simulated with --communities"):
        community_posterior_scores([plain], records[1:3], model)
    with pytest.raises(GmtError, match="needs records simulated with --communities"):
        known_community_scores([plain], model)
    assert community_posteriors([], model, 4) == {}


def test_cli_communities_check_and_bad_options(tmp_path: Path) -> None:
    matrix, output = tmp_path / "matrix.jsonl", tmp_path / "sim.jsonl"
    write_matrix(matrix, toy_matrix(30))
    options = ["--users", "8", "--records-per-user", "6", "-o", str(output)]
    result = in_child("data", "simulate", str(matrix), *options, "--communities", "2", "--check")
    assert result.returncode == 0, result.stderr
    reference = json.loads(result.stdout)["community_posterior"]
    assert reference["scored_after"] == 5 and set(reference["accuracy"]) == {"0", "1", "3", "5"}
    output.unlink()
    for extra, words in [
        (["--communities", "-1"], ["--communities", "-1"]),
        (["--communities", "9"], ["--communities", "--users (8)"]),
        (["--communities", "2", "--switch-aversion", "1"], ["--communities", "--switch-aversion"]),
        (["--communities", "2", "--community-sd", "-1"], ["--community-sd"]),
    ]:
        assert_one_line_error(in_child("data", "simulate", str(matrix), *options, *extra), *words)
    assert not output.exists()


def test_the_taste_reference_knows_tastes_not_answers(six_llms: list[MatrixRow]) -> None:
    """`meta.community_taste` is the same for every record of one category showing the same LLMs (it does not
    see the answer); the rule on it finds the community with more shots, and knowing no answers it does not
    beat the rule that sees them."""
    config = SimConfig(users=60, records_per_user=45, communities=4, seed=2)
    records = simulate(six_llms, config).records
    seen: dict[tuple, list] = {}
    for r in records:
        key = (r.meta.get("category"), tuple(x.llm for x in r.responses))
        assert seen.setdefault(key, r.meta["community_taste"]) == r.meta["community_taste"]
    assert len(seen) < len(records) / 5  # many records share a key, so the check above bites
    assert any(r.meta["community_taste"] != r.meta["community_utility"] for r in records)
    curve = community_reference(records, CommunityModel.of(config), shots=(0, 3, 35))
    taste, answers = curve["taste_accuracy"], curve["accuracy"]
    assert taste["0"] < taste["3"] < taste["35"] <= answers["35"]
