"""`gmtrouter demo`: the main job on MT-Bench human votes, from the shared data folder to routes that differ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gmtrouter.cli.common import err, out, print_explanation, print_ranking, print_table, report_stop
from gmtrouter.utils.errors import GmtError

demo_app = typer.Typer()


DEMO_ROUTERS = ("global-winrate", "user-winrate", "knn", "gmtrouter")


DEMO_QUERIES = (
    "Write a short poem about the sea, in the style of a pirate shanty.",
    "A train leaves at 3pm at 60 km/h and another at 4pm at 80 km/h. When does the second catch up?",
)


@demo_app.command("demo")
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The shared data folder (holds mt_bench/).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the files the demo writes.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """The main job on MT-Bench human votes: prepare, split, train, evaluate on held-out votes, route."""
    from gmtrouter.api import Router
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records
    from gmtrouter.data.split import split_records
    from gmtrouter.evaluation.kshot import evaluate_router
    from gmtrouter.evaluation.stats import record_stats
    from gmtrouter.registry.checkpoint import save_router
    from gmtrouter.registry.routers import make_router

    if not (data_dir / "mt_bench").is_dir():
        if (data_dir / "question.jsonl").is_file() or (data_dir / "model_answer").is_dir():
            raise GmtError(
                f"{data_dir}: is the MT-Bench folder itself; give the folder above it: --data-dir {data_dir.parent}"
            )
        raise GmtError(f"{data_dir}: holds no mt_bench/ folder; give the shared data folder: --data-dir ../shared/data")
    records = prepare("mt-bench", data_dir / "mt_bench")
    write_records(out_dir / "mt_bench.jsonl", records)
    print_table(f"MT-Bench human votes: {out_dir / 'mt_bench.jsonl'}", record_stats(records))
    train, test = split_records(records, "record", 0.2, seed)
    write_records(out_dir / "split" / "train.jsonl", train)
    write_records(out_dir / "split" / "test.jsonl", test)
    err.print(f"split by record, seed {seed}: {len(train)} train, {len(test)} test records")

    results = {}
    for name in DEMO_ROUTERS:
        model = make_router(name, seed=seed)
        model.fit(train)
        report_stop(model, name)
        save_router(model, out_dir / "models" / name, train)
        results[name] = evaluate_router(model, train, test)
    _print_comparison("held-out MT-Bench votes (known users)", results)

    router = Router.load(out_dir / "models" / "gmtrouter")
    busiest = [user for user, _ in Counter(r.user for r in train).most_common()]  # every user, most history first
    for query in DEMO_QUERIES:
        _print_personalised(router, busiest, query)
    _print_kinds(router, busiest[0], records)
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
        print_ranking(decision)
        rival = next((r.llm for r in decision.ranking if r.llm != decision.llm), None)
        print_explanation(decision.llm, decision.user, router.explain(decision.user, query, decision.llm, rival), rival)


def _print_kinds(router, user: str, records) -> None:
    """Route one question of each kind (MT-Bench category) for the same user; show two kinds routed differently,
    each with the parts of the model that set the choice apart from the runner-up."""
    questions = {}
    for record in records:
        questions.setdefault(record.meta.get("category", "?"), record.query)
    decisions = {kind: router.route(user, query, explore=False) for kind, query in questions.items()}
    out.print(f"\n[bold]one user, questions of different kinds:[/bold] {user}", highlight=False)
    kinds = list(decisions)
    pair = next(
        ((a, b) for i, a in enumerate(kinds) for b in kinds[i + 1 :] if decisions[a].llm != decisions[b].llm), None
    )
    if pair is None:
        chosen = decisions[kinds[0]].llm
        out.print(f"every kind of question goes to {chosen} for {user}: no part of the model sets another apart")
        pair = (kinds[0],)
    for kind in pair:
        decision = decisions[kind]
        out.print(f"{kind}: {decision.query[:90]!r}", highlight=False, markup=False)
        print_ranking(decision)
        reasons = ", ".join(f"{why} {gap:+.2f}" for why, gap in router.reasons(decision)[:3])
        out.print(f"  reasons, {decision.llm} against the runner-up (logits): {reasons}", highlight=False, markup=False)


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
