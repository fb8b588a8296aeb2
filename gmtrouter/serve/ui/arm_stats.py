"""What routing is worth on live traffic: the thumbs-up rate and mean rating of the routed answers of each arm
(the router, and the control policy that `control_share` of the routes get), with 95% intervals, and the
router's lead over the control.

Only feedback on the answer a route chose counts (a rating of another candidate's answer says nothing of the
arm's choice). Intervals: Wilson's for a rate, honest at the few dozen thumbs an arm has early on; Newcombe's
hybrid score interval for the difference of two rates (built from the two Wilson intervals); a normal interval
for a mean rating and Welch's for the difference of two means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gmtrouter.serve.ui.insights import wilson

Z95 = 1.96
ARMS = ("router", "control")


@dataclass
class ArmCounts:
    """Running sums of one arm's routes and of the feedback on the answers they chose."""

    routes: int = 0
    up: int = 0
    down: int = 0
    rated: int = 0
    rating_sum: float = 0.0
    rating_squares: float = 0.0

    def add(self, other: ArmCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def rating(self, value: float) -> None:
        self.rated += 1
        self.rating_sum += value
        self.rating_squares += value * value


@dataclass(frozen=True)
class Estimate:
    """A rate or a mean with its 95% interval, over `n` observations (all None without any)."""

    value: float | None
    low: float | None
    high: float | None
    n: int


NONE = Estimate(None, None, None, 0)


def rate(successes: int, n: int) -> Estimate:
    """A rate with its Wilson interval."""
    if n == 0:
        return NONE
    low, high = wilson(successes, n)
    return Estimate(successes / n, low, high, n)


def rate_difference(a: Estimate, b: Estimate) -> Estimate:
    """a - b with Newcombe's hybrid score interval (method 10), from the two Wilson intervals."""
    if a.value is None or b.value is None:
        return NONE
    d = a.value - b.value
    below = math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    above = math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Estimate(d, d - below, d + above, min(a.n, b.n))


def _mean_and_error(counts: ArmCounts) -> tuple[float, float] | None:
    """The mean rating and its standard error (None with fewer than two ratings: no spread to read)."""
    n = counts.rated
    if n < 2:
        return None
    mean = counts.rating_sum / n
    variance = max(0.0, (counts.rating_squares - n * mean * mean) / (n - 1))
    return mean, math.sqrt(variance / n)


def mean(counts: ArmCounts) -> Estimate:
    """The mean rating with a normal interval."""
    found = _mean_and_error(counts)
    if found is None:
        return NONE if counts.rated == 0 else Estimate(counts.rating_sum / counts.rated, None, None, counts.rated)
    value, error = found
    return Estimate(value, value - Z95 * error, value + Z95 * error, counts.rated)


def mean_difference(a: ArmCounts, b: ArmCounts) -> Estimate:
    """Mean rating of a less b's, with Welch's normal interval."""
    first, second = _mean_and_error(a), _mean_and_error(b)
    if first is None or second is None:
        return NONE
    d, error = first[0] - second[0], math.hypot(first[1], second[1])
    return Estimate(d, d - Z95 * error, d + Z95 * error, min(a.rated, b.rated))


def compare(counts: dict[str, ArmCounts]) -> dict[str, object]:
    """Each arm's routes, thumbs-up rate and mean rating, and the router's lead over the control (plain data, as
    the Overview and its JSON show them)."""
    arms = {name: counts.get(name, ArmCounts()) for name in ARMS}
    rates = {name: rate(c.up, c.up + c.down) for name, c in arms.items()}
    return {
        "arms": {
            name: {"routes": c.routes, "thumbs_up": vars(rates[name]), "rating": vars(mean(c))}
            for name, c in arms.items()
        },
        "lead": {
            "thumbs_up": vars(rate_difference(rates["router"], rates["control"])),
            "rating": vars(mean_difference(arms["router"], arms["control"])),
        },
    }
