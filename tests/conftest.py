"""Shared fixtures: the real data folder beside the checkout, and small records built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gmtrouter.data.schema import Interaction, Response
from gmtrouter.text.base import default_cache_dir

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GMTROUTER_DATA_DIR", REPO.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MACHINE_CACHE = default_cache_dir()  # read before any test points GMTROUTER_CACHE_DIR at its own folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real, read-only data folder (../shared/data beside the repository)."""
    if not (DATA_DIR / "mt_bench").is_dir():
        pytest.fail(f"real data not found at {DATA_DIR}; set GMTROUTER_DATA_DIR to the shared data folder")
    return DATA_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding caches go to a per-session temp folder, never the user's home."""
    monkeypatch.setenv("GMTROUTER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def static_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static encoder's distilled table, visible in the tests' cache folder.

    Distilling takes minutes, so the table is the machine's own (`make install` builds it; if it is missing the
    first test that needs it distils it there once), linked into the session's cache folder rather than
    distilled again."""
    from gmtrouter.text.static import ensure_table, table_dir

    table = ensure_table(MACHINE_CACHE)
    linked = table_dir(tmp_path_factory.getbasetemp() / "cache")
    if not linked.exists():
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(table, target_is_directory=True)
    return linked


def make_record(
    user: str,
    query: str,
    ratings: dict[str, float],
    turn: int = 1,
    conversation: str | None = None,
    **meta: object,
) -> Interaction:
    """A record with one response per LLM in `ratings`, in the dict's order."""
    return Interaction(
        user=user,
        conversation=conversation or f"{user}/{query}",
        turn=turn,
        query=query,
        responses=[Response(llm=llm, rating=rating, text=f"{llm} answers {query}") for llm, rating in ratings.items()],
        meta=dict(meta),
    )
