"""Route rows written behind the answer: a thread commits them in batches, and reads see rows not yet written.

Storing a route used to be a transaction (and, with `synchronous = FULL`, a disk flush) before each batch was
answered: the largest share of a cached route's server time. The route is answered at once instead; the writer
thread commits whatever rows have queued meanwhile in one transaction, so under load one commit carries many
routes. Until its row is committed a route is read from memory (`get`, `last_choice`), so feedback on it and the
next turn of its conversation find it as before. What a crash can lose is the routes of the last moment (one
commit's worth); feedback on those is then refused with a 404, as for any unknown route.

While the database is failing (a commit failed, or a request met the database away) routes are written before
they are answered again, so a route the database cannot take is a 503 like any other write; the first commit
that succeeds goes back to writing behind. `MAX_PENDING` bounds the rows held in memory the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from gmtrouter.serve.store import RouteRow, Store

log = logging.getLogger("gmtrouter.serve")
RETRY_SECONDS = 0.5  # a failed commit is tried again after this long, the rows kept in memory meanwhile
MAX_PENDING = 50_000  # rows not yet committed at most; past it a route waits for its own commit


class RouteLog:
    """The route rows of one service: queued by `add`, committed by a background thread, readable throughout."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[str, RouteRow] = {}  # queued or being committed, by route id
        self._queue: list[RouteRow] = []
        self._queued = 0  # rows added so far
        self._written = 0  # rows committed so far
        self._closing = False
        self._failing = False  # the database refused a write lately: write before answering
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="gmtrouter-routes", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[RouteRow]) -> None:
        """Queue rows for the next commit; they are readable at once. While the database is failing, or too many
        rows wait, commit them here instead (raising what the database raises)."""
        if not rows:
            return
        if self._failing or len(self._pending) >= MAX_PENDING:
            self.store.add_routes(list(rows))
            self._failing = False
            return
        with self._ready:
            for row in rows:
                self._pending[row.id] = row
            self._queue.extend(rows)
            self._queued += len(rows)
            self._ready.notify_all()

    def mark_failing(self) -> None:
        """The database failed a request: write the next routes before answering them, until a commit succeeds."""
        self._failing = True

    def unwritten(self) -> int:
        """Rows added but not yet committed."""
        return self._queued - self._written

    def pending(self, route_id: str) -> RouteRow | None:
        """The row of a route not yet committed (a dict lookup: no thread hop, no database)."""
        return self._pending.get(route_id)

    def get(self, route_id: str) -> RouteRow | None:
        """A route's row, committed or not (blocking: may read the database)."""
        return self.pending(route_id) or self.store.get_route(route_id)

    def last_choice(self, user: str, conversation: str) -> str | None:
        """The LLM of the newest route of this user's conversation, those not yet committed included."""
        with self._ready:
            mine = [r for r in self._pending.values() if r.user == user and r.conversation == conversation]
        if mine:
            return max(mine, key=lambda r: r.created).choice
        return self.store.last_choice(user, conversation)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every row added so far is committed (before a forget deletes rows, or a row is updated);
        False if that took over `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._ready:
            target = self._queued
            while self._written < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        return True

    def set_answer(self, route_id: str, answer: str) -> None:
        """Keep the upstream's answer with its route (committed first, so that the update finds the row)."""
        self.flush()
        self.store.set_answer(route_id, answer)

    def delete(self, route_id: str) -> None:
        """Remove a route that came to nothing (committed first, so that the delete finds the row)."""
        self.flush()
        self.store.delete_route(route_id)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self.flush()
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            failures = 0
            while True:
                try:
                    self.store.add_routes(batch)
                    self._failing = False
                    break
                except Exception as error:  # the database is away: keep the rows (still readable) and try again
                    self._failing = True
                    if failures % 60 == 0:  # once, then every half minute
                        log.warning(
                            "storing %d routes failed (%s); retrying every %.1f s", len(batch), error, RETRY_SECONDS
                        )
                    failures += 1
                    time.sleep(RETRY_SECONDS)
            with self._ready:
                for row in batch:
                    self._pending.pop(row.id, None)
                self._written += len(batch)
                self._ready.notify_all()
