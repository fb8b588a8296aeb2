"""The in-process loop checked against the HTTP service: the same world's first rounds routed through
`gmtrouter serve` (`/v1/route`, then `/v1/feedback` with kind thumbs), compared choice by choice with the same
policy run through the Python API."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from gmtrouter.bench.online.config import OnlineConfig, Plan
from gmtrouter.bench.online.jobs import job_world, read_result
from gmtrouter.bench.online.loop import run_policy
from gmtrouter.bench.online.metrics import routed_utility
from gmtrouter.bench.online.policies import Policy
from gmtrouter.bench.online.world import Stream
from gmtrouter.data.schema import Interaction
from gmtrouter.utils.atomic import atomic_write

POLICY = "gmtrouter-greedy"
START_SECONDS = 300.0  # loading a model under a loaded machine can take minutes


class ServicePolicy(Policy):
    """A policy that is a running gmtrouter service: each round one route request and one feedback."""

    def __init__(self, client: httpx.Client, feedback: str) -> None:
        self.client, self.feedback, self.name = client, feedback, f"{POLICY} (HTTP)"

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        self.index = {llm: j for j, llm in enumerate(stream.llms)}

    def choose(self, t: int, candidates: np.ndarray) -> int:
        body = {
            "user": self.stream.user_names[self.stream.user[t]],
            "messages": [{"role": "user", "content": self.stream.queries[self.stream.row[t]]}],
            "candidates": [self.stream.llms[j] for j in candidates],
        }
        answer = self.client.post("/v1/route", json=body)
        answer.raise_for_status()
        self.route_id = answer.json()["route_id"]
        return self.index[answer.json()["llm"]]

    def learn(self, t: int, llm: int, feedback: float) -> None:
        if self.feedback == "thumbs":
            body: dict[str, Any] = {"kind": "thumbs", "route_id": self.route_id, "thumbs": "up" if feedback else "down"}
        else:
            body = {"kind": "rating", "route_id": self.route_id, "rating": feedback}
        self.client.post("/v1/feedback", json=body).raise_for_status()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(model_dir: Path, db: Path, log: Path) -> Iterator[httpx.Client]:
    """`gmtrouter serve` on a free loopback port over a fresh SQLite store; a client with the admin key."""
    key, port = secrets.token_urlsafe(32), _free_port()
    db.unlink(missing_ok=True)
    command = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(model_dir), "--db", f"sqlite:///{db}"]
    command += ["--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "GMTROUTER_ADMIN_KEY": key, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"gmtrouter serve exited with {process.returncode}; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gmtrouter serve did not answer within {START_SECONDS:.0f} s; see {log}")
                time.sleep(0.5)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
                yield client
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def http_check(config: OnlineConfig, plan: Plan, console: Console) -> dict[str, Any] | None:
    """gmtrouter greedy from the warm-start model, first matrix and seed, thumbs: the first `http_rounds` rounds
    through the service against the same rounds of the in-process run. None when that run is not in the plan."""
    job = next(
        (
            j
            for j in plan.jobs
            if j.scenario == "warm" and j.policy == POLICY and j.feedback == "thumbs" and j.model_dir is not None
        ),
        None,
    )
    if job is None or job.model_dir is None:
        return None
    local = read_result(job.result_path)
    if local is None or local.get("status") != "ok":
        return {"label": job.label, "status": "skipped", "reason": "the in-process run did not finish"}
    rounds = min(config.http_rounds, config.world.rounds)
    folder = config.out / "http"
    saved = read_result(folder / "result.json")
    key = {"job": job.key(), "rounds": rounds}
    if saved is not None and saved.get("key") == key:
        return saved  # the same check made before (a rerun of the command)
    world = job_world(job)
    with console.status(f"the service check: {job.label}, {rounds} rounds through gmtrouter serve") as status:
        began = time.perf_counter()
        try:
            with served(Path(job.model_dir), folder / "serve.db", folder / "serve.log") as client:
                started = time.perf_counter() - began

                def progress(done: int) -> None:
                    status.update(f"the service check: {job.label}, round {done} of {rounds} through gmtrouter serve")

                outcome = run_policy(world, ServicePolicy(client, "thumbs"), "thumbs", progress=progress, rounds=rounds)
        except (RuntimeError, httpx.HTTPError) as error:
            return {"label": job.label, "status": "failed", "reason": str(error)}
    served_choices = outcome.choices
    local_choices = np.asarray(local["choices"][:rounds])
    local_seconds = float(local["loop_seconds"]) * rounds / max(len(local["choices"]), 1)
    result = {
        "key": key,
        "label": job.label,
        "status": "ok",
        "rounds": rounds,
        "agreement": float((served_choices == local_choices).mean()),
        "utility_service": float(routed_utility(world, served_choices).mean()),
        "utility_in_process": float(routed_utility(world, local_choices).mean()),
        "routes_per_second_service": rounds / outcome.loop_seconds,
        "routes_per_second_in_process": rounds / local_seconds if local_seconds > 0 else float("nan"),
        "service_start_seconds": started,
    }
    with atomic_write(folder / "result.json", "w") as handle:
        json.dump(result, handle)
    return result
