"""Baseline routers, each behind the same `PreferenceRouter` interface and registered by its `--router` name."""

from __future__ import annotations

from gmtrouter.baselines.random_router import RandomRouter
from gmtrouter.baselines.winrate import GlobalWinrateRouter, UserWinrateRouter

BASELINES = [RandomRouter, GlobalWinrateRouter, UserWinrateRouter]

__all__ = ["BASELINES", "GlobalWinrateRouter", "RandomRouter", "UserWinrateRouter"]
