"""Errors a user can fix. The CLI prints their message as one line on stderr and exits non-zero."""

from __future__ import annotations


class GmtError(Exception):
    """A problem with the user's input or set-up, explained in one line that says what to fix."""


class DataError(GmtError):
    """A data file that breaks the record contract; names the file, line and field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.path, self.line, self.field, self.reason = str(path), line, field, message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")
