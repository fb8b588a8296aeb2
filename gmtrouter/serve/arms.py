"""The control arm: a share of routes made by a fixed policy instead of the router, to measure what routing is
worth on live traffic (the console's Overview compares the arms' thumbs and ratings).

Each route's arm is drawn from a seeded hash of its route id, so the draw is independent of the user, the query
and the load, the same on every replica, and can be checked afterwards from the id alone. A control route is
still ranked by the router (what it would have done is stored with the route), never explores, and its
feedback is folded into the history like any other: the control arm costs the users some quality, not the
router its data.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from gmtrouter.api import RouteDecision, Router
from gmtrouter.serve.beliefs import NEW_USER
from gmtrouter.serve.config import GLOBAL_CONTROL

ROUTER, CONTROL = "router", "control"


class ControlArm:
    """Routes `share` of the requests by `control`: 'global' (the population's best for the query, what the
    router gives a user it knows nothing of) or one LLM's name."""

    def __init__(self, share: float = 0.0, control: str = GLOBAL_CONTROL, seed: int = 0) -> None:
        self.share, self.control, self.seed = share, control, seed

    def draw(self, route_id: str) -> float:
        """The route's uniform draw in [0, 1): a hash of the seed and the route id."""
        digest = hashlib.blake2b(f"{self.seed}:{route_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def takes(self, route_id: str) -> bool:
        """Whether the control policy makes this route."""
        return self.share > 0 and self.draw(route_id) < self.share

    def decide(self, router: Router, decision: RouteDecision) -> tuple[RouteDecision, str]:
        """The control policy's decision in place of the router's `decision` (made without exploration), and
        the arm: a fixed LLM that is not among the request's candidates cannot answer it, so the router's
        decision stands and the route is the router's."""
        candidates = [r.llm for r in decision.ranking]
        if self.control == GLOBAL_CONTROL:
            best = router.route(
                NEW_USER,
                decision.query,
                candidates,
                decision.cost_weight,
                switch_cost=decision.switch_cost,
                previous_llm=decision.previous_llm,
                explore=False,
            ).llm
            why = f"control arm: {best}, the population's best for this query"
        elif self.control in candidates:
            best, why = self.control, f"control arm: always {self.control}"
        else:
            return decision, ROUTER
        return replace(decision, llm=best, explored=False, notes=[*decision.notes, why]), CONTROL
