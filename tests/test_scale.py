"""Training whose step, validation and tuning costs are bounded by a number of users, not by all of them."""

from __future__ import annotations

import numpy as np

from gmtrouter.api import Router
from gmtrouter.graph.sample import UserRecords
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.registry.checkpoint import CONTEXT, load_context_state, load_router, save_router
from tests.conftest import make_record
from tests.test_conversation import sticky_records


def test_user_records_finds_each_users_records() -> None:
    users = np.array([3, 1, 3, 0, 1, 3, 2])
    index = UserRecords.of(users)
    assert index.records_of(np.array([0, 2])).tolist() == [3, 6]
    assert index.records_of(np.array([1, 3])).tolist() == [0, 1, 2, 4, 5]
    rng = np.random.default_rng(0)
    drawn = index.sample(2, rng)
    assert len(np.unique(users[drawn])) == 2 and np.isin(np.flatnonzero(np.isin(users, users[drawn])), drawn).all()
    state = rng.bit_generator.state
    assert index.sample(4, rng) is None and rng.bit_generator.state == state  # all users: nothing drawn


def test_bounds_at_or_above_the_number_of_users_change_nothing() -> None:
    records = sticky_records(users=12, conversations=3)
    settings = {"progress": False, "seed": 0, "steps": 6, "eval_every": 3, "hidden": 16, "head_dim": 16}
    bounded = GMTRouter(**settings, users_per_step=12, valid_users=12, tune_users=12).fit(records)
    unbounded = GMTRouter(**settings, users_per_step=10**6, valid_users=10**6, tune_users=10**6).fit(records)
    assert bounded.priors_ == unbounded.priors_
    assert [p["valid_auc"] for p in bounded.training_log_["curve"]] == [
        p["valid_auc"] for p in unbounded.training_log_["curve"]
    ]


def test_small_bounds_still_train_a_router_that_scores_every_user() -> None:
    records = sticky_records(users=16, conversations=3)
    router = GMTRouter(progress=False, seed=0, steps=6, eval_every=3, users_per_step=3, valid_users=4, tune_users=5)
    router.fit(records)
    log = router.training_log_
    assert log["backbone"]["tuning_records"] < len(records) and log["seconds_per_step"] > 0
    scores = router.context(records).score_records(records[:20])
    assert all(np.isfinite(s).all() for s in scores)


def test_a_loaded_model_routes_from_its_saved_context_as_from_a_rebuilt_one(tmp_path) -> None:
    """The checkpoint keeps the fitted backbone and node states; loading them gives the very scores a context
    rebuilt from the history gives, and feedback observed after loading still moves the user."""
    records = sticky_records(users=10, conversations=3)
    router = GMTRouter(progress=False, seed=0, steps=6, eval_every=3, residual_margin=-1, hidden=16, head_dim=16)
    save_router(router.fit(records), tmp_path / "m", records)
    assert (tmp_path / "m" / CONTEXT).is_file()
    saved = Router.load(tmp_path / "m")
    model, history = load_router(tmp_path / "m")
    rebuilt = Router(model, history)
    assert saved.context.network and saved.context.layers  # the network's node states came from the file
    for user, query, previous in [("u0", "Question 3 about subject 3", None), ("u4", "something new", "b")]:
        a = saved.context.score_turn(user, query, ["a", "b", "c"], previous)
        b = rebuilt.context.score_turn(user, query, ["a", "b", "c"], previous)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    query, llms = "Question 3 about subject 3", ["a", "b", "c"]
    before = saved.context.score("u0", query, llms)
    top, other = llms[int(np.argmax(before))], llms[int(np.argmin(before))]
    saved.observe_many([make_record("u0", f"{query} ({i})", {top: 0.0, other: 1.0}) for i in range(6)])
    after = saved.context.score("u0", query, llms)
    assert after[llms.index(top)] - after[llms.index(other)] < before[llms.index(top)] - before[llms.index(other)]


def test_a_saved_context_is_not_used_for_another_history(tmp_path) -> None:
    records = sticky_records(users=6, conversations=2)
    router = GMTRouter(progress=False, seed=0, steps=4, eval_every=2, hidden=16, head_dim=16).fit(records)
    save_router(router, tmp_path / "m", records)
    state = load_context_state(tmp_path / "m")
    fewer = records[: len(records) // 2]
    reused = Router(router, fewer, context_state=state)
    np.testing.assert_allclose(reused.context.prior.user, Router(router, fewer).context.prior.user)
