"""The `gmtrouter` command line (its contract: docs/architecture.md). Errors print one line on stderr, exit 2."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gmtrouter.cli_env import TRAIN_DB_ENV
from gmtrouter.errors import GmtError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Personalized LLM routing learned from multi-turn feedback (GMTRouter).",
)
data_app = typer.Typer(no_args_is_help=True, help="Prepare, simulate, split, inspect and validate data files.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)


def _json_safe(value: object) -> object:
    """NaN and infinities (an AUC with one label, an empty summary) become null: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def _print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(_json_safe(payload), indent=2, allow_nan=False, default=float) + "\n")


def _print_table(title: str, payload: dict[str, object]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in payload.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    out.print(table)


def _is_records_file(path: Path) -> bool:
    """Records have a list of responses; matrix rows have a dict of them."""
    from gmtrouter.data.schema import check_readable, is_parquet

    check_readable(path)
    if is_parquet(path):
        return True  # only records are kept in Parquet
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return not isinstance(json.loads(line).get("responses"), dict)
                except (json.JSONDecodeError, AttributeError):
                    return True
    return True


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[
        str,
        typer.Argument(help="mt-bench, chatbot-arena, openai-logs (records); gsm8k, mmlu, llmrouter (matrices)."),
    ],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Folder (or file) of the upstream data.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write: JSONL, or for records also Parquet (.parquet).")
    ],
) -> None:
    """Convert an upstream dataset into canonical records or a query x LLM matrix."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import is_parquet, write_jsonl, write_records

    matrix = dataset in _matrix_names()
    if matrix and is_parquet(output):
        raise GmtError(f"{output}: a query x LLM matrix is written as JSONL; give a .jsonl output")
    items = prepare(dataset, data_dir)
    count = write_jsonl(output, items) if matrix else write_records(output, items)
    err.print(f"wrote {count} {'rows' if matrix else 'records'} to {output}")


def _matrix_names() -> list[str]:
    from gmtrouter.data.loaders import dataset_names

    return dataset_names()[1]


@data_app.command("simulate")
def data_simulate(
    matrix: Annotated[
        Path, typer.Argument(help="Query x LLM matrix JSONL (from 'data prepare gsm8k|mmlu|llmrouter').")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Records to write (JSONL, or Parquet: .parquet).")],
    users: Annotated[int, typer.Option("--users", help="Number of synthetic users.")] = 200,
    records_per_user: Annotated[
        int, typer.Option("--records-per-user", help="Rated turns per user, over all their conversations.")
    ] = 50,
    turns: Annotated[
        int, typer.Option("--turns", help="Most turns in one conversation (lengths uniform on 1..T).")
    ] = 5,
    candidates: Annotated[int, typer.Option("--candidates", help="LLM answers shown and rated per turn.")] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Choice noise: higher makes ratings less consistent.")
    ] = 0.5,
    realism: Annotated[
        float,
        typer.Option(
            "--realism", help="Share of perceived quality from the answer's own score (rest: the LLM's mean)."
        ),
    ] = 0.5,
    tie_margin: Annotated[
        float, typer.Option("--tie-margin", help="Two answers this close in utility may tie (K = 2).")
    ] = 0.1,
    tie_prob: Annotated[float, typer.Option("--tie-prob", help="Chance such a close pair is a tie.")] = 0.5,
    spread: Annotated[
        float, typer.Option("--spread", help="SD of each user's weights around their archetype's.")
    ] = 0.5,
    affinity_sd: Annotated[float, typer.Option("--affinity-sd", help="SD of personal affinity per LLM.")] = 0.5,
    archetypes: Annotated[
        str | None,
        typer.Option(
            "--archetypes",
            help="Comma-separated archetypes (default: the five of global taste; see docs/simulator.md).",
        ),
    ] = None,
    neighbours: Annotated[
        int, typer.Option("--neighbours", help="A next turn's query is one of this many nearest queries.")
    ] = 10,
    interest_concentration: Annotated[
        float,
        typer.Option("--interest-concentration", help="Dirichlet concentration of topic interests: low = few topics."),
    ] = 0.5,
    switch_aversion: Annotated[
        float,
        typer.Option(
            "--switch-aversion",
            help="Mean utility an averse user loses when the LLM changes within a conversation (0: off).",
        ),
    ] = 0.0,
    switch_share: Annotated[
        float, typer.Option("--switch-share", help="Share of users averse to a change of LLM (with --switch-aversion).")
    ] = 0.7,
    check: Annotated[
        bool, typer.Option("--check", help="Print oracle, global win-rate and per-user reference accuracies.")
    ] = False,
) -> None:
    """Simulate users with different tastes rating LLM answers over a matrix (see docs/simulator.md)."""
    from gmtrouter.data.matrix import read_matrix
    from gmtrouter.data.schema import write_records
    from gmtrouter.data.sim_config import SimConfig

    config = SimConfig(
        users=users,
        records_per_user=records_per_user,
        max_turns=turns,
        candidates=candidates,
        seed=seed,
        temperature=temperature,
        realism=realism,
        tie_margin=tie_margin,
        tie_prob=tie_prob,
        spread=spread,
        affinity_sd=affinity_sd,
        archetypes=archetypes,
        neighbours=neighbours,
        interest_concentration=interest_concentration,
        switch_aversion=switch_aversion,
        switch_share=switch_share,
    )
    config.check()
    if _is_records_file(matrix):
        raise GmtError(
            f"{matrix}: holds interaction records, not a query x LLM matrix; "
            "give a matrix from 'gmtrouter data prepare gsm8k|mmlu|llmrouter'"
        )
    rows = read_matrix(matrix)
    config.check_matrix(rows)
    err.print(f"simulating {users} users x {records_per_user} records over {len(rows)} queries")
    from gmtrouter.data.simulate import simulate

    result = simulate(rows, config)
    err.print(f"  queries used: {result.eligible_rows} (those with results of at least {candidates} LLMs)")
    for feature, how in result.features.items():
        err.print(f"  {feature}: {how}", markup=False, highlight=False, soft_wrap=True)
    count = write_records(output, result.records)
    err.print(f"wrote {count} records of {users} users to {output}")
    if check:
        from gmtrouter.data.sim_check import check as check_records

        _print_json(check_records(result.records))


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="Records (JSONL or Parquet).")],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="record (known users), user (new users) or query (new queries: no test query text is in training).",
        ),
    ] = "record",
    test_frac: Annotated[float, typer.Option("--test-frac")] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for train.jsonl and test.jsonl.")] = Path(
        "split"
    ),
) -> None:
    """Split records into DIR/train.jsonl and DIR/test.jsonl, seeded, each in file order."""
    from gmtrouter.data.schema import read_records, write_records
    from gmtrouter.data.split import split_records

    train, test = split_records(read_records(file), by, test_frac, seed)  # type: ignore[arg-type]
    write_records(output / "train.jsonl", train)
    write_records(output / "test.jsonl", test)
    err.print(f"wrote {len(train)} train and {len(test)} test records to {output}/")


@data_app.command("stats")
def data_stats(
    file: Annotated[Path, typer.Argument(help="Records (JSONL or Parquet) or matrix JSONL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print what a records or matrix file holds."""
    from gmtrouter.data.matrix import read_matrix
    from gmtrouter.data.schema import read_records
    from gmtrouter.data.stats import matrix_stats, record_stats

    if _is_records_file(file):
        payload, title = record_stats(read_records(file)), f"records: {file}"
    else:
        payload, title = matrix_stats(read_matrix(file)), f"matrix: {file}"
    if as_json:
        _print_json(payload)
    else:
        _print_table(title, payload)


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="Records (JSONL or Parquet) or matrix JSONL.")],
) -> None:
    """Check every line against the format; list each problem with file, line and field."""
    from gmtrouter.data.matrix import MatrixRow
    from gmtrouter.data.schema import Interaction, conversation_errors, read_items, validate_items

    is_records = _is_records_file(file)
    good, errors = validate_items(file, Interaction if is_records else MatrixRow)
    if is_records and not errors:
        errors = conversation_errors(file, read_items(file, Interaction))
    for error in errors:
        err.print(str(error), markup=False, highlight=False, soft_wrap=True)
    if errors:
        raise GmtError(f"{file}: {len(errors)} problem(s) in {good + len(errors)} lines; fix the lines above")
    err.print(f"{file}: {good} valid {'records' if is_records else 'matrix rows'}")


