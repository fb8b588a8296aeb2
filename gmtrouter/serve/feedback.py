"""Feedback on a route (rating, thumbs, pairwise) becomes a canonical interaction record (docs/data.md).

The record is the routed turn: the user, the query, and the rated responses, in its own conversation
`route/<route_id>` so that every routed turn stays a valid record of its own (two routes of one turn, a retry or
a regenerated answer, never share a (conversation, turn)). Where the route knew which LLM answered the
conversation's previous turn, the record names it (`previous_llm`): that is what the user's history learns their
stickiness from; the caller's conversation id, if any, is kept in `meta`. Ratings are on the scale of the
router's training data; thumbs are its top and bottom, a pairwise vote 1 and 0 of it (a tie, the middle).
"""

from __future__ import annotations

from typing import Any

from gmtrouter.data.schema import Interaction, Response
from gmtrouter.serve.schemas import PairwiseFeedback, RatingFeedback, ThumbsFeedback
from gmtrouter.serve.store import RouteRow
from gmtrouter.utils.errors import GmtError

SOURCE = "gmtrouter-serve"


def rating_scale(model: Any) -> tuple[float, float]:
    """The (lowest, highest) rating of the router's training data; (0, 1) when the router does not say."""
    low, high = getattr(model, "rating_range_", (0.0, 1.0))
    return (float(low), float(high)) if high > low else (0.0, 1.0)


def route_record(
    feedback: RatingFeedback | ThumbsFeedback | PairwiseFeedback, route: RouteRow, scale: tuple[float, float]
) -> Interaction:
    """The canonical record that feedback on `route` stands for; a `GmtError` names what to fix."""
    low, high = scale
    if isinstance(feedback, PairwiseFeedback):
        if feedback.a == feedback.b:
            raise GmtError(f"pairwise feedback compares two different LLMs; got '{feedback.a}' twice")
        outside = [m for m in (feedback.a, feedback.b) if m not in route.candidates]
        if outside:
            raise GmtError(
                f"LLM(s) {', '.join(outside)} were not candidates of route '{route.id}' "
                f"(its candidates: {', '.join(route.candidates)})"
            )
        ratings = {"a": (high, low), "b": (low, high), "tie": ((low + high) / 2, (low + high) / 2)}[feedback.winner]
        responses = [
            Response(llm=feedback.a, rating=ratings[0], text=route.answer if feedback.a == route.choice else None),
            Response(llm=feedback.b, rating=ratings[1], text=route.answer if feedback.b == route.choice else None),
        ]
    else:
        llm = feedback.llm or route.choice
        if llm not in route.candidates:
            raise GmtError(f"LLM '{llm}' was not a candidate of route '{route.id}' ({', '.join(route.candidates)})")
        if isinstance(feedback, ThumbsFeedback):
            rating = high if feedback.thumbs == "up" else low
        else:
            rating = feedback.rating
            if not low <= rating <= high:
                raise GmtError(f"rating {rating:g} is outside this router's scale [{low:g}, {high:g}]; rescale it")
        text = feedback.text or (route.answer if llm == route.choice else None)
        responses = [Response(llm=llm, rating=rating, text=text)]
    meta = {"source": SOURCE, "route_id": route.id, "feedback": feedback.kind}
    if route.conversation is not None:
        meta["conversation"] = route.conversation
    return Interaction(
        user=route.user,
        conversation=f"route/{route.id}",
        turn=route.turn,
        query=route.query,
        responses=responses,
        timestamp=route.created,
        previous_llm=route.previous_llm,
        meta=meta,
    )
