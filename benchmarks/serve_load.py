"""Load test of `gmtrouter serve`: /v1/route throughput and latency, and a burst of concurrent feedback writers.

    python benchmarks/serve_load.py --data-dir ../shared/data --out runs/serve-bench

Trains (once; or takes --model DIR) a model on MT-Bench with the default text encoder and default settings except
the step count,
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
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-key-0123456789"  # the service refuses admin keys shorter than 16 characters


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
        "p95_ms": round(1000 * percentile(latencies, 95), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else float("nan"),
    }


# ------------------------------------------------------------------------------------------------ the driver


async def drive_routes(
    url: str, users: list[str], queries: list[str], concurrency: int, total: int, limit: float, rate: float = 0.0
) -> dict[str, float]:
    """`concurrency` clients, each with its own connection, send route requests until `total` or `limit` s.

    rate 0: closed loop, each client sends its next request when the last is answered (the throughput a
    saturated server reaches). rate R: each client sends on a fixed schedule, R requests/s in all, and latency
    counts from the scheduled time, so a server that falls behind shows its queueing delay too.
    """
    latencies: list[float] = []
    errors = 0
    sent = 0
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + limit
    interval = concurrency / rate if rate else 0.0

    async def client_loop(worker: int) -> None:
        nonlocal errors, sent
        rng = random.Random(worker)
        due = time.perf_counter() + interval * worker / concurrency
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            while sent < total and time.monotonic() < deadline:
                index = sent
                sent += 1
                body = {
                    "user": rng.choice(users),
                    "messages": [{"role": "user", "content": queries[index % len(queries)]}],
                }
                if interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                started = due if interval else time.perf_counter()
                due += interval
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
    result = summary(latencies, errors, time.perf_counter() - started)
    result["offered_per_second"] = rate or "closed loop"
    return result


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
            drive_routes(
                plan["url"],
                plan["users"],
                plan["queries"],
                plan["concurrency"],
                plan["total"],
                plan["limit"],
                plan.get("rate", 0.0),
            )
        )
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ the orchestrator


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    """Block until the server at `url` answers /healthz; stop the benchmark if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.5)


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to report CPU per request whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(workdir: Path, plan: dict, url: str, pid: int) -> dict:
    """One phase with the server's own latency quantiles and its CPU time per request."""
    before, cpu = server_histogram(url), cpu_seconds(pid)
    result = run_phase(workdir, plan)
    result.update(server_quantiles(before, server_histogram(url)))
    result["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(pid) - cpu) / max(1, result["requests"]), 2)
    return result


# Where a sample of the server's time goes: the deepest frame of its stack that a marker names decides. Waiting
# (a thread blocked on a lock, a queue or the event loop's select) is left out of the shares.
WAITING = ("Condition.wait", "Queue.get", "select (selectors.py)", "sleep", "Event.wait", "SimpleQueue.get")
WAITING += ("Engine._route_loop (", "Engine._fold_loop (", "_keep_counting (")  # leaves blocked in C calls
CATEGORIES = (
    ("encoding queries", ("encode_queries (", "OnnxEncoder.encode (", "StaticEncoder.encode (")),
    ("storing route rows (SQLite)", ("Store.add_routes (", "RouteLog._loop (")),
    ("explanation", ("explanation_of (", "Engine._explanation (")),
    ("scoring (Router.route)", ("Router.route (",)),
    ("request parsing and validation", ("solve_dependencies (", "request_body_to_args (", "Request.json (")),
    ("API key and rate limit", ("principal (gmtrouter/serve/deps.py",)),
    ("the endpoint's checks (deps.py)", ("gmtrouter/serve/deps.py",)),
    ("response serialisation", ("route_out (", "serialize_response (", "jsonable_encoder (", "JSONResponse")),
    ("metrics (prometheus)", ("gmtrouter/serve/metrics.py", "prometheus_client/", "LimitAndMeasure")),
    ("queueing to the route worker", ("Engine.route (", "_call_soon (", "_settle (")),
    ("the console's running totals (ui/tally.py)", ("gmtrouter/serve/ui/tally.py",)),
)
FALLBACKS = (
    ("route worker, other", "Engine._route_loop"),
    ("HTTP server and event loop (uvicorn, starlette, asyncio)", "Runner.run"),
)


def categorise(frames: list[str]) -> str | None:
    """The category of one sampled stack (root first), None while the thread waits."""
    if any(marker in frames[-1] for marker in WAITING):
        return None
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return next((name for name, marker in FALLBACKS if any(marker in f for f in frames)), "other threads")


def profile_table(raw: Path) -> list[dict]:
    """Shares of the server's busy samples by category, from a py-spy raw (collapsed stacks) file."""
    totals: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        category = categorise(stack.split(";"))
        if category is not None:
            totals[category] = totals.get(category, 0) + int(count)
    busy = max(1, sum(totals.values()))
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [{"category": name, "share": round(count / busy, 3), "samples": count} for name, count in ranked]


def profiled(workdir: Path, plan: dict, pid: int) -> list[dict]:
    """One more cached closed loop with py-spy sampling the server, apart from the measured phases because
    sampling slows the server: where its busy time goes (`profile_table`)."""
    raw = workdir / "profile-cached.txt"
    spy = subprocess.Popen(
        [
            shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    run_phase(workdir, plan)
    spy.send_signal(2)  # py-spy writes its file on SIGINT
    spy.wait(timeout=60)
    return profile_table(raw)


def server_histogram(url: str, endpoint: str = "/v1/route") -> dict[float, float]:
    """Cumulative bucket counts of the server's own latency histogram for one endpoint (from /metrics)."""
    buckets: dict[float, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("gmtrouter_request_seconds_bucket{") and f'endpoint="{endpoint}"' in line:
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def server_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, str]:
    """Upper bounds of the p50 and p99 the server itself measured between two scrapes (bucket resolution)."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    out = {}
    for name, q in (("server_p50_ms", 0.5), ("server_p99_ms", 0.99)):
        bound = next((b for b, count in delta.items() if total and count >= q * total), float("inf"))
        out[name] = f"<= {bound * 1000:g}" if bound != float("inf") else "> 30000"
    return out


def prepare_model(args: argparse.Namespace, workdir: Path) -> tuple[Path, list, str]:
    sys.path.insert(0, str(REPO))
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records

    records = prepare("mt-bench", Path(args.data_dir) / "mt_bench")
    data = workdir / "mt_bench.jsonl"
    write_records(data, records)
    if args.model:
        return Path(args.model), records, "given"
    layer = "hgt" if importlib.util.find_spec("gmtrouter.model.hgt") else "pyg-hgt"
    extra = [f"--encoder={args.encoder}"] if args.encoder else []
    extra += [f"--set={setting}" for setting in args.set]
    slug = "".join(c if c.isalnum() or c in "=.-" else "_" for c in "_".join(a.lstrip("-") for a in extra))
    model = workdir / (f"model-{slug}" if slug else "model")  # one trained model per encoder and settings
    if not (model / "config.json").is_file():
        command = [sys.executable, "-m", "gmtrouter", "train", "--data", str(data), "-o", str(model), *extra]
        command += ["--set", f"steps={args.steps}", "--set", "progress=false", "--set", f"layer={layer}"]
        print("training:", " ".join(command[1:]), file=sys.stderr)
        subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    return model, records, layer


def reads_text(model: Path) -> bool:
    """Whether routing with the model reads a query's vector (else a new query is not encoded at all)."""
    from gmtrouter.api import Router

    return Router.load(model).context.needs_query_vector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    driver = sub.add_parser("drive")
    driver.add_argument("--plan", required=True)
    table = sub.add_parser("profile-table", help="the profile table of a py-spy raw file")
    table.add_argument("raw", type=Path)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "runs" / "serve-bench"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default="", help="serve this model folder instead of training one")
    parser.add_argument("--warmup", type=int, default=200, help="route requests before the measured phases")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000, help="per route phase")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per phase")
    parser.add_argument("--rate", type=float, default=200.0, help="offered req/s of the paced cached phase")
    parser.add_argument("--new-rate", type=float, default=20.0, help="offered req/s of the paced new-query phase")
    parser.add_argument("--only", default="new,cached,feedback", help="phases to run: new, cached, feedback")
    parser.add_argument("--encoder", default="", help="text encoder of the trained model (default: the router's own)")
    parser.add_argument("--set", action="append", default=[], help="router setting key=value for training")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the cached closed loop")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000, help="feedback events per writer")
    args = parser.parse_args()
    if args.command == "drive":
        drive(args)
        return
    if args.command == "profile-table":
        print(profile_markdown(profile_table(args.raw)))
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
        wait_healthy(url, server)
        results: dict[str, object] = {"layer": layer, "steps": args.steps, "concurrency": args.concurrency}
        results.update(encoder=args.encoder or "default", settings=args.set, reads_query_vector=reads_text(model))
        base = {"url": url, "users": users, "limit": args.seconds, "concurrency": args.concurrency}
        fresh = iter(f"{q} (request {uuid.uuid4().hex[:8]})" for q in questions * 400)
        run_phase(workdir, {**base, "phase": "warmup", "queries": questions, "total": args.warmup})
        phases = set(args.only.split(","))
        results["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
        for name, rate in (("route_new_queries", 0.0), ("route_new_queries_paced", args.new_rate)):
            if "new" not in phases:
                break
            distinct = [next(fresh) for _ in range(args.requests)]
            plan = {**base, "phase": name, "queries": distinct, "total": args.requests, "rate": rate}
            results[name] = measured(workdir, plan, url, server.pid)
        pool = questions[:80]
        run_phase(workdir, {**base, "phase": "prime", "queries": pool, "total": len(pool)})
        for name, rate in (("route_cached_queries", 0.0), ("route_cached_queries_paced", args.rate)):
            if "cached" not in phases:
                break
            plan = {**base, "phase": name, "queries": pool, "total": args.requests, "rate": rate}
            results[name] = measured(workdir, plan, url, server.pid)
        if args.profile and "cached" in phases:
            plan = {**base, "phase": "profile", "queries": pool, "total": args.requests, "rate": 0.0}
            results["profile"] = profiled(workdir, plan, server.pid)
        results["load_average_after_routes"] = [round(x, 2) for x in os.getloadavg()]
        if "feedback" in phases:
            results.update(feedback_phase(args, workdir, base, questions, llms, db, url, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps(results, indent=2))
    print(markdown(results))
    if "profile" in results:
        print(profile_markdown(results["profile"]))


def feedback_phase(
    args: argparse.Namespace,
    workdir: Path,
    base: dict,
    questions: list[str],
    llms: list[str],
    db: Path,
    url: str,
    pid: int,
) -> dict:
    """The writers' burst, then every stored row counted, then the wait until all of it is live."""
    results: dict[str, object] = {}
    feedback = {**base, "phase": "feedback", "queries": questions, "llms": llms}
    feedback.update(writers=args.writers, events=args.events, limit=max(args.seconds, 600.0))
    cpu = cpu_seconds(pid)
    results["feedback"] = run_phase(workdir, feedback)
    used = cpu_seconds(pid) - cpu
    results["feedback"]["server_cpu_ms_per_request"] = round(1000 * used / max(1, results["feedback"]["requests"]), 2)
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
    return results


def profile_markdown(rows: list[dict]) -> str:
    lines = ["| where (cached route, closed loop) | share of the server's busy samples |", "| --- | ---: |"]
    return "\n".join(lines + [f"| {row['category']} | {row['share']:.1%} |" for row in rows])


def markdown(results: dict) -> str:
    lines = [
        "| phase | offered req/s | requests | errors | req/s | p50 ms | p95 ms | p99 ms | server p50 ms "
        "| server p99 ms | server CPU ms/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (
        ("route_new_queries", "/v1/route, new queries (embedded)"),
        ("route_new_queries_paced", "/v1/route, new queries (embedded)"),
        ("route_cached_queries", "/v1/route, cached queries"),
        ("route_cached_queries_paced", "/v1/route, cached queries"),
        ("feedback", "/v1/feedback, concurrent writers"),
    ):
        if name not in results:
            continue
        r = results[name]
        offered = r.get("offered_per_second", "closed loop")
        cells = [label, offered, r["requests"], r["errors"], r["per_second"]]
        cells += [r["p50_ms"], r.get("p95_ms", ""), r["p99_ms"]]
        cells += [r.get("server_p50_ms", ""), r.get("server_p99_ms", ""), r.get("server_cpu_ms_per_request", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
