"""`gmtrouter serve`: the HTTP service, its stand-in upstream, its API keys and its database schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gmtrouter.cli.common import err, print_json
from gmtrouter.utils.errors import GmtError

serve_app = typer.Typer(help="Run the router as an HTTP service (docs/service.md); manage its API keys.")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke the service's API keys.")
serve_app.add_typer(keys_app, name="keys")
db_app = typer.Typer(no_args_is_help=True, help="The service's database schema (Alembic migrations).")
serve_app.add_typer(db_app, name="db")


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option("--model", help="Model folder from 'gmtrouter train'.")] = None,
    llms: Annotated[
        str | None,
        typer.Option("--llms", help="LLMs to route among, NAME[,NAME...]: with no --model, a router with no logs."),
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default sqlite:///gmtrouter.db).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8000).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file: TOML, YAML or JSON.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    report: Annotated[
        Path | None, typer.Option("--report", help="A 'gmtrouter bench' report (results.md) for the console.")
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option("--prices", help="Price file {llm: {input, output, cached_input}}: prices the prompt cache."),
    ] = None,
    create_db: Annotated[
        bool,
        typer.Option(
            "--create-db", help="Begin an empty SQLite database where the one this service used before is gone."
        ),
    ] = False,
) -> None:
    """Serve routing, feedback and an OpenAI-compatible endpoint over HTTP."""
    if ctx.invoked_subcommand is not None:
        return
    from gmtrouter.serve.config import load_config

    settings = load_config(
        config,
        model=model,
        db=db,
        host=host,
        port=port,
        report=report,
        prices=prices,
        create_db=create_db or None,
    )
    if llms is not None:
        settings = with_llms(settings, llms)
    if settings.model is None and not settings.llms:
        raise GmtError(
            "give the model folder (--model DIR) or, to start with no logs, the LLMs to route among (--llms NAME,NAME)"
        )
    if settings.report is not None and not settings.report.is_file():
        raise GmtError(f"{settings.report}: no such benchmark report; give the results.md of 'gmtrouter bench'")
    import uvicorn

    from gmtrouter.serve.app import create_app

    application = create_app(settings)
    what = settings.model if settings.model is not None else f"a router with no logs over {', '.join(settings.llms)}"
    err.print(f"serving {what} on http://{settings.host}:{settings.port} (console at /ui, docs at /docs)")
    uvicorn.run(application, host=settings.host, port=settings.port, log_level=log_level, access_log=False)


def with_llms(settings: Any, names: str) -> Any:
    """The settings with the LLMs of `--llms a,b,c` added to those of the config file (whose tables they keep)."""
    from gmtrouter.serve.config import LLMSpec

    given = [name.strip() for name in names.split(",")]
    if not all(given):
        raise GmtError(f"--llms '{names}': a name is empty; give NAME[,NAME...]")
    return settings.model_copy(update={"llms": {**{name: LLMSpec() for name in given}, **settings.llms}})


def _key_store(db: str | None, config: Path | None):
    from gmtrouter.serve.auth import KeyRing
    from gmtrouter.serve.config import load_config
    from gmtrouter.serve.store import Store

    settings = load_config(config, db=db)
    return KeyRing(Store(settings.db, settings.sqlite_synchronous), None)  # managing keys needs no admin key


DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default sqlite:///gmtrouter.db).")]


ConfigOption = Annotated[Path | None, typer.Option("--config", help="Settings file: TOML, YAML or JSON.")]


@serve_app.command("replay-upstream")
def replay_upstream(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="MT-Bench's folder (question.jsonl, model_answer/).")
    ] = Path("../shared/data/mt_bench"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 9000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "warning",
) -> None:
    """A stand-in LLM upstream that replays MT-Bench's recorded answers (OpenAI-compatible; not a live LLM)."""
    import uvicorn

    from gmtrouter.serve.replay import create_replay_app

    application = create_replay_app(data_dir)
    err.print(
        f"replaying recorded MT-Bench answers (not a live LLM) on http://{host}:{port}/v1; "
        "use it as every LLM's base_url, e.g. examples/replay-upstream.toml",
        soft_wrap=True,
        highlight=False,
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)


def _db_url(db: str | None, config: Path | None) -> str:
    from gmtrouter.serve.config import load_config

    return load_config(config, db=db).db


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, config: ConfigOption = None) -> None:
    """Bring the database's schema to this version's newest revision (the service also does this at start)."""
    from gmtrouter.serve.migrations import migrate
    from gmtrouter.serve.store import make_engine, open_sqlite, opening, parsed_safe, sqlite_file

    url = _db_url(db, config)
    file = sqlite_file(url)
    if file is not None:
        open_sqlite(file)
    engine = make_engine(url)
    try:
        with opening(url):
            before, after = migrate(engine)
    finally:
        engine.dispose()
    done = "already at" if before == after else f"upgraded from {before or 'an empty database'} to"
    err.print(f"{parsed_safe(url)}: {done} revision {after}", highlight=False)


@db_app.command("current")
def db_current(db: DbOption = None, config: ConfigOption = None) -> None:
    """Print the database's schema revision, and whether it is the newest this version knows."""
    from gmtrouter.serve.migrations import HEAD, current_version
    from gmtrouter.serve.store import make_engine, opening, sqlite_file

    url = _db_url(db, config)
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise GmtError(f"{file}: no such database file; check --db")
    engine = make_engine(url, create=False)
    try:
        with opening(url), engine.connect() as conn:
            revision = current_version(conn)
    finally:
        engine.dispose()
    sys.stdout.write(f"{revision or 'none'}\n")
    err.print("newest" if revision == HEAD else f"behind: the newest is {HEAD}; run 'gmtrouter serve db upgrade'")


@keys_app.command("create")
def keys_create(
    user: Annotated[
        list[str] | None, typer.Option("--user", help="User id, or PREFIX* for a tenant (repeatable).")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key (reload, forget anyone, keys, retrain).")
    ] = False,
    name: Annotated[str, typer.Option("--name", help="A label to recognise the key by.")] = "",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once on stdout (only a salted digest is stored)."""
    from gmtrouter.serve.auth import check_scope

    check_scope(user or [], admin)  # a key that cannot be made opens (or creates) no database
    ring = _key_store(db, config)
    key_id, token = ring.create(user or [], admin, name)
    err.print(f"created key {key_id} for {'admin' if admin else ', '.join(user or [])}")
    sys.stdout.write(token + "\n")


@keys_app.command("list")
def keys_list(db: DbOption = None, config: ConfigOption = None) -> None:
    """Every key: id, name, users, admin, created, revoked (never the key itself)."""
    ring = _key_store(db, config)
    print_json(
        [
            {
                "key_id": k.id,
                "name": k.name,
                "users": k.users,
                "admin": k.admin,
                "created": k.created,
                "revoked": k.revoked,
            }
            for k in ring.store.list_keys()
        ]
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")], db: DbOption = None, config: ConfigOption = None
) -> None:
    """Revoke a key: it stops working at once here, within key_cache_seconds on other replicas."""
    if not _key_store(db, config).revoke(key_id):
        raise GmtError(f"no active key '{key_id}'; see 'gmtrouter serve keys list'")
    err.print(f"revoked key {key_id}")