def parse_settings(pairs: list[str]) -> dict[str, object]:
    """`--set key=value` pairs; values are JSON where they parse as JSON (numbers, booleans), else strings."""
    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GmtError(f"--set expects key=value, got '{pair}'")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def _llm_descriptions(path: Path | None) -> dict[str, str] | None:
    from gmtrouter.data.prices import PriceBook

    if path is None:
        return None
    if not path.exists():
        raise GmtError(f"{path}: no such file or folder for --llm-info")
    book = PriceBook.discover(path if path.is_dir() else path.parent)
    return {name: info.description for name, info in book.infos.items() if info.description}


@app.command("train")
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
    settings: Annotated[list[str] | None, typer.Option("--set", help="Router setting key=value (repeatable).")] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Train on this many local processes (torchrun, gloo on CPU).")
    ] = 1,
) -> None:
    """Train a router on canonical records and save it (weights, config, the history it scores from)."""
    from gmtrouter.checkpoint import save_router
    from gmtrouter.data.schema import read_records
    from gmtrouter.distributed import finish, launch
    from gmtrouter.distributed import workers as process_group
    from gmtrouter.registry import make_router, router_settings

    if data is None and from_db is None:
        raise GmtError("give training records: --data FILE, --from-db URL, or both")
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
    if log.get("stop"):
        err.print(log["stop"], highlight=False)
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


