"""The web console at /ui: what the router decides, for whom, at what cost, and why (docs/service.md, Console).

Server-rendered pages (Jinja2) with charts drawn as SVG on the server, one stylesheet and one small script of
our own under /ui/static: nothing is built at install and nothing is fetched at run time.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gmtrouter.serve.feedback import rating_scale
from gmtrouter.serve.service import Service
from gmtrouter.serve.ui.pages import Caches, router

STATIC = Path(__file__).resolve().parent / "static"
REFRESH_S = 5.0
log = logging.getLogger("gmtrouter.serve")


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files to the service's app.

    A background thread keeps the running totals of the Overview and the Users list current (every
    `REFRESH_S`), so that no page load parses a burst of stored rows itself; it ends with the service.
    """
    caches = app.state.console = Caches()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    service = getattr(app.state, "service", None)
    if service is not None:
        args = (weakref.ref(caches), weakref.ref(service))
        threading.Thread(target=_keep_counting, args=args, name="gmtrouter-console", daemon=True).start()


def _keep_counting(caches_ref: weakref.ref[Caches], service_ref: weakref.ref[Service]) -> None:
    """Refresh the totals until the app and its service are gone (weak references: this keeps neither alive)."""
    while True:
        caches, service = caches_ref(), service_ref()
        if caches is None or service is None:
            return
        try:
            caches.tally.refresh(service.store, rating_scale(service.engine.router.model))
        except Exception:  # a page load refreshes too, and shows the error there
            log.debug("refreshing the console's totals failed", exc_info=True)
        del caches, service
        time.sleep(REFRESH_S)


__all__ = ["mount"]
