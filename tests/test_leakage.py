"""No router reads the labels it is scored on: flipping the ratings of the scored records changes no score.

Runs for every router in the registry, so a new router is checked the day it is registered.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmtrouter.data.schema import Interaction
from gmtrouter.registry.routers import make_router, router_classes
from tests import test_baselines, test_gmtrouter

SETTINGS = {**test_baselines.FAST, "gmtrouter": {**test_gmtrouter.FAST, "steps": 40}}


def flipped(records: list[Interaction]) -> list[Interaction]:
    """The same records with every rating negated: each pair's winner becomes its loser."""
    return [
        r.model_copy(update={"responses": [x.model_copy(update={"rating": -x.rating}) for x in r.responses]})
        for r in records
    ]


@pytest.fixture(scope="module")
def world() -> dict[str, list[Interaction]]:
    train = test_gmtrouter.taste_records(12, 10, seed=0)
    known = test_gmtrouter.taste_records(12, 3, seed=5)  # more records of the training users
    shots = test_gmtrouter.taste_records(4, 6, seed=6, prefix="new")
    return {"train": train, "known": known, "history": train + shots[::2], "new": shots[1::2]}


@pytest.mark.parametrize("name", sorted(router_classes()))
def test_scores_never_depend_on_the_scored_labels(name, world) -> None:
    torch.manual_seed(0)
    router = make_router(name, **SETTINGS.get(name, {})).fit(world["train"])
    context = router.context(world["history"])
    scored = world["known"] + world["new"]
    for a, b in zip(context.score_records(scored), context.score_records(flipped(scored)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
