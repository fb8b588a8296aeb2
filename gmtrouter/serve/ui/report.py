"""The Model page's benchmark part: the summary table and k-shot plots of a `gmtrouter bench` report.

`gmtrouter serve --report FILE` names the report's Markdown (e.g. runs/bench/quick/results.md or
docs/results.md); its figures sit beside it. Only the summary table and the k-shot figures are read, so a
report of any size loads at once; a missing or unreadable report is shown as such, never an error page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FIGURE = re.compile(r"!\[(?P<title>[^\]]*)\]\((?P<path>[^)]+-kshot\.png)\)")


@dataclass(frozen=True)
class BenchSummary:
    """What the console shows of a benchmark report."""

    path: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figures: dict[str, tuple[str, Path]] = field(default_factory=dict)  # name -> (title, file)
    problem: str | None = None


def _cells(line: str) -> list[str]:
    return [cell.strip().replace("**", "") for cell in line.strip().strip("|").split("|")]


def read_report(path: Path) -> BenchSummary:
    """The summary table and the k-shot figures of the report at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return BenchSummary(str(path), problem=f"cannot read the report: {error.__class__.__name__}")
    lines = text.splitlines()
    header: list[str] = []
    rows: list[list[str]] = []
    start = next((i for i, line in enumerate(lines) if line.startswith("## Summary")), None)
    if start is not None:
        table = []
        for line in lines[start + 1 :]:
            if line.startswith("## "):
                break
            if line.startswith("|"):
                table.append(line)
        if len(table) >= 2:
            header, rows = _cells(table[0]), [_cells(line) for line in table[2:]]
    figures = {}
    for match in FIGURE.finditer(text):
        file = (path.parent / match["path"]).resolve()
        if file.is_file():
            figures[file.name] = (match["title"], file)
    problem = None if rows or figures else "the report has no summary table and no k-shot figures"
    return BenchSummary(str(path), header, rows, figures, problem)
