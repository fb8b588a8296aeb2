"""Every router by its `--router` name, and making one from settings.

A leaf of the import graph: it imports the routers, and nothing a router imports imports it back, so the
registry needs no lazy imports and can be read top to bottom.
"""

from __future__ import annotations

import inspect
from typing import Any

from gmtrouter.baselines import BASELINES
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.routing.base import PreferenceRouter
from gmtrouter.utils.errors import GmtError


def router_classes() -> dict[str, type[PreferenceRouter]]:
    """Every router by its `--router` name."""
    return {cls.name: cls for cls in [GMTRouter, *BASELINES]}


def router_settings(name: str) -> list[str]:
    """The setting names router `name` accepts (its constructor's keyword arguments)."""
    return list(inspect.signature(_router_class(name).__init__).parameters)[1:]


def _router_class(name: str) -> type[PreferenceRouter]:
    classes = router_classes()
    if name not in classes:
        raise GmtError(f"unknown router '{name}'; choose one of: {', '.join(sorted(classes))}")
    return classes[name]


def make_router(name: str, **settings: Any) -> PreferenceRouter:
    """A new, unfitted router by name; an unknown setting is refused with the ones the router accepts."""
    cls = _router_class(name)
    allowed = router_settings(name)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        tuned = [k for k in unknown if k in getattr(cls, "GRID", {})]
        hint = f' ({", ".join(tuned)} is tuned: fix it with grid={{"{tuned[0]}": VALUE}})' if tuned else ""
        raise GmtError(f"router '{name}' has no setting {names}{hint}; its settings are: {', '.join(allowed)}")
    return cls(**settings)
