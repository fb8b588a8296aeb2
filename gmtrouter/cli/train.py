"""`gmtrouter train`, `eval` and `route`: fit a router, score held-out records, rank LLMs for one request."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from gmtrouter.cli.common import (
    err,
    parse_settings,
    print_explanation,
    print_json,
    print_ranking,
    print_table,
    report_stop,
)
from gmtrouter.utils.env import TRAIN_DB_ENV
from gmtrouter.utils.errors import GmtError

train_app = typer.Typer()


class TrainCommand(TyperCommand):
    """`train --help` ends with every router and the settings `--set` takes for it: read from the registry when
    the help is shown (importing every router is too slow to do on every command)."""

    @property
    def epilog(self) -> str:  # type: ignore[override]
        from gmtrouter.registry.routers import router_classes, router_settings

        lines = ["Routers (--router NAME) and the settings --set key=value takes for each:"]
        lines += [f"{name}: {', '.join(router_settings(name))}" for name in router_classes()]
        return "\n\n".join(lines)

    @epilog.setter
    def epilog(self, _value: str | None) -> None:
        pass


def _llm_descriptions(path: Path | None) -> dict[str, str] | None:
    from gmtrouter.data.prices import PriceBook

    if path is None:
        return None
    if not path.exists():
        raise GmtError(f"{path}: no such file or folder for --llm-info")
    book = PriceBook.discover(path if path.is_dir() else path.parent)
    return {name: info.description for name, info in book.infos.items() if info.description}


@train_app.command("train", cls=TrainCommand)
def train(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the model into.")],
    data: Annotated[Path | None, typer.Option("--data", help="Training records (JSONL or Parquet).")] = None,
    from_db: Annotated[
        str | None,
        typer.Option(
            "--from-db",
            envvar=TRAIN_DB_ENV,
            show_envvar=True,
            help="Also train on the feedback a service stored (database URL; the variable keeps a password off ps).",
        ),
    ] = None,
    router: Annotated[str, typer.Option("--router", help="Which router to train.")] = "gmtrouter",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation records (default: held out).")] = None,
    llm_info: Annotated[Path | None, typer.Option("--llm-info", help="Folder of LLM description files.")] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="Router setting key=value (repeatable; listed below).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Train on this many local processes (torchrun, gloo on CPU).")
    ] = 1,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="Text encoder: 'static' (a table distilled from MiniLM: fast), all-MiniLM-L6-v2, or a local "
            "sentence-transformers folder (default: the router's own).",
        ),
    ] = None,
) -> None:
    """Train a router on canonical records and save it (weights, config, the history it scores from)."""
    from gmtrouter.data.schema import read_records
    from gmtrouter.registry.checkpoint import check_model_target, save_router
    from gmtrouter.registry.routers import make_router, router_settings
    from gmtrouter.training.distributed import finish, launch
    from gmtrouter.training.distributed import workers as process_group

    if data is None and from_db is None:
        raise GmtError("give training records: --data FILE, --from-db URL, or both")
    check_model_target(output)  # before any training: a model that cannot be saved is not worth the wait
    if workers > 1:
        if router != "gmtrouter":
            raise GmtError(f"--workers trains GMTRouter only; router '{router}' trains on one process")
        raise typer.Exit(launch(_without_workers(sys.argv[1:]), workers))
    records = read_records(data) if data else []
    if from_db is not None:
        records = _with_stored_feedback(records, from_db)
    valid_records = read_records(valid) if valid else None
    options = parse_settings(settings or [])
    options.setdefault("seed", seed)
    if encoder is not None:
        if "encoder" not in router_settings(router):
            raise GmtError(f"router '{router}' reads no text; leave out --encoder")
        options["encoder"] = encoder
    descriptions = _llm_descriptions(llm_info)
    if descriptions is not None:
        if "llm_descriptions" not in router_settings(router):
            raise GmtError(f"router '{router}' does not read LLM descriptions; leave out --llm-info")
        options["llm_descriptions"] = descriptions
    try:
        model = make_router(router, **options)
    except TypeError as error:
        raise GmtError(f"bad --set for router '{router}': {error}") from None
    team = process_group()
    model.fit(records, valid_records)
    if team is not None and not team.leader:  # rank 0 saves; the others only trained
        finish(team)
        return
    save_router(model, output, records + (valid_records or []))
    finish(team)
    log = getattr(model, "training_log_", {})
    report_stop(model)
    best = log.get("best_valid_auc")
    shown = f"best validation AUC {best:.3f}" if isinstance(best, int | float) else "no validation hold-out"
    err.print(f"saved {router} to {output} ({log.get('seconds', '?')} s, {shown})", highlight=False)


def _without_workers(arguments: list[str]) -> list[str]:
    """The command line minus `--workers N` (or `--workers=N`): what each torchrun process runs."""
    out, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--workers":
            skip = True
        elif not argument.startswith("--workers="):
            out.append(argument)
    return out


def _with_stored_feedback(records: list, url: str) -> list:
    """`records` less those of users the service forgot, then the service's stored feedback not already there."""
    from gmtrouter.serve.store import Store

    store = Store(url, upgrade=False)
    try:
        forgotten = store.tombstones()
        stored = store.records()
    finally:
        store.close()
    kept = [r for r in records if r.user not in forgotten]
    seen = {(r.user, r.conversation, r.turn) for r in kept}
    fresh = [r for r in stored if (r.user, r.conversation, r.turn) not in seen]
    if not kept and not fresh:
        raise GmtError("the database holds no feedback yet; give --data too, or collect feedback first")
    err.print(
        f"{len(fresh)} stored feedback records from the database"
        + (f"; left out {len(records) - len(kept)} records of forgotten users" if len(kept) < len(records) else "")
    )
    return kept + fresh