@app.command("eval")
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
    from gmtrouter.checkpoint import load_router
    from gmtrouter.data.schema import read_records
    from gmtrouter.evaluate import evaluate_router

    router, history = load_router(model)
    result = evaluate_router(router, history, read_records(data), shots, allow_overlap)
    if as_json:
        _print_json(result)
    else:
        _print_table(f"{result['router']} on {data} ({shots} shots)", result)


@app.command("route")
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
    decision = Router.load(model).route(
        user, query, names, cost_weight, switch_cost=switch_cost, previous_llm=previous_llm
    )
    if as_json:
        _print_json(decision.to_dict())
        return
    _print_ranking(decision)


def _print_ranking(decision) -> None:
    table = Table(title=f"route for {decision.user}: {decision.llm}", caption="sorted by adjusted")
    for column in ("LLM", "score", "expected cost (USD)", "adjusted"):
        table.add_column(column)
    for row in decision.ranking:
        cost = "?" if row.expected_cost is None else f"{row.expected_cost:.5f}"
        table.add_row(row.llm, f"{row.score:.3f}", cost, f"{row.adjusted:.3f}")
    out.print(table)
    for note in decision.notes:
        err.print(note)


@app.command("bench")
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="One seed, k in {0, 5}, the faster routers: a check in minutes.")
    ] = False,
    datasets: Annotated[
        str | None,
        typer.Option("--datasets", help="Comma-separated: mt-bench, gsm8k, mmlu, llmrouter, chatbot-arena."),
    ] = None,
    routers: Annotated[
        str | None, typer.Option("--routers", help="Comma-separated routers, ablations and --variant names.")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Extra variant NAME=ROUTER:key=value,... (repeatable); runs with the rest."),
    ] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Seeds, e.g. 0-4 or 0,2 (split and router).")] = None,
    ablation_seeds: Annotated[
        str | None, typer.Option("--ablation-seeds", help="Seeds for the GMTRouter ablations (default: 0-2).")
    ] = None,
    shots: Annotated[str | None, typer.Option("--shots", help="k values for new users, e.g. 0,1,2,5,10,20.")] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", envvar="GMTROUTER_DATA_DIR", help="The shared data folder.")
    ] = Path("../shared/data"),
    chatbot_arena: Annotated[
        Path | None, typer.Option("--chatbot-arena", help="Chatbot Arena battles file: adds the dataset.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Data, job results and logs (resumable).")] = Path(
        "runs/bench"
    ),
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Markdown report; figures go to img/ beside it (default docs/results.md)."),
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", help="Synthetic users per benchmark matrix (default 100, --quick 40).")
    ] = None,
    records_per_user: Annotated[int, typer.Option("--records-per-user", help="Records per synthetic user.")] = 50,
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="Text encoder for every router (default: each router's own).")
    ] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="ROUTER.key=value for a router and its variants (repeatable).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Wall-time budget of one job, seconds.")] = 900.0,
    workers: Annotated[int, typer.Option("--workers", help="Jobs at a time, each its own process.")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per job.")] = 1,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Rerun jobs that failed or timed out before.")
    ] = False,
    all_jobs: Annotated[
        bool, typer.Option("--all-jobs", help="Also run the slow jobs the plan leaves out (listed in the report).")
    ] = False,
) -> None:
    """Run every router on every dataset (known users, new users by k shots, new queries; seeds) into one report."""
    from gmtrouter.bench.cli_options import bench_config

    config, report_path, full_routers = bench_config(
        quick=quick,
        datasets=datasets,
        routers=routers,
        variants=variant or [],
        seeds=seeds,
        ablation_seeds=ablation_seeds,
        shots=shots,
        data_dir=data_dir,
        chatbot_arena=chatbot_arena,
        out=out_dir,
        report=report,
        users=users,
        records_per_user=records_per_user,
        encoder=encoder,
        settings=settings or [],
        timeout=timeout,
        workers=workers,
        threads=threads,
        retry_failed=retry_failed,
        all_jobs=all_jobs,
    )
    from gmtrouter.bench.run import run_bench

    command = "gmtrouter " + shlex.join(sys.argv[1:])
    outcome = run_bench(config, command, err, full_routers, report_path)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(outcome.summary.statuses.items())) or "nothing to run"
    err.print(
        f"{outcome.jobs} jobs: {outcome.summary.skipped} finished before, ran {outcome.summary.ran} ({statuses}); "
        f"the run took {outcome.wall_seconds / 60:.1f} min (jobs {outcome.summary.wall_seconds / 60:.1f} min, "
        f"the rest preparing data and text embeddings); report: {outcome.report}",
        soft_wrap=True,
        highlight=False,
    )


