"""Load test of `gmtrouter serve`: /v1/route throughput and latency, and a burst of concurrent feedback writers.

    python benchmarks/serve_load.py --data-dir ../shared/data --out runs/serve-bench

Trains (once) a model on MT-Bench with the default text encoder and default settings except the step count,
starts the server as a child process on a loopback port with a fresh SQLite database, and drives it from a
second child process with httpx async clients:

1. /v1/route for known users, each query new (so it must be embedded), at --concurrency clients;
2. the same with queries the server has seen (embeddings cached);
3. --writers concurrent writers each sending --events feedback records; then every row is counted.

Every phase is bounded by a request count and a time limit. Results print as JSON and as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 2),
        "per_second": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else float("nan"),
    }


# ------------------------------------------------------------------------------------------------ the driver


async def drive_routes(
    url: str, users: list[str], queries: list[str], concurrency: int, total: int, limit: float
) -> dict[str, float]:
    """`concurrency` clients, each with its own connection, send route requests until `total` or `limit` s."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + limit

    async def client_loop(worker: int) -> None:
        nonlocal errors, sent
        rng = random.Random(worker)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            while sent < total and time.monotonic() < deadline:
                index = sent
                sent += 1
                body = {
                    "user": rng.choice(users),
                    "messages": [{"role": "user", "content": queries[index % len(queries)]}],
                }
                started = time.perf_counter()
                try:
                    answer = await client.post("/v1/route", json=body)
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(w) for w in range(concurrency)))
    return summary(latencies, errors, time.perf_counter() - started)


async def drive_feedback(
    url: str, users: list[str], queries: list[str], llms: list[str], writers: int, events: int, limit: float
) -> dict[str, float]:
    """`writers` clients, each sending `events` canonical records one after another."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + limit

    async def writer(w: int) -> None:
        nonlocal errors
        rng = random.Random(1000 + w)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            for n in range(events):
                if time.monotonic() > deadline:
                    return
                a, b = rng.sample(llms, 2)
                record = {
                    "user": rng.choice(users),
                    "conversation": f"bench/{w}/{n}",
                    "turn": 1,
                    "query": rng.choice(queries),
                    "responses": [{"llm": a, "rating": 1.0}, {"llm": b, "rating": 0.0}],
                }
                started = time.perf_counter()
                try:
                    answer = await client.post("/v1/feedback", json={"kind": "record", "record": record})
                    ok = answer.status_code == 200 and not answer.json()["duplicate"]
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return summary(latencies, errors, time.perf_counter() - started)


def drive(args: argparse.Namespace) -> None:
    """The load generator's process: read the plan from argv, print one JSON object."""
    plan = json.loads(Path(args.plan).read_text())
    if plan["phase"] == "feedback":
        result = asyncio.run(
            drive_feedback(
                plan["url"],
                plan["users"],
                plan["queries"],
                plan["llms"],
                plan["writers"],
                plan["events"],
                plan["limit"],
            )
        )
    else:
        result = asyncio.run(
            drive_routes(plan["url"], plan["users"], plan["queries"], plan["concurrency"], plan["total"], plan["limit"])
        )
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ the orchestrator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_phase(workdir: Path, plan: dict) -> dict:
    path = workdir / f"plan-{plan['phase']}.json"
    path.write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, __file__, "drive", "--plan", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=plan["limit"] + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"load generator failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare_model(args: argparse.Namespace, workdir: Path) -> tuple[Path, list, str]:
    sys.path.insert(0, str(REPO))
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records

    records = prepare("mt-bench", Path(args.data_dir) / "mt_bench")
    data = workdir / "mt_bench.jsonl"
    write_records(data, records)
    model = workdir / "model"
    layer = "hgt" if importlib.util.find_spec("gmtrouter.model.hgt") else "pyg-hgt"
    if not (model / "config.json").is_file():
        command = [sys.executable, "-m", "gmtrouter", "train", "--data", str(data), "-o", str(model)]
        command += ["--set", f"steps={args.steps}", "--set", "progress=false", "--set", f"layer={layer}"]
        print("training:", " ".join(command[1:]), file=sys.stderr)
        subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    return model, records, layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    driver = sub.add_parser("drive")
    driver.add_argument("--plan", required=True)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "runs" / "serve-bench"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000, help="per route phase")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per phase")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000, help="feedback events per writer")
    args = parser.parse_args()
    if args.command == "drive":
        drive(args)
        return

    workdir = Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    model, records, layer = prepare_model(args, workdir)
    users = sorted({r.user for r in records})
    questions = sorted({r.query for r in records})
    llms = sorted({m for r in records for m in r.llms})
    db = workdir / "bench.db"
    for stale in workdir.glob("bench.db*"):
        stale.unlink()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GMTROUTER_ADMIN_KEY": ADMIN, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(model), "--db", f"sqlite:///{db}"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)
        results: dict[str, object] = {"layer": layer, "steps": args.steps, "concurrency": args.concurrency}
        base = {"url": url, "users": users, "limit": args.seconds, "concurrency": args.concurrency}
        distinct = [f"{q} (request {uuid.uuid4().hex[:8]})" for q in questions * 40][: args.requests]
        run_phase(workdir, {**base, "phase": "warmup", "queries": questions, "total": 200})
        results["route_new_queries"] = run_phase(
            workdir, {**base, "phase": "new", "queries": distinct, "total": args.requests}
        )
        pool = questions[:80]
        run_phase(workdir, {**base, "phase": "prime", "queries": pool, "total": len(pool)})
        results["route_cached_queries"] = run_phase(
            workdir, {**base, "phase": "cached", "queries": pool, "total": args.requests}
        )
        feedback = {**base, "phase": "feedback", "queries": questions, "llms": llms}
        feedback.update(writers=args.writers, events=args.events, limit=max(args.seconds, 600.0))
        results["feedback"] = run_phase(workdir, feedback)
        sys.path.insert(0, str(REPO))
        from gmtrouter.serve.store import Store

        store = Store(f"sqlite:///{db}")
        rows = [row for row in store.feedback_rows() if row.record.conversation.startswith("bench/")]
        keys = {row.key for row in rows}
        conversations = {row.record.conversation for row in rows}
        store.close()
        results["feedback_rows"] = {
            "sent": args.writers * args.events,
            "stored": len(rows),
            "distinct_keys": len(keys),
            "distinct_records": len(conversations),
        }
        started = time.monotonic()
        while httpx.get(f"{url}/healthz", timeout=30).json()["pending_changes"] and time.monotonic() - started < 600:
            time.sleep(0.5)
        results["feedback_live_after_s"] = round(time.monotonic() - started, 1)
        results["history_records"] = httpx.get(f"{url}/healthz", timeout=30).json()["history_records"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps(results, indent=2))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["| phase | requests | errors | req/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, label in (
        ("route_new_queries", "/v1/route, new queries (embedded)"),
        ("route_cached_queries", "/v1/route, cached queries"),
        ("feedback", "/v1/feedback, 8 writers"),
    ):
        r = results[name]
        lines.append(
            f"| {label} | {r['requests']} | {r['errors']} | {r['per_second']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
