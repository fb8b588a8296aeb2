"""The `gmtrouter` command line (DESIGN.md contract). Errors print one line on stderr and exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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


def _print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=float) + "\n")


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
    from gmtrouter.data.schema import check_readable

    check_readable(path)
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
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL file to write.")],
) -> None:
    """Convert an upstream dataset into canonical records or a query x LLM matrix."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_jsonl

    items = prepare(dataset, data_dir)
    count = write_jsonl(output, items)
    err.print(f"wrote {count} {'rows' if dataset in _matrix_names() else 'records'} to {output}")


def _matrix_names() -> list[str]:
    from gmtrouter.data.loaders import dataset_names

    return dataset_names()[1]


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="Records JSONL.")],
    by: Annotated[str, typer.Option("--by", help="record (known users) or user (new users).")] = "record",
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
    file: Annotated[Path, typer.Argument(help="Records or matrix JSONL.")],
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
def data_validate(file: Annotated[Path, typer.Argument(help="Records or matrix JSONL.")]) -> None:
    """Check every line against the format; list each problem with file, line and field."""
    from gmtrouter.data.matrix import MatrixRow
    from gmtrouter.data.schema import Interaction, conversation_errors, read_jsonl, validate_jsonl

    is_records = _is_records_file(file)
    good, errors = validate_jsonl(file, Interaction if is_records else MatrixRow)
    if is_records and not errors:
        errors = conversation_errors(file, read_jsonl(file, Interaction))
    for error in errors:
        err.print(str(error), markup=False, highlight=False, soft_wrap=True)
    if errors:
        raise GmtError(f"{file}: {len(errors)} problem(s) in {good + len(errors)} lines; fix the lines above")
    err.print(f"{file}: {good} valid {'records' if is_records else 'matrix rows'}")


def _parse_settings(pairs: list[str]) -> dict[str, object]:
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
    data: Annotated[Path, typer.Option("--data", help="Training records (JSONL).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the model into.")],
    router: Annotated[str, typer.Option("--router", help="Which router to train.")] = "gmtrouter",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation records (default: held out).")] = None,
    llm_info: Annotated[Path | None, typer.Option("--llm-info", help="Folder of LLM description files.")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Router setting key=value (repeatable).")] = None,
) -> None:
    """Train a router on canonical records and save it (weights, config, the history it scores from)."""
    from gmtrouter.checkpoint import save_router
    from gmtrouter.data.schema import read_records
    from gmtrouter.routers import make_router, router_settings

    records = read_records(data)
    valid_records = read_records(valid) if valid else None
    options = _parse_settings(settings or [])
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
    model.fit(records, valid_records)
    save_router(model, output, records + (valid_records or []))
    log = getattr(model, "training_log_", {})
    err.print(
        f"saved {router} to {output} ({log.get('seconds', '?')} s, best validation AUC {log.get('best_valid_auc')})"
    )


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model folder from 'gmtrouter train'.")],
    data: Annotated[Path, typer.Option("--data", help="Records to score (JSONL).")],
    shots: Annotated[int, typer.Option("--shots", help="Each user's first K records are history.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score held-out records: pairwise accuracy, AUC, per-user summaries, top-1."""
    from gmtrouter.checkpoint import load_router
    from gmtrouter.data.schema import read_records
    from gmtrouter.evaluate import evaluate_router

    router, history = load_router(model)
    result = evaluate_router(router, history, read_records(data), shots)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rank the candidate LLMs for one request of one user."""
    from gmtrouter.api import Router

    names = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    decision = Router.load(model).route(user, query, names, cost_weight)
    if as_json:
        _print_json(decision.to_dict())
        return
    _print_ranking(decision)


def _print_ranking(decision) -> None:
    table = Table(title=f"route for {decision.user}: {decision.llm}")
    for column in ("LLM", "score", "expected cost (USD)", "adjusted"):
        table.add_column(column)
    for row in decision.ranking:
        cost = "?" if row.expected_cost is None else f"{row.expected_cost:.5f}"
        table.add_row(row.llm, f"{row.score:.3f}", cost, f"{row.adjusted:.3f}")
    out.print(table)
    for note in decision.notes:
        err.print(note)


@app.command("demo")
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The shared data folder (holds mt_bench/).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the files the demo writes.")] = Path("runs/demo"),
) -> None:
    """The main job end to end on MT-Bench human votes: prepare the records and print their statistics."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records
    from gmtrouter.data.stats import record_stats

    records_path = out_dir / "mt_bench.jsonl"
    records = prepare("mt-bench", data_dir / "mt_bench")
    write_records(records_path, records)
    err.print(f"prepared {len(records)} MT-Bench records -> {records_path}")
    _print_table(f"records: {records_path}", record_stats(records))


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
    except Exception as error:
        # Typer's usage errors (missing argument, bad option value) carry their own message.
        if not hasattr(error, "format_message"):
            raise
        sys.stderr.write(f"error: {error.format_message().rstrip('.')}; see 'gmtrouter --help'\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
