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
