"""`gmtrouter bench`: every router on every dataset and setting, into one report; `--online`: policies that learn
from the one answer a user sees, in a simulated online world (docs/online.md)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gmtrouter.cli.common import err
from gmtrouter.utils.errors import GmtError

if TYPE_CHECKING:
    from gmtrouter.bench.online.config import OnlineConfig

bench_app = typer.Typer()


@bench_app.command("bench")
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="One seed, k in {0, 5}, the faster routers: a check in minutes.")
    ] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online", help="The online benchmark: one query a round, one routed LLM, a thumb on its answer."
        ),
    ] = False,
    scenarios: Annotated[
        str | None, typer.Option("--scenarios", help="--online: comma-separated: cold, warm, new-llm, drift, rating.")
    ] = None,
    matrices: Annotated[
        str | None, typer.Option("--matrices", help="--online: comma-separated: gsm8k, mmlu, llmrouter.")
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            help="--online: comma-separated: gmtrouter-explore, gmtrouter-greedy, gmtrouter-epsilon, win-rate, "
            "linucb, best-single, oracle.",
        ),
    ] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="--online: rounds of a run (default 6000).")] = None,
    gmtrouter_seeds: Annotated[
        str | None, typer.Option("--gmtrouter-seeds", help="--online: seeds of the (slow) gmtrouter policies.")
    ] = None,
    http: Annotated[
        bool,
        typer.Option(
            "--http/--no-http", help="--online: check the first rounds of one warm run through `gmtrouter serve`."
        ),
    ] = True,
    http_rounds: Annotated[int, typer.Option("--http-rounds", help="--online: rounds of the service check.")] = 1000,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="--online: write the report from the jobs finished so far; run nothing, train nothing.",
        ),
    ] = False,
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets",
            help="Comma-separated: mt-bench, gsm8k, mmlu, llmrouter, llmrouter-task, llmrouter-switch, "
            "llmrouter-communities, gsm8k-communities, chatbot-arena.",
        ),
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
        typer.Option(
            "--report",
            help="Markdown report; figures go to img/ beside it (default docs/results.md, --online docs/online.md).",
        ),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(
            "--users", help="Synthetic users per benchmark matrix (default 100, --quick 40; --online: 50 online users)."
        ),
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
    """Run every router on every dataset (known users, new users by k shots, new queries, new topics; seeds) into
    one report."""
    online_only = {"--scenarios": scenarios, "--matrices": matrices, "--policies": policies}
    online_only.update({"--rounds": rounds, "--gmtrouter-seeds": gmtrouter_seeds, "--report-only": report_only or None})
    if online:
        offline_only = {"--quick": quick or None, "--datasets": datasets, "--routers": routers, "--variant": variant}
        offline_only.update({"--ablation-seeds": ablation_seeds, "--shots": shots, "--chatbot-arena": chatbot_arena})
        offline_only.update({"--set": settings, "--all-jobs": all_jobs or None})
        given = [name for name, value in offline_only.items() if value]
        if given:
            raise GmtError(f"{', '.join(given)}: not an option of the online benchmark; leave it out with --online")
        from gmtrouter.bench.online.config import online_config

        _online(
            online_config(
                data_dir=data_dir,
                out=out_dir,
                report=report,
                matrices=matrices,
                scenarios=scenarios,
                policies=policies,
                seeds=seeds,
                gmtrouter_seeds=gmtrouter_seeds,
                rounds=rounds,
                users=users,
                encoder=encoder,
                workers=workers,
                retry_failed=retry_failed,
                http=http,
                http_rounds=http_rounds,
                report_only=report_only,
            )
        )
        return
    given = [name for name, value in online_only.items() if value is not None]
    if given:
        raise GmtError(f"{', '.join(given)}: an option of the online benchmark; add --online")
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


def _online(config: OnlineConfig) -> None:
    """Run the online benchmark and say, in one line, when and why it stopped."""
    from gmtrouter.bench.online.run import run_online

    command = "gmtrouter " + shlex.join(sys.argv[1:])
    outcome = run_online(config, command, err)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) or "nothing to run"
    err.print(
        f"stopped: {outcome.stop}; {len(outcome.plan.jobs)} jobs, {outcome.reused} finished before, ran "
        f"{outcome.ran} ({statuses}) in {outcome.wall_seconds / 60:.1f} min; report: {outcome.report}",
        soft_wrap=True,
        highlight=False,
    )
    if outcome.stop.startswith("interrupted"):
        raise typer.Exit(130)
