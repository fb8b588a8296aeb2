"""Page load times of the web console (/ui) with 10,000 stored feedback events.

    HF_HUB_OFFLINE=1 python -m benchmarks.console_load --data-dir ../shared/data --out runs/console-bench

Trains (once) the model of benchmarks/serve_load.py (MT-Bench, the default text encoder, --steps steps), starts
`gmtrouter serve` as a child process with a fresh SQLite file, and fills it through the API from 8 concurrent
clients: --events routes of MT-Bench users and questions, then feedback on each (thumbs, pairwise and rating in
turn); it waits until all of it is live in the router. Then, for each console page, it times --repeat sequential
requests from a signed-in client (the full response over loopback, after one warm-up) and, where Chromium is
installed, --browser-repeat browser loads (navigation start to the load event, headless Chromium through
Playwright). Results print as JSON and as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks.serve_load import ADMIN, REPO, free_port, percentile, prepare_model, wait_healthy

PAGES = ("/ui", "/ui/users", "/ui/users/{user}", "/ui/decisions", "/ui/decisions/{route}", "/ui/try", "/ui/model")


async def fill(url: str, users: list[str], questions: list[str], events: int, clients: int = 8) -> list[str]:
    """Route `events` requests through the API, then give feedback on each (thumbs, pairwise, rating in turn);
    returns the route ids. Feedback comes after all routes, so that no route waits for a fold of feedback."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    routes: list[tuple[int, dict]] = []

    async def route_loop(http: httpx.AsyncClient, numbers: Iterator[int]) -> None:
        for n in numbers:
            user, question = users[n % len(users)], questions[(n * 7) % len(questions)]
            body = {"user": user, "messages": [{"role": "user", "content": question}], "cost_weight": (n % 4) * 0.5}
            routes.append((n, (await http.post("/v1/route", json=body)).raise_for_status().json()))

    async def feedback_loop(http: httpx.AsyncClient, todo: Iterator[tuple[int, dict]]) -> None:
        for n, route in todo:
            ranked = [r["llm"] for r in route["ranking"]]
            kind = ("thumbs", "pairwise", "rating")[n % 3]
            feedback = {"route_id": route["route_id"], "kind": kind}
            if kind == "thumbs":
                feedback["thumbs"] = "up" if n % 5 else "down"
            elif kind == "pairwise":
                feedback.update(a=ranked[0], b=ranked[1], winner="a" if n % 4 else "b")
            else:
                feedback["rating"] = (n % 11) / 10
            (await http.post("/v1/feedback", json=feedback)).raise_for_status()

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as http:
        numbers = iter(range(events))
        await asyncio.gather(*(route_loop(http, numbers) for _ in range(clients)))
        todo = iter(sorted(routes, key=lambda item: item[0]))
        await asyncio.gather(*(feedback_loop(http, todo) for _ in range(clients)))
    return [route["route_id"] for _, route in sorted(routes, key=lambda item: item[0])]


def time_pages(url: str, paths: list[str], repeat: int) -> dict[str, dict[str, float]]:
    """Median and p95 wall time of signed-in GETs of each page (after one warm-up), and the first load."""
    out = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/ui/login", data={"key": ADMIN}).status_code == 303, "signing in failed"
        for path in paths:
            times = []
            for _ in range(repeat + 1):
                started = time.perf_counter()
                answer = client.get(path)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
            out[path] = {
                "first_ms": round(1000 * times[0], 1),
                "median_ms": round(1000 * statistics.median(times[1:]), 1),
                "p95_ms": round(1000 * percentile(times[1:], 95), 1),
                "bytes": len(answer.content),
            }
        tries = []
        for _ in range(repeat):
            started = time.perf_counter()
            body = {"user": "", "query": "Write a haiku about rain", "cost_weight": 0.5}
            client.post("/ui/api/try", json=body).raise_for_status()
            tries.append(time.perf_counter() - started)
        out["POST /ui/api/try"] = {
            "median_ms": round(1000 * statistics.median(tries), 1),
            "p95_ms": round(1000 * percentile(tries, 95), 1),
        }
    return out


def browser_loads(url: str, paths: list[str], repeat: int) -> dict[str, float] | None:
    """Median navigation-to-load-event time of each page in headless Chromium, if it is installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{url}/ui/login")
        page.fill("#key", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/ui")
        for path in paths:
            loads = []
            for _ in range(repeat + 1):
                page.goto(f"{url}{path}", wait_until="load")
                loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            out[path] = round(statistics.median(loads[1:]), 1)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "runs" / "console-bench"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--events", type=int, default=10_000, help="routes, each with one feedback")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--browser-repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="time the pages over the database of the last run")
    args = parser.parse_args()
    workdir = Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    model, records, _layer = prepare_model(args, workdir)
    users = sorted({r.user for r in records})
    questions = sorted({r.query for r in records})
    reuse = args.reuse and (workdir / "console.db").is_file()
    for stale in [] if reuse else workdir.glob("console.db*"):
        stale.unlink()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GMTROUTER_ADMIN_KEY": ADMIN, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(model), "--port", str(port)]
    command += ["--db", f"sqlite:///{workdir / 'console.db'}", "--log-level", "warning"]
    command += ["--report", str(REPO / "docs" / "results.md")]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        wait_healthy(url, server)
        started = time.perf_counter()
        if reuse:
            with httpx.Client(base_url=url, timeout=60) as client:
                client.post("/ui/login", data={"key": ADMIN})
                last = client.get("/ui/decisions").text.split('href="/ui/decisions/', 1)[1].split('"', 1)[0]
            route_ids = [last]
        else:
            route_ids = asyncio.run(fill(url, users, questions, args.events))
        filled = time.perf_counter() - started
        while (health := httpx.get(f"{url}/healthz", timeout=30).json())["pending_changes"]:
            time.sleep(1)  # time the pages once every feedback is live in the router, as in service use
        folded = time.perf_counter() - started - filled
        paths = [p.format(user=users[0], route=route_ids[-1]) for p in PAGES]
        results = {
            "events": args.events,
            "reused_database": reuse,
            "fill_seconds": round(filled, 1),
            "fold_wait_seconds": round(folded, 1),
            "history_records": health["history_records"],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "pages": time_pages(url, paths, args.repeat),
            "browser_load_ms": browser_loads(url, paths, args.browser_repeat),
        }
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps(results, indent=2))
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| page | first ms | median ms | p95 ms | browser load ms (median) |\n| --- | ---: | ---: | ---: | ---: |")
    browser = results["browser_load_ms"] or {}
    for path, row in results["pages"].items():
        print(
            f"| `{path}` | {row.get('first_ms', '')} | {row['median_ms']} | {row['p95_ms']} | {browser.get(path, '')} |"
        )


if __name__ == "__main__":
    main()
