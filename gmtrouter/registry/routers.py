"""Every router by its `--router` name, and making one from settings.

A leaf of the import graph: it imports the routers, and nothing a router imports imports it back, so the
registry needs no lazy imports and can be read top to bottom.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gmtrouter.baselines import BASELINES
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.routing.base import PreferenceRouter
from gmtrouter.utils.errors import GmtError


def router_classes() -> dict[str, type[PreferenceRouter]]:
    """Every router by its `--router` name."""
    return {cls.name: cls for cls in [GMTRouter, *BASELINES]}


# Settings that mean the same in every router that has them, and the values that make sense for them: a count
# of steps, layers or items is at least 1; a rate or fraction lies in [0, 1]. Every number must be finite.
AT_LEAST_ONE = frozenset(
    {"hidden", "head_dim", "heads", "layers", "steps", "eval_every", "patience", "max_visible", "targets_per_step"}
    | {"users_per_step", "batch_size", "max_epochs", "neighbors", "tasks"}
)
NOT_NEGATIVE = frozenset({"seed", "valid_users", "tune_users", "weight_decay"})  # residual_margin may be < 0
FRACTIONS = frozenset({"thumbs_rate", "cold_user_rate", "valid_frac", "target_rate", "cold_query_rate"})
POSITIVE = frozenset({"lr"})


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
    hints = typing.get_type_hints(cls.__init__)
    for key, value in settings.items():
        _check_setting(name, key, value, hints.get(key, Any))
    return cls(**settings)


def _check_setting(router: str, key: str, value: Any, kind: Any) -> None:
    """Refuse a setting of the wrong type or outside the values it can take, naming both, before any work."""
    try:
        TypeAdapter(kind).validate_python(value, strict=True)
    except ValidationError as error:
        wanted = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
        problem = error.errors()[0]["msg"].lower()
        raise GmtError(f"router '{router}': setting {key}={value!r} is not {wanted} ({problem})") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):
        raise GmtError(f"router '{router}': setting {key}={value!r} must be a finite number")
    if key in AT_LEAST_ONE and value < 1:
        raise GmtError(f"router '{router}': setting {key}={value!r} must be at least 1")
    if key in NOT_NEGATIVE and value < 0:
        raise GmtError(f"router '{router}': setting {key}={value!r} must be 0 or more")
    if key in FRACTIONS and not 0 <= value <= 1:
        raise GmtError(f"router '{router}': setting {key}={value!r} must lie in [0, 1]")
    if key == "dropout" and not 0 <= value < 1:
        raise GmtError(f"router '{router}': setting {key}={value!r} must lie in [0, 1)")
    if key in POSITIVE and value <= 0:
        raise GmtError(f"router '{router}': setting {key}={value!r} must be above 0")