@train_app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model folder from 'gmtrouter train'.")],
    data: Annotated[Path, typer.Option("--data", help="Records to score (JSONL or Parquet).")],
    shots: Annotated[int, typer.Option("--shots", help="Each user's first K records are history.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="Score records that are also in the model's history.")
    ] = False,
) -> None:
    """Score held-out records: pairwise accuracy, AUC, per-user summaries, top-1."""
    from gmtrouter.data.schema import read_records
    from gmtrouter.evaluation.kshot import evaluate_router
    from gmtrouter.registry.checkpoint import load_router

    router, history = load_router(model)
    result = evaluate_router(router, history, read_records(data), shots, allow_overlap)
    if as_json:
        print_json(result)
    else:
        print_table(f"{result['router']} on {data} ({shots} shots)", result)


@train_app.command("route")
def route(
    model: Annotated[Path, typer.Option("--model", help="Model folder from 'gmtrouter train'.")],
    user: Annotated[str, typer.Option("--user", help="Who asks.")],
    query: Annotated[str, typer.Option("--query", help="What they ask.")],
    candidates: Annotated[str | None, typer.Option("--candidates", help="Comma-separated LLMs.")] = None,
    cost_weight: Annotated[float, typer.Option("--cost-weight", help="Logits per e-fold of cost.")] = 0.0,
    previous_llm: Annotated[
        str | None, typer.Option("--previous-llm", help="The LLM that answered the conversation's previous turn.")
    ] = None,
    switch_cost: Annotated[
        float, typer.Option("--switch-cost", help="Logits taken from every LLM but --previous-llm.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rank the candidate LLMs for one request of one user (a later turn of a conversation: --previous-llm)."""
    from gmtrouter.api import Router

    names = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    router = Router.load(model)
    decision = router.route(user, query, names, cost_weight, switch_cost=switch_cost, previous_llm=previous_llm)
    rival = next((r.llm for r in decision.ranking if r.llm != decision.llm), None)
    explanation = router.explain(user, query, decision.llm, rival)
    if as_json:
        print_json({**decision.to_dict(), "explanation": explanation, "reasons": dict(router.reasons(decision))})
        return
    print_ranking(decision)
    print_explanation(decision.llm, user, explanation, rival)
