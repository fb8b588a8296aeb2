"""The web console at /ui: what the router decides, for whom, at what cost, and why (docs/service.md, Console).

Server-rendered pages (Jinja2) with charts drawn as SVG on the server, one stylesheet and one small script of
our own under /ui/static: nothing is built at install and nothing is fetched at run time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gmtrouter.serve.feedback import rating_scale
from gmtrouter.serve.store import Store
from gmtrouter.serve.ui.pages import Caches, router

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files to the service's app.

    The Overview's running totals are first built in the background, so that the first page load after a start
    does not parse every stored row itself.
    """
    caches = app.state.console = Caches()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    service = getattr(app.state, "service", None)
    if service is not None:
        scale = rating_scale(service.engine.router.model)
        threading.Thread(
            target=_warm, args=(caches, service.store, scale), name="gmtrouter-console", daemon=True
        ).start()


def _warm(caches: Caches, store: Store, scale: tuple[float, float]) -> None:
    try:
        caches.tally.refresh(store, scale)
    except Exception:  # the first page load will build the totals itself and show any error there
        logging.getLogger("gmtrouter.serve").exception("building the console's totals failed")


__all__ = ["mount"]
