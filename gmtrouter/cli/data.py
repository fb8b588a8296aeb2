"""`gmtrouter data`: prepare, simulate, split, inspect and validate data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gmtrouter.cli.common import err, print_json, print_table
from gmtrouter.utils.errors import GmtError

data_app = typer.Typer(no_args_is_help=True, help="Prepare, simulate, split, inspect and validate data files.")


def _is_records_file(path: Path) -> bool:
    """Records have a list of responses; matrix rows have a dict of them."""
    from gmtrouter.data.schema import check_readable, is_parquet

    check_readable(path)
    if is_parquet(path):
        return True  # only records are kept in Parquet
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    return not isinstance(json.loads(line).get("responses"), dict)
                except (ValueError, AttributeError):  # not JSON, or not UTF-8: the record reader says so
                    return True
    return True


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[
        str,
        typer.Argument(
            help="mt-bench, chatbot-arena, openai-logs, langfuse (records); gsm8k, mmlu, llmrouter (matrices)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write: JSONL, or for records also Parquet (.parquet).")
    ],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder (or file) of the upstream data.")] = None,
    score_names: Annotated[
        list[str] | None, typer.Option("--score-name", help="langfuse: a score that rates answers (repeatable).")
    ] = None,
    from_langfuse: Annotated[
        str | None,
        typer.Option(
            "--from-langfuse",
            help="langfuse: read this Langfuse server, not --data-dir (keys LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY).",
        ),
    ] = None,
) -> None:
    """Convert an upstream dataset into canonical records or a query x LLM matrix."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import is_parquet, write_jsonl, write_records

    matrix = dataset in _matrix_names()
    if matrix and is_parquet(output):
        raise GmtError(f"{output}: a query x LLM matrix is written as JSONL; give a .jsonl output")
    items = prepare(dataset, data_dir, score_names or (), from_langfuse)
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
    communities: Annotated[
        int,
        typer.Option(
            "--communities", help="Users come in this many taste communities (0: each user drawn on their own)."
        ),
    ] = 0,
    community_sd: Annotated[
        float, typer.Option("--community-sd", help="SD of a community's affinity per LLM (with --communities).")
    ] = 1.0,
    community_task_loyalty: Annotated[
        float,
        typer.Option("--community-task-loyalty", help="Extra utility of a community's favourite LLM for each task."),
    ] = 1.5,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Print oracle, global win-rate and per-user reference accuracies (and the community posterior's).",
        ),
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
        communities=communities,
        community_sd=community_sd,
        community_task_loyalty=community_task_loyalty,
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
        from gmtrouter.data.sim_posterior import CommunityModel

        model = CommunityModel.of(config) if communities and candidates == 2 else None
        print_json(check_records(result.records, community_model=model))


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="Records (JSONL or Parquet).")],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="record (known users), user (new users), query (new queries: no test query text is in training) "
            "or category (new topics: no test meta.category is in training).",
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
    from gmtrouter.evaluation.stats import matrix_stats, record_stats

    if _is_records_file(file):
        payload, title = record_stats(read_records(file)), f"records: {file}"
    else:
        payload, title = matrix_stats(read_matrix(file)), f"matrix: {file}"
    if as_json:
        print_json(payload)
    else:
        print_table(title, payload)


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
