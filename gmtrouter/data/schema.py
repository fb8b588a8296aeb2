"""The canonical interaction record (docs/architecture.md contract) and its JSONL reader and writer.

One record is one user turn in which one or more LLM responses were shown and rated. Records keep the
source's response order: the AUC metric pairs responses in record order, so sorting them would leak labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, ErrorDetails
from typing_extensions import TypeAliasType

from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import DataError, GmtError
from gmtrouter.utils.heap import collector_paused, long_lived

# Bounds of the record contract (docs/architecture.md). Whatever passes them can be flattened into the graph's
# int64 and float32 arrays, stored in the service's database (PostgreSQL text holds no NUL; an id fits its
# column) and read back unchanged: JSON has no NaN, so a non-finite number would come back as null.
MAX_ID = 256  # characters of a user, conversation or LLM id
MAX_TEXT = 1_000_000  # characters of a query or an answer (the service's max_query_chars bounds queries further)
MAX_TURN = 2**31 - 1  # a turn number fits a 32-bit integer column
MAX_RESPONSES = 256  # responses of one record: a record's pairs grow with the square of this
MAX_RATING = 1e6  # |rating|, on any source's scale
MAX_COST = 1e6  # USD per answer
MAX_TOKENS = 10**9
MAX_TIMESTAMP = 253_402_300_799.0  # 9999-12-31 in seconds since 1970: a time in milliseconds is refused
MAX_META_ITEMS = 1024  # keys of a meta object, items of a meta list
NO_NUL = "^[^\x00]*$"  # a pattern: no NUL, and (checked by pydantic on the way) no lone surrogate

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NO_NUL)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]
Rating = Annotated[float, Field(ge=-MAX_RATING, le=MAX_RATING, allow_inf_nan=False)]
Turn = Annotated[int, Field(ge=1, le=MAX_TURN)]


class _OneMessage:
    """Give a union one error message of ours instead of one per member (which names pydantic's types)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        union = schema["schema"] if schema["type"] == "nullable" else schema
        union["custom_error_type"], union["custom_error_message"] = "json_value", self.message
        return schema


JSON_MESSAGE = "must be plain JSON: text without NUL, finite numbers, true/false, null, lists and objects"
_MetaText = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)]
_MetaKey = Annotated[str, Field(max_length=MAX_ID, pattern=NO_NUL)]
# Free-form JSON that survives a round trip unchanged, validated in pydantic's core (no Python per value); a value
# takes the first member that fits, the commonest first, which costs a third less than trying every member.
Json = TypeAliasType(
    "Json",
    "Annotated[_MetaText | StrictInt | FiniteFloat | StrictBool"
    " | Annotated[list[Json], Field(max_length=MAX_META_ITEMS)]"
    " | Annotated[dict[_MetaKey, Json], Field(max_length=MAX_META_ITEMS)] | None,"
    " Field(union_mode='left_to_right'), _OneMessage(JSON_MESSAGE)]",
)
Meta = Annotated[dict[_MetaKey, Json], Field(max_length=MAX_META_ITEMS)]


class Response(BaseModel):
    """One LLM's answer in a turn, with the user's rating (higher is preferred, the source's scale)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    llm: Id
    rating: Rating
    text: Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)] | None = None
    cost: Annotated[float, Field(ge=0, le=MAX_COST, allow_inf_nan=False)] | None = None
    tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] | None = None


class Interaction(BaseModel):
    """One user turn: a query, the responses shown for it, and their ratings."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    user: Id
    conversation: Id
    turn: Turn
    query: Text
    responses: Annotated[list[Response], Field(min_length=1, max_length=MAX_RESPONSES)]
    timestamp: Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)] | None = None
    previous_llm: Id | None = None  # the LLM that answered the previous turn, when the source knows it
    meta: Meta = Field(default_factory=dict)

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


def error_message(detail: ErrorDetails) -> str:
    """One pydantic error in the words of the record contract (also the service's, for its request bodies)."""
    kind, message = detail["type"], detail["msg"]
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a field of this format; remove it or move it into 'meta'"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and detail.get("ctx", {}).get("pattern") == NO_NUL:
        return "holds a NUL character (\\u0000), which text cannot store; remove it"
    if kind == "string_unicode":
        return "holds a lone surrogate (\\ud800-\\udfff); give valid UTF-8 text"
    return message


def first_error(error: ValidationError) -> tuple[str, str]:
    """The field path and message of a pydantic error's first problem, in the words of the record contract."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    return field, error_message(first)


def data_error(path: str | os.PathLike[str], number: int, error: ValidationError) -> DataError:
    """The first problem of line (or row) `number`, in the words of the record contract."""
    field, message = first_error(error)
    return DataError(str(path), number, field or None, message)


def iter_jsonl(path: str | os.PathLike[str], model: type[ModelT]) -> Iterator[tuple[int, ModelT | DataError]]:
    """Yield (line number, parsed model or the error that line has), skipping blank lines.

    Lines are read as bytes and parsed as UTF-8 JSON by pydantic, so a binary or mis-encoded file is a bad line
    like any other, not a decoding error that stops the reader.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, model.model_validate_json(line)
            except ValidationError as error:
                if error.errors()[0]["type"] == "json_invalid":
                    yield number, DataError(str(path), number, None, _not_json(line))
                    continue
                yield number, data_error(path, number, error)


def _not_json(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text; give a JSONL file (one JSON record per line)"
    return "is not valid JSON"


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
