"""The `gmtrouter` command line, one module per command group."""

from gmtrouter.cli.app import app, main

__all__ = ["app", "main"]
