"""The LLMs an operator added or retired while the service ran, kept in the database (the `llms` table).

A row exists for every LLM added at run time (`added` set) and for every LLM retired at run time, whatever it
came from (the model, the config's `llms`, or an earlier add). Every replica reads the whole table at start and
again at each sync, so that an LLM added on one replica is a candidate on all of them within `sync_seconds`. The
table is small (one row an LLM), so a sync reads it whole rather than keeping track of changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gmtrouter.data.prices import LLMInfo
from gmtrouter.serve.config import MAX_LLM_NAME, LLMSpec, Upstream
from gmtrouter.serve.store import Store, meta

# tokens of the turn an LLM's list prices are priced at, when the history holds no cost of it: about an MT-Bench
# turn (75 input and 220 output tokens on average, estimated at 4 characters a token)
PRICED_TURN = (100, 250)

llms = sa.Table(
    "llms",
    meta,
    sa.Column("name", sa.String(MAX_LLM_NAME), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("input_price", sa.Float),
    sa.Column("output_price", sa.Float),
    sa.Column("upstream", sa.Text),
    sa.Column("added", sa.Float),
    sa.Column("retired", sa.Float),
)


@dataclass(frozen=True)
class CatalogEntry:
    """One row: an LLM added at run time (`added`), retired at run time (`retired`), or both."""

    name: str
    spec: LLMSpec
    added: float | None
    retired: float | None


class LLMExists(Exception):
    """The name is taken by an LLM that is already routed among."""


class Catalog:
    """Reads and writes of the `llms` table; each method is one transaction."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self._write = store.engine.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE (store._sqlite_setup)

    def entries(self) -> dict[str, CatalogEntry]:
        """Every row, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(llms).order_by(llms.c.name)).mappings().all()
        return {row["name"]: _entry(row) for row in rows}

    def add(self, name: str, spec: LLMSpec) -> CatalogEntry:
        """Store a new LLM (`LLMExists` if a row of that name was added before and is not retired); a retired
        one comes back, with the new description, prices and upstream where given."""
        now = time.time()
        values = {
            "description": spec.description,
            "input_price": spec.input_price,
            "output_price": spec.output_price,
            "upstream": spec.upstream.model_dump_json(exclude_none=True) if spec.upstream is not None else None,
        }
        with self._write.begin() as conn:
            row = conn.execute(sa.select(llms).where(llms.c.name == name)).mappings().first()
            if row is None:
                try:
                    conn.execute(llms.insert().values(name=name, added=now, retired=None, **values))
                except IntegrityError:  # another replica added it in between
                    raise LLMExists(name) from None
            elif row["added"] is not None and row["retired"] is None:
                raise LLMExists(name)
            else:
                kept = {k: v for k, v in values.items() if v not in (None, "")}
                conn.execute(
                    llms.update().where(llms.c.name == name).values(added=row["added"] or now, retired=None, **kept)
                )
            stored = conn.execute(sa.select(llms).where(llms.c.name == name)).mappings().one()
        return _entry(stored)

    def retire(self, name: str) -> CatalogEntry:
        """Mark an LLM retired (a row is made for one that came from the model or the config)."""
        now = time.time()
        with self._write.begin() as conn:
            updated = conn.execute(
                llms.update().where(llms.c.name == name, llms.c.retired.is_(None)).values(retired=now)
            ).rowcount
            if not updated and conn.execute(sa.select(llms.c.name).where(llms.c.name == name)).first() is None:
                conn.execute(llms.insert().values(name=name, description="", added=None, retired=now))
            stored = conn.execute(sa.select(llms).where(llms.c.name == name)).mappings().one()
        return _entry(stored)


def list_price_costs(specs: dict[str, LLMSpec]) -> dict[str, float]:
    """USD of a typical turn (`PRICED_TURN`) of each LLM whose input and output prices are both known."""
    costs = {}
    for name, spec in specs.items():
        cost = LLMInfo(name, spec.input_price, spec.output_price).cost(*PRICED_TURN)
        if cost is not None:
            costs[name] = cost
    return costs


def _entry(row: sa.RowMapping) -> CatalogEntry:
    upstream = Upstream.model_validate(json.loads(row["upstream"])) if row["upstream"] else None
    spec = LLMSpec(
        description=row["description"] or "",
        input_price=row["input_price"],
        output_price=row["output_price"],
        upstream=upstream,
    )
    return CatalogEntry(row["name"], spec, row["added"], row["retired"])
