"""`gmtrouter bench --online`: simulated users ask one query at a time, a policy routes it to one LLM, and the
user's only feedback is a thumb (or a rating) on that answer. docs/online.md describes the world and the metrics."""
