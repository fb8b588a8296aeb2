"""Baseline routers, each behind the same `PreferenceRouter` interface and registered by its `--router` name."""

from __future__ import annotations

from gmtrouter.baselines.graphrouter import GraphRouter
from gmtrouter.baselines.knn import KNNRouter
from gmtrouter.baselines.mf import MFRouter
from gmtrouter.baselines.mlp import MLPRouter
from gmtrouter.baselines.personalized_mlp import PersonalizedMLPRouter
from gmtrouter.baselines.personalizedrouter import PersonalizedRouter
from gmtrouter.baselines.query_winrate import QueryWinrateRouter, UserQueryWinrateRouter
from gmtrouter.baselines.random_router import RandomRouter
from gmtrouter.baselines.sticky import StickyRouter
from gmtrouter.baselines.winrate import GlobalWinrateRouter, UserWinrateRouter

BASELINES = [
    RandomRouter,
    GlobalWinrateRouter,
    UserWinrateRouter,
    QueryWinrateRouter,
    UserQueryWinrateRouter,
    KNNRouter,
    MLPRouter,
    MFRouter,
    GraphRouter,
    PersonalizedMLPRouter,
    PersonalizedRouter,
    StickyRouter,
]

__all__ = [
    "BASELINES",
    "GlobalWinrateRouter",
    "GraphRouter",
    "KNNRouter",
    "MFRouter",
    "MLPRouter",
    "PersonalizedMLPRouter",
    "PersonalizedRouter",
    "QueryWinrateRouter",
    "RandomRouter",
    "StickyRouter",
    "UserQueryWinrateRouter",
    "UserWinrateRouter",
]
