"""Small helpers every loader shares: locating files and reading upstream JSON lines with clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gmtrouter.errors import DataError, GmtError


def find_file(folder: Path, *patterns: str) -> Path:
    """The first file in `folder` (or the folder itself if it is a file) matching one of `patterns`."""
    if folder.is_file():
        return folder
    for pattern in patterns:
        matches = sorted(folder.glob(pattern))
        if matches:
            return matches[0]
    raise GmtError(f"{folder}: no file matching {' or '.join(patterns)}; point --data-dir at the dataset's folder")


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of an upstream JSONL file."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(str(path), number, None, "is not valid JSON") from None
            if not isinstance(item, dict):
                raise DataError(str(path), number, None, "is not a JSON object")
            yield number, item


def require(item: dict[str, Any], field: str, path: Path, line: int | None) -> Any:
    """item[field], or a DataError naming the file, line and missing field."""
    if field not in item:
        raise DataError(str(path), line, field, "is required but missing")
    return item[field]
