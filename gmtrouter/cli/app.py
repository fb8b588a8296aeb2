"""The `gmtrouter` command (its contract: docs/architecture.md): every group's commands under one app, and the
entry point that turns a user's mistake into one line on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from gmtrouter.cli.bench import bench_app
from gmtrouter.cli.data import data_app
from gmtrouter.cli.demo import demo_app
from gmtrouter.cli.serve import serve_app
from gmtrouter.cli.train import train_app
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.version import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # every command's, inherited
    help="Personalized LLM routing learned from multi-turn feedback (GMTRouter).",
)


def _version(shown: bool) -> None:
    if shown:
        sys.stdout.write(f"gmtrouter {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Personalized LLM routing learned from multi-turn feedback (GMTRouter)."""


app.add_typer(data_app, name="data")
app.add_typer(train_app)
app.add_typer(bench_app)
app.add_typer(serve_app, name="serve")
app.add_typer(demo_app)


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit status 2."""
    try:
        app(standalone_mode=False, prog_name="gmtrouter")
    except GmtError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except Exception as error:
        # Typer's usage errors (missing argument, bad option value) carry their own message.
        if hasattr(error, "format_message"):
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "gmtrouter"
            sys.stderr.write(f"error: {error.format_message().rstrip('.')}; see '{command} --help'\n")
            sys.exit(2)
        if os.environ.get("GMTROUTER_DEBUG"):
            raise
        if isinstance(error, OSError) and error.filename is not None:
            sys.stderr.write(f"error: {error.filename}: {error.strerror}; check the path\n")
            sys.exit(2)
        first = str(error).splitlines()[0] if str(error) else ""
        sys.stderr.write(
            f"error: unexpected {error.__class__.__name__}: {first} (a bug; GMTROUTER_DEBUG=1 shows the traceback)\n"
        )
        sys.exit(1)
