"""`gmtrouter bench --online` from start to report: prepare what the jobs share, run the jobs that are not
finished (side by side in worker processes), check one scenario through the HTTP service, write the report."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from pathlib import Path
from queue import Empty
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gmtrouter.bench.online.config import OnlineConfig, Plan
from gmtrouter.bench.online.http_check import http_check
from gmtrouter.bench.online.jobs import GMTROUTER_POLICIES, LEARNERS, Job, read_result, run_job
from gmtrouter.bench.online.prepare import prepare_matrix, query_embeddings, warm_data, warm_model
from gmtrouter.bench.online.report import write_report
from gmtrouter.bench.online.scenarios import SCENARIOS
from gmtrouter.text.base import DEFAULT_ENCODER

_COST = {"gmtrouter-explore": 0, "gmtrouter-greedy": 0, "gmtrouter-epsilon": 0, "linucb": 1}  # long jobs first


@dataclass(frozen=True)
class Outcome:
    """How the run went, for the command's last line and the report."""

    plan: Plan
    ran: int
    reused: int
    statuses: dict[str, int]
    wall_seconds: float
    stop: str  # why it stopped, in words
    http: dict[str, Any] | None
    report: Path | None


def _needs_warm_model(config: OnlineConfig) -> bool:
    return (
        not config.report_only and "warm" in config.scenarios and any(p in GMTROUTER_POLICIES for p in config.policies)
    )


def make_plan(config: OnlineConfig, console: Console) -> Plan:
    """Prepare the matrices, embeddings, warm-start logs and models, and list every job."""
    plan = Plan()
    for name in config.matrices:
        with console.status(f"preparing the {name} matrix"):
            matrix, rows = prepare_matrix(name, config.data_dir, config.out)
        plan.matrices[name] = matrix
        console.print(f"matrix {name}: {matrix.rows} queries, {len(matrix.llms)} LLMs, {matrix.categories} tasks")
        embeddings = None
        if "linucb" in config.policies:
            with console.status(f"query embeddings of {name} ({config.encoder}; cached after the first run)"):
                embeddings = query_embeddings(matrix, rows, config.encoder, config.out)
        warm = None
        if "warm" in config.scenarios and any(p in LEARNERS for p in config.policies):
            warm = warm_data(matrix, rows, config.world, config.out)
        if _needs_warm_model(config) and warm is not None:
            with console.status(f"training the warm-start model of {name} (`gmtrouter train`; once per matrix)"):
                began = time.time()
                encoder = None if config.encoder == DEFAULT_ENCODER else config.encoder
                plan.models[name] = warm_model(*warm, encoder, config.out)
            console.print(
                f"warm-start model {name}: {plan.models[name]} ({time.time() - began:.0f} s)", highlight=False
            )
        for scenario in config.scenarios:
            for seed in config.seeds:
                for policy in config.policies:
                    if policy in GMTROUTER_POLICIES and seed not in (config.gmtrouter_seeds or config.seeds):
                        continue
                    warm_path, model = warm, plan.models.get(name)
                    use_warm = SCENARIOS[scenario].warm and policy in LEARNERS
                    gmt = use_warm and policy in GMTROUTER_POLICIES and model is not None
                    plan.jobs.append(
                        Job(
                            matrix=name,
                            matrix_path=str(matrix.path),
                            matrix_sha=matrix.sha,
                            scenario=scenario,
                            seed=seed,
                            policy=policy,
                            world=config.world,
                            result_path=str(config.out / "results" / name / scenario / policy / f"seed{seed}.json"),
                            embeddings_path=str(embeddings) if policy == "linucb" and embeddings else None,
                            warm_path=str(warm_path[0]) if use_warm and warm_path else None,
                            model_dir=str(model) if gmt else None,
                            model_sha=warm_path[1] if gmt and warm_path else None,
                        )
                    )
    return plan


def is_finished(job: Job, retry_failed: bool) -> bool:
    """A result with this job's key (which names the parts of the API the installed gmtrouter has), unless it
    failed and failures are to be retried."""
    result = read_result(job.result_path)
    if result is None or result.get("key") != job.key():
        return False
    return result["status"] != "failed" or not retry_failed


