"""Baseline routers, each behind the same `PreferenceRouter` interface and registered by its `--router` name."""

from __future__ import annotations

from gmtrouter.baselines.graphrouter import GraphRouterRouter
from gmtrouter.baselines.knn import KNNRouter
from gmtrouter.baselines.mf import MFRouter
from gmtrouter.baselines.mlp import MLPRouter
from gmtrouter.baselines.personalized_mlp import PersonalizedMLPRouter
from gmtrouter.baselines.personalizedrouter import PersonalizedRouterRouter
from gmtrouter.baselines.random_router import RandomRouter
from gmtrouter.baselines.winrate import GlobalWinrateRouter, UserWinrateRouter

BASELINES = [
    RandomRouter,
    GlobalWinrateRouter,
    UserWinrateRouter,
    KNNRouter,
    MLPRouter,
    MFRouter,
    GraphRouterRouter,
    PersonalizedMLPRouter,
    PersonalizedRouterRouter,
]

__all__ = [
    "BASELINES",
    "GlobalWinrateRouter",
    "GraphRouterRouter",
    "KNNRouter",
    "MFRouter",
    "MLPRouter",
    "PersonalizedMLPRouter",
    "PersonalizedRouterRouter",
    "RandomRouter",
    "UserWinrateRouter",
]
