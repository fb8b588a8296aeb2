"""Helpers every loader shares: locating files, reading upstream JSON lines and CSV with clear errors."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gmtrouter.data.schema import first_error
from gmtrouter.utils.errors import DataError, GmtError


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


ModelT = TypeVar("ModelT", bound=BaseModel)


def build(model: type[ModelT], path: Path, line: int | None, prefix: str = "", **fields: Any) -> ModelT:
    """model(**fields), or a DataError naming the file, line and field the converted item breaks."""
    try:
        return model(**fields)
    except ValidationError as error:
        field, message = first_error(error)
        raise DataError(str(path), line, f"{prefix}{field}" or None, message) from None


def dataset_root(path: Path) -> Path:
    """The folder a dataset's files (and a `prices/` folder beside them) are looked for in."""
    return path if path.is_dir() else path.parent


def normalise_text(text: str) -> str:
    """Text with runs of whitespace made one space, so joins survive re-wrapped or re-spaced copies."""
    return " ".join(text.split())


def parse_bool(value: str, path: Path, line: int, field: str) -> bool:
    """An upstream CSV's `True`/`False` cell (any case), or a DataError naming it."""
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise DataError(str(path), line, field, f"'{value}' is not True or False")
    return lowered == "true"


def read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line where the row starts, row)]) of a CSV whose header must name `required`."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [column for column in required if column not in header]
        if missing:
            wanted = ", ".join(required)
            message = f"no such column in the header; give the upstream file (columns {wanted})"
            raise DataError(str(path), 1, missing[0], message)
        rows, start = [], reader.line_num + 1
        for row in reader:
            if None in row or None in row.values():
                raise DataError(
                    str(path), start, None, f"has a different number of cells than the header's {len(header)}"
                )
            rows.append((start, row))
            start = reader.line_num + 1
    return header, rows
