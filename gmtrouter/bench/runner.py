"""Runs the plan's jobs, each in its own process with a time budget, skipping the ones already finished.

Processes are forked from a fork server that has imported torch and the routers once, so a job starts in
milliseconds rather than seconds, and a job that raises, is killed for memory or runs past its budget takes
only itself down. Every job ends with a result file: `ok`, `failed` (an exception, with its traceback),
`crashed` (the process died) or `timeout`.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from gmtrouter.bench.plan import BenchConfig, Job
from gmtrouter.data.sim_posterior import CommunityModel

FINISHED = ("ok", "failed", "crashed", "timeout")
_POLL_SECONDS = 0.5


def read_result(path: Path) -> dict[str, Any] | None:
    """A job's result file, or None when it is missing or unreadable (then the job counts as not run)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return result if isinstance(result, dict) and result.get("status") in FINISHED else None


def is_done(job: Job, out: Path, retry_failed: bool) -> bool:
    """Finished jobs are skipped; failed ones too unless they are to be retried."""
    result = read_result(job.result_path(out))
    if result is None:
        return False
    return result["status"] == "ok" or not retry_failed


def _peak_mb(pid: int) -> float | None:
    """A live process's peak resident memory from /proc (Linux), for jobs that must be killed."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"the job process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the job process was killed by signal {-code}"
    return f"the job process exited with code {code} without writing a result"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


@dataclass
class _Running:
    job: Job
    process: Any
    conn: Connection
    task: TaskID
    started: float
    phase: str = "starting"


@dataclass
class RunSummary:
    """What a run did: jobs run now and skipped as finished, outcomes by status, wall time."""

    total: int
    skipped: int
    ran: int = 0
    statuses: Counter = field(default_factory=Counter)
    wall_seconds: float = 0.0


class Runner:
    """Executes jobs with at most `config.workers` at a time, each limited to `config.timeout` seconds."""

    def __init__(
        self,
        config: BenchConfig,
        data_paths: dict[str, Path],
        console: Console,
        community_models: Mapping[str, CommunityModel] | None = None,
    ) -> None:
        self.config = config
        self.data_paths = data_paths
        self.console = console
        self.community_models = dict(community_models or {})  # dataset -> what its community reference knows
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["gmtrouter.bench.worker"])

    def _options(self, job: Job) -> dict[str, Any]:
        out = self.config.out
        return {
            "data": str(self.data_paths[job.dataset]),
            "result": str(job.result_path(out)),
            "log": str(job.log_path(out)),
            "threads": self.config.threads,
            "latency_requests": self.config.latency_requests,
            "community_model": (
                dataclasses.asdict(self.community_models[job.dataset]) if job.dataset in self.community_models else None
            ),
        }

    def _start(self, job: Job, progress: Progress) -> _Running:
        from gmtrouter.bench.worker import run_job

        job.result_path(self.config.out).unlink(missing_ok=True)  # a retried job must not read its old result
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(target=run_job, args=(job.to_dict(), self._options(job), send), daemon=True)
        process.start()
        send.close()
        task = progress.add_task(job.label, total=None)
        return _Running(job, process, receive, task, time.perf_counter())

    def _drain(self, running: _Running, progress: Progress) -> None:
        """Read the job's phase messages: (phases done, phases in all, current phase)."""
        try:
            while running.conn.poll():
                done, total, running.phase = running.conn.recv()
                progress.update(running.task, completed=done, total=total)
        except (EOFError, OSError):
            pass
        elapsed = time.perf_counter() - running.started
        progress.update(running.task, description=f"{running.job.label} [dim]({running.phase}, {elapsed:.0f} s)")

    def _finish(self, running: _Running, timed_out: bool) -> dict[str, Any]:
        """Stop (if needed) and reap the process; return its result, writing one where it left none."""
        job, process = running.job, running.process
        peak = None
        if timed_out:
            peak = _peak_mb(process.pid)
            process.kill()
        process.join()
        running.conn.close()
        path = job.result_path(self.config.out)
        result = read_result(path)
        if result is not None and (result["status"] == "ok" or not timed_out):
            return result
        seconds = time.perf_counter() - running.started
        if timed_out:
            error = f"exceeded the job budget of {self.config.timeout:g} s (was in phase: {running.phase})"
            status = "timeout"
        else:
            error, status = _exit_reason(process.exitcode), "crashed"
        result = {"job": job.to_dict(), "status": status, "error": error, "wall_seconds": seconds, "peak_rss_mb": peak}
        from gmtrouter.bench.worker import write_result

        write_result(path, result)
        return result

    def _report(self, result: dict[str, Any]) -> None:
        job = result["job"]
        label = f"{job['dataset']} / {job['split']} / seed {job['seed']} / {job['variant']}"
        seconds = result.get("wall_seconds") or 0.0
        if result["status"] == "ok":
            first = result.get("evaluations", {}).get(str(job["shots"][0]), {})
            accuracy = first.get("accuracy")
            shown = f"accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
            self.console.print(f"[green]ok[/] {label}  {seconds:.1f} s  {shown}", highlight=False, soft_wrap=True)
        else:
            self.console.print(
                f"[red]{result['status']}[/] {label}: {result.get('error')}", highlight=False, soft_wrap=True
            )

    def run(self, jobs: Sequence[Job]) -> RunSummary:
        """Run every job not yet finished; a job's failure is written down and the others go on.

        Ctrl-C or SIGTERM stops the running jobs (no orphans); what finished stays, and a rerun goes on from there.
        """
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return self._run(jobs)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _run(self, jobs: Sequence[Job]) -> RunSummary:
        config = self.config
        todo = deque(job for job in jobs if not is_done(job, config.out, config.retry_failed))
        summary = RunSummary(total=len(jobs), skipped=len(jobs) - len(todo))
        started = time.perf_counter()
        running: list[_Running] = []
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            plan = progress.add_task(f"plan ({summary.skipped} finished before)", total=len(jobs))
            progress.update(plan, completed=summary.skipped)
            try:
                while todo or running:
                    while todo and len(running) < config.workers:
                        running.append(self._start(todo.popleft(), progress))
                    wait([r.process.sentinel for r in running] + [r.conn for r in running], timeout=_POLL_SECONDS)
                    for item in list(running):
                        self._drain(item, progress)
                        timed_out = time.perf_counter() - item.started > config.timeout
                        if item.process.is_alive() and not timed_out:
                            continue
                        result = self._finish(item, timed_out and item.process.is_alive())
                        running.remove(item)
                        progress.remove_task(item.task)
                        summary.ran += 1
                        summary.statuses[result["status"]] += 1
                        self._report(result)
                        progress.advance(plan)
                        failed = sum(n for s, n in summary.statuses.items() if s != "ok")
                        progress.update(plan, description=f"plan ({summary.skipped} finished before, {failed} failed)")
            finally:
                for item in running:  # interrupted: no orphans; their jobs rerun next time
                    item.process.kill()
                    item.process.join()
        summary.wall_seconds = time.perf_counter() - started
        return summary
