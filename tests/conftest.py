"""Shared fixtures: the real data folder beside the checkout, and small records built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gmtrouter.data.schema import Interaction, Response

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GMTROUTER_DATA_DIR", REPO.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


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
