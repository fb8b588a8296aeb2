"""What every command shares: the consoles, JSON and table output, `--set` parsing."""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console
from rich.table import Table

from gmtrouter.utils.errors import GmtError

out = Console()
err = Console(stderr=True)


def json_safe(value: object) -> object:
    """NaN and infinities (an AUC with one label, an empty summary) become null: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(json_safe(payload), indent=2, allow_nan=False, default=float) + "\n")


def print_table(title: str, payload: dict[str, object]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in payload.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    out.print(table)


def parse_settings(pairs: list[str]) -> dict[str, object]:
    """`--set key=value` pairs; values are JSON where they parse as JSON (numbers, booleans), else strings."""
    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GmtError(f"--set expects key=value, got '{pair}'")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def print_explanation(llm: str, user: str, explanation: list[dict[str, object]], against: str | None = None) -> None:
    """What made `llm` win for `user` (`Router.explain`, against the runner-up `against`): one line a past
    interaction, or a line saying that none speaks for it."""
    if not explanation:
        out.print(
            f"why: no past interaction of {user} speaks for {llm}: the population's preference decided", highlight=False
        )
        return
    over = f" over {against}" if against else ""
    out.print(
        f"why: the past interactions of {user} that did most for {llm}{over}"
        " (logits by which it did better there than expected" + (", less the runner-up)" if against else ")"),
        highlight=False,
    )
    for item in explanation:
        verdict = ", ".join(f"{name}={rating:g}" for name, rating in item["ratings"].items())
        query = str(item["query"])
        out.print(f"  {item['weight']:+.2f}  {query[:70]!r}  ({verdict})", highlight=False, markup=False)


def report_stop(model: object, name: str = "") -> None:
    """Say where training ended and why (all steps, or stopped early when validation stopped improving), as the log
    of a fitted router tells it: a progress bar that stops short is otherwise a mystery."""
    stop = getattr(model, "training_log_", {}).get("stop")
    if stop:
        err.print(f"{name}: {stop}" if name else stop, highlight=False)


def print_ranking(decision) -> None:
    table = Table(title=f"route for {decision.user}: {decision.llm}", caption="sorted by adjusted")
    for column in ("LLM", "score", "expected cost (USD)", "adjusted"):
        table.add_column(column)
    for row in decision.ranking:
        cost = "?" if row.expected_cost is None else f"{row.expected_cost:.5f}"
        table.add_row(row.llm, f"{row.score:.3f}", cost, f"{row.adjusted:.3f}")
    out.print(table)
    for note in decision.notes:
        err.print(note)
