"""Prometheus metrics, in a registry of the app's own so that several apps in one process never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from gmtrouter.serve.schemas import RatingFeedback, ThumbsFeedback

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Request counts and latency per endpoint, choices per LLM, feedback, batching and folding."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gmtrouter_requests", "HTTP requests by endpoint and status", ["method", "endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "gmtrouter_request_seconds",
            "HTTP request latency by endpoint",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.choices = Counter("gmtrouter_route_choices", "Routing decisions by chosen LLM", ["llm"], registry=r)
        self.feedback = Counter("gmtrouter_feedback", "Feedback stored, by kind", ["kind"], registry=r)
        self.batch_size = Histogram(
            "gmtrouter_route_batch_size",
            "Route requests scored together",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.encoded = Counter("gmtrouter_queries_encoded", "Queries embedded (LRU misses)", registry=r)
        self.fold_seconds = Histogram(
            "gmtrouter_fold_seconds",
            "Time to rebuild the history graph after feedback",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.arm_routes = Counter("gmtrouter_arm_routes", "Routes by the arm that chose them", ["arm"], registry=r)
        self.arm_thumbs = Counter(
            "gmtrouter_arm_thumbs", "Thumbs on routed answers, by arm", ["arm", "thumbs"], registry=r
        )
        self.arm_rating = Summary("gmtrouter_arm_rating", "Ratings of routed answers, by arm", ["arm"], registry=r)
        self.history = Gauge("gmtrouter_history_records", "Interactions in the live history", registry=r)
        self.pending = Gauge("gmtrouter_pending_changes", "Acknowledged changes not yet live", registry=r)
        self.unreadable = Gauge(
            "gmtrouter_feedback_unreadable",
            "Stored feedback rows left out of the history: unreadable, or folding failed (the log names them)",
            registry=r,
        )

    def batch(self, size: int, encoded: int) -> None:
        self.batch_size.observe(size)
        self.encoded.inc(encoded)

    def routed(self, llm: str, arm: str) -> None:
        self.choices.labels(llm).inc()
        self.arm_routes.labels(arm).inc()

    def arm_feedback(self, arm: str, feedback: object) -> None:
        """Count a thumb or a rating of a routed answer under the arm that chose it."""
        if isinstance(feedback, ThumbsFeedback):
            self.arm_thumbs.labels(arm, feedback.thumbs).inc()
        elif isinstance(feedback, RatingFeedback):
            self.arm_rating.labels(arm).observe(feedback.rating)

    def fold(self, seconds: float, _changes: int) -> None:
        self.fold_seconds.observe(seconds)