serve_app = typer.Typer(help="Run the router as an HTTP service (docs/service.md); manage its API keys.")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke the service's API keys.")
serve_app.add_typer(keys_app, name="keys")
app.add_typer(serve_app, name="serve")


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option("--model", help="Model folder from 'gmtrouter train'.")] = None,
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
) -> None:
    """Serve routing, feedback and an OpenAI-compatible endpoint over HTTP."""
    if ctx.invoked_subcommand is not None:
        return
    from gmtrouter.serve.config import load_config

    settings = load_config(config, model=model, db=db, host=host, port=port, report=report, prices=prices)
    if settings.model is None:
        raise GmtError("give the model folder: --model DIR (or 'model' in the config file)")
    if settings.report is not None and not settings.report.is_file():
        raise GmtError(f"{settings.report}: no such benchmark report; give the results.md of 'gmtrouter bench'")
    import uvicorn

    from gmtrouter.serve.app import create_app

    application = create_app(settings)
    err.print(f"serving {settings.model} on http://{settings.host}:{settings.port} (console at /ui, docs at /docs)")
    uvicorn.run(application, host=settings.host, port=settings.port, log_level=log_level, access_log=False)


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


db_app = typer.Typer(no_args_is_help=True, help="The service's database schema (Alembic migrations).")
serve_app.add_typer(db_app, name="db")


def _db_url(db: str | None, config: Path | None) -> str:
    from gmtrouter.serve.config import load_config

    return load_config(config, db=db).db


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, config: ConfigOption = None) -> None:
    """Bring the database's schema to this version's newest revision (the service also does this at start)."""
    from gmtrouter.serve.migrations import migrate
    from gmtrouter.serve.store import make_engine, parsed_safe

    url = _db_url(db, config)
    engine = make_engine(url)
    try:
        before, after = migrate(engine)
    finally:
        engine.dispose()
    done = "already at" if before == after else f"upgraded from {before or 'an empty database'} to"
    err.print(f"{parsed_safe(url)}: {done} revision {after}", highlight=False)


@db_app.command("current")
def db_current(db: DbOption = None, config: ConfigOption = None) -> None:
    """Print the database's schema revision, and whether it is the newest this version knows."""
    from gmtrouter.serve.migrations import HEAD, current_version
    from gmtrouter.serve.store import make_engine

    engine = make_engine(_db_url(db, config))
    try:
        with engine.connect() as conn:
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
    ring = _key_store(db, config)
    key_id, token = ring.create(user or [], admin, name)
    err.print(f"created key {key_id} for {'admin' if admin else ', '.join(user or [])}")
    sys.stdout.write(token + "\n")


