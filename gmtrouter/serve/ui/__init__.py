"""The web console at /ui: what the router decides, for whom, at what cost, and why (docs/service.md, Console).

Server-rendered pages (Jinja2) with charts drawn as SVG on the server, one stylesheet and one small script of
our own under /ui/static: nothing is built at install and nothing is fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gmtrouter.serve.ui.pages import router

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files to the service's app."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


__all__ = ["mount"]
