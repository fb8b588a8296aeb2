"""One router's accuracy in two benchmark reports, setting by setting: what a new version lost or gained.

    python -m benchmarks.compare_reports OLD.md NEW.md [--router gmtrouter] [--tolerance 0.005]

Reads the reports `gmtrouter bench` writes (docs/results.md): in every dataset's section, the first number of the
router's row in each accuracy table (known users, new users at every k, new queries, new topics). Prints a table
of old, new and new minus old, and marks a loss beyond the tolerance. The reports hold means over their seeds,
so where the two ran on different seeds the difference carries both runs' spread.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

SETTINGS = {"Known users": "known users", "New queries": "new queries", "New topics": "new topics"}


def accuracies(report: Path, router: str) -> dict[tuple[str, str], float]:
    """{(dataset, setting): accuracy} of `router` in a report; new users give one setting per k."""
    found: dict[tuple[str, str], float] = {}
    dataset = setting = None
    header: list[str] = []
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            dataset, setting = line[3:].strip(), None
        elif line.startswith("### "):
            title = line[4:].strip()
            setting = "new users" if title.startswith("New users: pairwise accuracy") else SETTINGS.get(title)
        elif setting and dataset and line.startswith("| router"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
        elif setting and dataset and line.startswith(f"| {router} |"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            numbers = [re.match(r"\**(-?\d+\.\d+)", cell) for cell in cells]
            if setting == "new users":
                for name, number in zip(header[1:], numbers[1:], strict=False):
                    if number:
                        found[(dataset, f"new users {name}")] = float(number.group(1))
            elif numbers[1]:
                found[(dataset, setting)] = float(numbers[1].group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--router", default="gmtrouter")
    parser.add_argument("--tolerance", type=float, default=0.005)
    args = parser.parse_args()
    old, new = accuracies(args.old, args.router), accuracies(args.new, args.router)
    table = Table(title=f"{args.router}: accuracy, {args.new.name} against {args.old.name}")
    for column in ("dataset", "setting", "old", "new", "new - old"):
        table.add_column(column, justify="right" if column in ("old", "new", "new - old") else "left")
    losses = 0
    for key in [k for k in new if k in old]:
        change = new[key] - old[key]
        lost = change < -args.tolerance
        losses += lost
        shown = f"[bold red]{change:+.3f}[/]" if lost else f"{change:+.3f}"
        table.add_row(*key, f"{old[key]:.3f}", f"{new[key]:.3f}", shown)
    console = Console()
    console.print(table)
    console.print(f"{losses} setting(s) lose more than {args.tolerance} accuracy")


if __name__ == "__main__":
    main()