def _worker(job: Job, queue: Any) -> dict[str, Any]:
    """A job in a worker process, telling the parent its progress through `queue`."""
    queue.put((job.label, 0))
    return run_job(job, lambda done: queue.put((job.label, done)))


class _Bars:
    """One overall bar and one bar per running job."""

    def __init__(self, progress: Progress, total: int, rounds: int) -> None:
        self.progress, self.rounds = progress, rounds
        self.overall = progress.add_task("online jobs", total=total)
        self.running: dict[str, TaskID] = {}

    def update(self, label: str, done: int) -> None:
        if label not in self.running:
            self.running[label] = self.progress.add_task(f"  {label}", total=self.rounds)
        self.progress.update(self.running[label], completed=done)

    def finish(self, label: str) -> None:
        task = self.running.pop(label, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)


def run_jobs(jobs: list[Job], workers: int, rounds: int, console: Console) -> tuple[dict[str, int], str]:
    """Run `jobs` (`workers` at a time), with progress; (statuses, why it stopped)."""
    statuses: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    jobs = sorted(jobs, key=lambda j: _COST.get(j.policy, 2))
    with Progress(*columns, console=console, transient=False) as progress:
        bars = _Bars(progress, len(jobs), rounds)

        def done(result: dict[str, Any]) -> None:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            if result["status"] == "failed":
                console.print(f"[red]failed[/red] {result['label']}: {result['reason']}", highlight=False)
            bars.finish(result["label"])

        try:
            if workers == 1:
                for job in jobs:
                    done(run_job(job, lambda n, label=job.label: bars.update(label, n)))
                return statuses, "every job finished"
            return statuses, _in_pool(jobs, workers, bars, done)
        except KeyboardInterrupt:
            return statuses, "interrupted (Ctrl-C); finished jobs are kept and a rerun goes on from there"


def _ignore_interrupts() -> None:
    """In a worker or the manager: Ctrl-C is the parent's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_pool(jobs: list[Job], workers: int, bars: _Bars, done: Callable[[dict[str, Any]], None]) -> str:
    """The jobs in `workers` spawned processes; on Ctrl-C the workers are stopped at once (their jobs rerun)."""
    context = multiprocessing.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(_ignore_interrupts)
    pool = context.Pool(workers, initializer=_ignore_interrupts)
    try:
        queue = manager.Queue()
        pending = [pool.apply_async(_worker, (job, queue)) for job in jobs]
        while pending:
            time.sleep(0.3)
            _drain(queue, bars)
            for finished in [r for r in pending if r.ready()]:
                pending.remove(finished)
                done(finished.get())
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        manager.shutdown()
    return "every job finished"


def _drain(queue: Any, bars: _Bars) -> None:
    while True:
        try:
            label, count = queue.get_nowait()
        except Empty:
            return
        bars.update(label, count)


def run_online(config: OnlineConfig, command: str, console: Console) -> Outcome:
    """Prepare, run what is not finished, check the service, and write the report."""
    config.check()
    started = time.time()
    load = os.getloadavg()[0]
    plan = make_plan(config, console)
    todo = [job for job in plan.jobs if not is_finished(job, config.retry_failed)]
    finished = len(plan.jobs) - len(todo)
    if config.report_only:
        console.print(f"plan: {len(plan.jobs)} jobs, {len(plan.jobs) - len(todo)} finished; the rest is not run")
        todo, (statuses, stop) = [], ({}, "the report only (--report-only): nothing was run")
    else:
        console.print(f"plan: {len(plan.jobs)} jobs, {len(plan.jobs) - len(todo)} finished before, {len(todo)} to run")
        statuses, stop = run_jobs(todo, config.workers, config.world.rounds, console)
    http = None
    if config.http and not config.report_only and not stop.startswith("interrupted"):
        http = http_check(config, plan, console)
    info = {
        "command": command,
        "started": started,
        "wall_seconds": time.time() - started,
        "ran": len(todo),
        "reused": finished,
        "load": [load, os.getloadavg()[0]],
    }
    report = write_report(config, plan, info, http)
    return Outcome(plan, len(todo), finished, statuses, time.time() - started, stop, http, report)
