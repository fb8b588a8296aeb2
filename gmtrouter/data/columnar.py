"""Interaction records in Parquet: the columnar file a large log is kept in.

A JSONL line is parsed as a whole; a Parquet file is read in row groups of columns, streams in bounded memory
and is several times smaller. The columns are the record contract's fields; `responses` is a list of structs
and `meta` (free-form) a JSON string. Rows are numbered from 1 in errors, as JSONL lines are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import DataError, GmtError

RESPONSE = pa.struct(
    [
        ("llm", pa.string()),
        ("rating", pa.float64()),
        ("text", pa.string()),
        ("cost", pa.float64()),
        ("tokens", pa.int64()),
    ]
)
SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("conversation", pa.string()),
        ("turn", pa.int64()),
        ("query", pa.string()),
        ("responses", pa.list_(RESPONSE)),
        ("timestamp", pa.float64()),
        ("previous_llm", pa.string()),
        ("meta", pa.string()),
    ]
)
REQUIRED = ("user", "conversation", "turn", "query", "responses")
ROWS_PER_GROUP = 65_536


def _record_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as the record's fields: absent values dropped, `meta` decoded."""
    fields = {k: v for k, v in row.items() if v is not None}
    if isinstance(fields.get("responses"), list):
        fields["responses"] = [
            {k: v for k, v in r.items() if v is not None} if isinstance(r, dict) else r for r in fields["responses"]
        ]
    if "meta" in fields:
        fields["meta"] = json.loads(fields["meta"])
    return fields


def _open(path: str | os.PathLike[str]) -> pq.ParquetFile:
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise GmtError(f"{path}: is not a readable Parquet file ({str(error).splitlines()[0]})") from None
    names = file.schema_arrow.names
    missing = [name for name in REQUIRED if name not in names]
    extra = [name for name in names if name not in SCHEMA.names]
    if missing or extra:
        problem = f"has no column(s) {', '.join(missing)}" if missing else f"has column(s) {', '.join(extra)}"
        raise GmtError(
            f"{path}: {problem}; a records file has the columns {', '.join(SCHEMA.names)} "
            "(anything else goes into 'meta', see docs/data.md)"
        )
    return file


def iter_parquet(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Yield (row number, the row's record fields or the `DataError` of that row), one batch of rows at a time."""
    file = _open(path)
    number = 0
    for batch in file.iter_batches(batch_size=8192):
        for row in batch.to_pylist():
            number += 1
            try:
                yield number, _record_fields(row)
            except json.JSONDecodeError:
                yield number, DataError(str(path), number, "meta", "is not a JSON object string")


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "meta": json.dumps(fields["meta"]) if fields.get("meta") else None}


def write_parquet(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write records (their fields, `Interaction.model_dump()`) as Parquet, atomically and a row group at a
    time; return how many were written."""
    count = 0
    records = iter(records)
    with atomic_write(path, "wb") as handle, pq.ParquetWriter(handle, SCHEMA, compression="zstd") as writer:
        while chunk := [_row(r) for r in islice(records, ROWS_PER_GROUP)]:
            writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA))
            count += len(chunk)
    return count
