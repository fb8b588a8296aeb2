"""The canonical interaction record (docs/architecture.md contract) and its JSONL reader and writer.

One record is one user turn in which one or more LLM responses were shown and rated. Records keep the
source's response order: the AUC metric pairs responses in record order, so sorting them would leak labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import DataError, GmtError
from gmtrouter.utils.heap import collector_paused, long_lived

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]


class Response(BaseModel):
    """One LLM's answer in a turn, with the user's rating (higher is preferred, the source's scale)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    llm: NonEmpty
    rating: FiniteFloat
    text: str | None = None
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    tokens: Annotated[int, Field(ge=0)] | None = None


class Interaction(BaseModel):
    """One user turn: a query, the responses shown for it, and their ratings."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    user: NonEmpty
    conversation: NonEmpty
    turn: Annotated[int, Field(ge=1)]
    query: NonEmpty
    responses: Annotated[list[Response], Field(min_length=1)]
    timestamp: FiniteFloat | None = None
    previous_llm: NonEmpty | None = None  # the LLM that answered the previous turn, when the source knows it
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("responses")
    @classmethod
    def _distinct_llms(cls, responses: list[Response]) -> list[Response]:
        llms = [response.llm for response in responses]
        if len(set(llms)) < len(llms):  # the common case, a record of distinct LLMs, costs one set
            twice = next(llm for i, llm in enumerate(llms) if llm in llms[:i])
            raise ValueError(f"LLM '{twice}' answers twice in one record; keep one response per LLM")
        return responses

    @model_validator(mode="after")
    def _query_not_blank(self) -> Interaction:
        if not self.query.strip():
            raise ValueError("query is blank")
        return self

    @property
    def llms(self) -> list[str]:
        return [r.llm for r in self.responses]

    @property
    def ratings(self) -> list[float]:
        return [r.rating for r in self.responses]


ModelT = TypeVar("ModelT", bound=BaseModel)


def _first_error(error: ValidationError) -> tuple[str, str]:
    """The field path and message of a pydantic error, in the words of the record contract."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
        message = "is not a field of this format; remove it or move it into 'meta'"
    elif first["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return field or "", message


def data_error(path: str | os.PathLike[str], number: int, error: ValidationError) -> DataError:
    """The first problem of line (or row) `number`, in the words of the record contract."""
    field, message = _first_error(error)
    return DataError(str(path), number, field or None, message)


def iter_jsonl(path: str | os.PathLike[str], model: type[ModelT]) -> Iterator[tuple[int, ModelT | DataError]]:
    """Yield (line number, parsed model or the error that line has), skipping blank lines."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, model.model_validate_json(line)
            except ValidationError as error:
                if error.errors()[0]["type"] == "json_invalid":
                    yield number, DataError(str(path), number, None, "is not valid JSON")
                    continue
                yield number, data_error(path, number, error)


def iter_items(path: str | os.PathLike[str], model: type[ModelT]) -> Iterator[tuple[int, ModelT | DataError]]:
    """(line or row number, parsed model or its error) from a JSONL file or, for records, a Parquet file."""
    if model is Interaction and is_parquet(path):
        return _iter_parquet_records(path)  # type: ignore[return-value]
    return iter_jsonl(path, model)


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).endswith(".parquet")


def _iter_parquet_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, Interaction | DataError]]:
    from gmtrouter.data.columnar import iter_parquet  # pyarrow is imported only for Parquet files

    for number, row in iter_parquet(path):
        if isinstance(row, DataError):
            yield number, row
            continue
        try:
            yield number, Interaction.model_validate(row)
        except ValidationError as error:
            yield number, data_error(path, number, error)


def check_readable(path: str | os.PathLike[str]) -> Path:
    """A clear error for a path that is missing, a directory or empty."""
    file = Path(path)
    if not file.exists():
        raise GmtError(f"{file}: no such file; check the path")
    if file.is_dir():
        raise GmtError(f"{file}: is a directory; give a JSONL (or, for records, Parquet) file")
    if file.stat().st_size == 0:
        raise GmtError(f"{file}: the file is empty; give a file with one JSON record per line")
    return file


def read_items(path: str | os.PathLike[str], model: type[ModelT]) -> list[ModelT]:
    """Read a whole file of `model` (`iter_items`), or refuse it at the first bad line (nothing is half-read)."""
    check_readable(path)
    items: list[ModelT] = []
    with long_lived():
        for _, item in iter_items(path, model):
            if isinstance(item, DataError):
                raise item
            items.append(item)
    if not items:
        raise GmtError(f"{path}: holds no records (only blank lines)")
    return items


def validate_items(path: str | os.PathLike[str], model: type[ModelT]) -> tuple[int, list[DataError]]:
    """Every problem in a file: the number of good lines and the errors of the bad ones."""
    check_readable(path)
    good, errors = 0, []
    for _, item in iter_items(path, model):
        if isinstance(item, DataError):
            errors.append(item)
        else:
            good += 1
    return good, errors


def conversation_errors(path: str | os.PathLike[str], records: Sequence[Interaction]) -> list[DataError]:
    """Multi-turn rules: a conversation belongs to one user and names each turn once."""
    owner: dict[str, str] = {}
    turns: dict[tuple[str, int], int] = {}
    errors: list[DataError] = []
    for index, record in enumerate(records):
        first_user = owner.setdefault(record.conversation, record.user)
        if first_user != record.user:
            errors.append(
                DataError(
                    str(path),
                    None,
                    "conversation",
                    f"conversation '{record.conversation}' (record {index + 1}) belongs to users "
                    f"'{first_user}' and '{record.user}'; give each user's conversations their own ids",
                )
            )
        key = (record.conversation, record.turn)
        if key in turns:
            errors.append(
                DataError(
                    str(path),
                    None,
                    "turn",
                    f"conversation '{record.conversation}' has turn {record.turn} twice "
                    f"(records {turns[key] + 1} and {index + 1}); number each turn once",
                )
            )
        turns.setdefault(key, index)
    return errors


def read_records(path: str | os.PathLike[str]) -> list[Interaction]:
    """Read canonical interaction records in file order, refusing the file at its first broken rule."""
    records = read_items(path, Interaction)
    with collector_paused():  # its million-entry dicts would otherwise set off collections
        problems = conversation_errors(path, records)
    if problems:
        raise problems[0]
    return records


def write_jsonl(path: str | os.PathLike[str], items: Iterable[BaseModel]) -> int:
    """Write models as JSONL atomically: a failure midway leaves no partial file behind."""
    count = 0
    with atomic_write(path) as handle:
        for item in items:
            handle.write(item.model_dump_json(exclude_none=True))
            handle.write("\n")
            count += 1
    return count


def write_records(path: str | os.PathLike[str], records: Iterable[Interaction]) -> int:
    """Write canonical records (atomically; Parquet where the path ends in .parquet, else JSONL) and return how
    many were written."""
    if is_parquet(path):
        from gmtrouter.data.columnar import write_parquet

        return write_parquet(path, (record.model_dump() for record in records))
    return write_jsonl(path, records)