@keys_app.command("list")
def keys_list(db: DbOption = None, config: ConfigOption = None) -> None:
    """Every key: id, name, users, admin, created, revoked (never the key itself)."""
    ring = _key_store(db, config)
    _print_json(
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


@app.command("demo")
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The shared data folder (holds mt_bench/).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the files the demo writes.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """The main job on MT-Bench human votes: prepare, split, train, evaluate on held-out votes, route."""
    from gmtrouter.api import Router
    from gmtrouter.checkpoint import save_router
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records
    from gmtrouter.data.split import split_records
    from gmtrouter.data.stats import record_stats
    from gmtrouter.evaluate import evaluate_router
    from gmtrouter.registry import make_router

    if not (data_dir / "mt_bench").is_dir():
        if (data_dir / "question.jsonl").is_file() or (data_dir / "model_answer").is_dir():
            raise GmtError(
                f"{data_dir}: is the MT-Bench folder itself; give the folder above it: --data-dir {data_dir.parent}"
            )
        raise GmtError(f"{data_dir}: holds no mt_bench/ folder; give the shared data folder: --data-dir ../shared/data")
    records = prepare("mt-bench", data_dir / "mt_bench")
    write_records(out_dir / "mt_bench.jsonl", records)
    _print_table(f"MT-Bench human votes: {out_dir / 'mt_bench.jsonl'}", record_stats(records))
    train, test = split_records(records, "record", 0.2, seed)
    write_records(out_dir / "split" / "train.jsonl", train)
    write_records(out_dir / "split" / "test.jsonl", test)
    err.print(f"split by record, seed {seed}: {len(train)} train, {len(test)} test records")

    results = {}
    for name in DEMO_ROUTERS:
        model = make_router(name, seed=seed)
        model.fit(train)
        save_router(model, out_dir / "models" / name, train)
        results[name] = evaluate_router(model, train, test)
    _print_comparison("held-out MT-Bench votes (known users)", results)

    router = Router.load(out_dir / "models" / "gmtrouter")
    busiest = [user for user, _ in Counter(r.user for r in train).most_common()]  # every user, most history first
    for query in DEMO_QUERIES:
        _print_personalised(router, busiest, query)
    err.print(
        f"models in {out_dir / 'models'}; try: .venv/bin/gmtrouter route --model {out_dir / 'models' / 'gmtrouter'} "
        f"--user {busiest[0]} --query 'Explain recursion to a child'",
        soft_wrap=True,
        highlight=False,
    )


def _print_personalised(router, users: list[str], query: str) -> None:
    """Route one query for several users; show two whose routes differ, each with the history that weighed most."""
    out.print(f"\n[bold]query:[/bold] {query}", highlight=False)
    decisions = [router.route(user, query) for user in users]
    chosen = next(
        ((a, b) for i, a in enumerate(decisions) for b in decisions[i + 1 :] if a.llm != b.llm),
        None,
    )
    if chosen is None:
        out.print(f"all {len(users)} users get {decisions[0].llm} for this query")
        chosen = (decisions[0],)
    else:
        out.print(f"two users whose histories differ, routed differently ({len(users)} users tried):")
    for decision in chosen:
        _print_ranking(decision)
        why = router.context.explain(decision.user, query, decision.llm)
        if why:
            out.print(
                f"why: the past interactions of {decision.user} that moved {decision.llm} most"
                f" (+: it did better there than expected, -: worse)",
                highlight=False,
            )
            for record, weight in why:
                verdict = ", ".join(f"{r.llm}={r.rating:g}" for r in record.responses)
                out.print(f"  {weight:+.2f}  {record.query[:70]!r}  ({verdict})", highlight=False, markup=False)


DEMO_ROUTERS = ("global-winrate", "user-winrate", "knn", "gmtrouter")
DEMO_QUERIES = (
    "Write a short poem about the sea, in the style of a pirate shanty.",
    "A train leaves at 3pm at 60 km/h and another at 4pm at 80 km/h. When does the second catch up?",
)


def _print_comparison(title: str, results: dict[str, dict[str, object]]) -> None:
    table = Table(title=title)
    table.add_column("router", no_wrap=True)
    for column in ("accuracy", "AUC", "user AUC mean", "user AUC p10", "pairs", "ms/record"):
        table.add_column(column)
    for name, result in results.items():
        users = result["per_user"]
        table.add_row(
            name,
            f"{result['accuracy']:.4f}",
            f"{result['auc']:.4f}",
            f"{users['auc']['mean']:.4f}",
            f"{users['auc']['p10']:.4f}",
            str(result["n_pairs"]),
            f"{result['ms_per_record']:.2f}",
        )
    out.print(table)


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit status 2."""
    try:
        app(standalone_mode=False)
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
            sys.stderr.write(f"error: {error.format_message().rstrip('.')}; see 'gmtrouter --help'\n")
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


if __name__ == "__main__":
    main()
