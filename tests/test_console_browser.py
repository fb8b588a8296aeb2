"""The web console in a real browser (headless Chromium driven by Playwright) against a real `gmtrouter serve`.

The server runs as a child process over the small trained model of the service tests, with feedback stored
through the API beforehand. Needs Debian's Chromium (`apt-get install -y chromium`; Playwright's own browser
download is not used): without it these tests are skipped, unless GMTROUTER_BROWSER_TESTS=required (as in CI),
which turns the skip into a failure. GMTROUTER_SCREENSHOTS=DIR saves a screenshot of each page there
(docs/img holds the ones shown in docs/service.md).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.serve_support import ADMIN, routes_written, served_model, start_server, stop  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("GMTROUTER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
SHOTS = os.environ.get("GMTROUTER_SCREENSHOTS")
PROMPTS = [
    "Write a haiku about rain",
    "Explain the difference between TCP and UDP to a new engineer.",
    "Draft a polite email declining a meeting invitation.",
    "Solve 3x + 7 = 22 and show each step.",
]


def _browser_or_skip() -> None:
    missing = None
    if not Path(CHROMIUM).is_file():
        missing = f"no Chromium at {CHROMIUM}; install it with 'apt-get install -y chromium' to run the browser tests"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright is missing; install the dev extra: pip install -e '.[serve,dev]'"
    if missing:
        if os.environ.get("GMTROUTER_BROWSER_TESTS") == "required":
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, checked before anything is trained or started."""
    _browser_or_skip()
    return CHROMIUM


@pytest.fixture(scope="module")
def live(chromium: str, served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # noqa: F811
    """A served model with stored routes and feedback of eight users; a user key for taste-1."""
    folder = tmp_path_factory.mktemp("console-browser")
    config = folder / "serve.toml"
    config.write_text(f'report = "{REPO / "docs" / "results.md"}"\n', encoding="utf-8")
    process, base = start_server(served_model, f"sqlite:///{folder / 'console.db'}", config=config)
    try:
        with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client:
            routes = {}
            for u in range(8):
                user = f"taste-{u}"
                for i, prompt in enumerate(PROMPTS):
                    body = {"user": user, "messages": [{"role": "user", "content": prompt}], "cost_weight": i * 0.5}
                    answer = client.post("/v1/route", json=body)
                    assert answer.status_code == 200, answer.text
                    route = answer.json()
                    routes.setdefault(user, []).append(route["route_id"])
                    if i % 3 == 2:
                        continue  # some routes get no feedback
                    ranked = [r["llm"] for r in route["ranking"]]
                    feedback = (
                        {"kind": "thumbs", "thumbs": "up" if (u + i) % 4 else "down"}
                        if i % 2 == 0
                        else {"kind": "pairwise", "a": ranked[0], "b": ranked[1], "winner": "a" if u % 3 else "b"}
                    )
                    answer = client.post("/v1/feedback", json={"route_id": route["route_id"], **feedback})
                    assert answer.status_code == 200, answer.text
            made = client.post("/v1/admin/keys", json={"users": ["taste-1"], "name": "browser test"})
            routes_written(client)  # the pages read route rows, which are committed behind the answers
            yield {"base": base, "routes": routes, "user_key": made.json()["key"]}
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(chromium: str, live: dict) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


class Session:
    """A signed-in browser tab that records console errors and uncaught page errors."""

    def __init__(self, browser, base: str, key: str, width: int = 1280, height: int = 800) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{base}/ui")
        assert self.page.url.startswith(f"{base}/ui/login")  # not signed in yet
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"{base}/ui")

    def open(self, path: str, expect: int = 200):
        answer = self.page.goto(f"{self.base}{path}")
        assert answer is not None and answer.status == expect, f"{path}: {answer and answer.status}"
        return self.page

    def shot(self, name: str, full: bool = True) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=full)

    def close(self) -> None:
        self.context.close()


def test_every_page_signed_in_as_admin(browser, live: dict) -> None:
    tab = Session(browser, live["base"], ADMIN)
    page = tab.page
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("svg.chart rect.bar.routes").count() > 0
    assert page.locator(".hbars .fill").count() >= 3  # traffic per LLM and spend
    tab.shot("overview")

    tab.open("/ui/users")
    assert page.locator("table.list tbody tr").count() >= 8
    page.fill("#q", "taste-3")
    page.click("form.search button")
    page.wait_for_url("**/ui/users?q=taste-3")
    assert page.locator("table.list tbody a").all_inner_texts() == ["taste-3"]
    page.click("text=taste-3")
    page.wait_for_url("**/ui/users/taste-3")
    assert page.locator(".tastes .dot").count() >= 2  # a win rate with its interval per LLM
    assert page.locator("#feedback tbody tr").count() >= 3
    tab.open("/ui/users/taste-5")
    tab.shot("user")

    tab.open("/ui/decisions")
    assert page.locator("table.list tbody tr").count() == 32
    tab.shot("decisions")
    route_id = live["routes"]["taste-5"][1]
    tab.open(f"/ui/decisions/{route_id}")
    assert page.locator("#route-feedback tbody tr").first.inner_text().split("\t")[1].strip() == "pairwise"
    assert page.locator("table.ranking tr.chosen").count() == 1
    tab.shot("decision")

    tab.open("/ui/try?user=taste-5")
    page.wait_for_selector("#try-ranking tbody tr")
    tab.shot("try")

    tab.open("/ui/model")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#benchmark img").count() >= 1
    tab.shot("model")
    assert tab.errors == []
    tab.close()


def test_feedback_through_the_api_shows_on_the_user_page(browser, live: dict) -> None:
    tab = Session(browser, live["base"], ADMIN)
    page = tab.open("/ui/users/taste-6")
    before = int(page.locator("#stored-feedback").inner_text())
    prompt = "Name three uses of a paperclip besides holding paper."
    with httpx.Client(base_url=live["base"], headers=ADMIN_HEADERS, timeout=30) as client:
        route = client.post("/v1/route", json={"user": "taste-6", "messages": [{"role": "user", "content": prompt}]})
        thumbs = {"kind": "thumbs", "route_id": route.json()["route_id"], "thumbs": "up"}
        answer = client.post("/v1/feedback", json=thumbs)
        assert answer.status_code == 200
    deadline = time.monotonic() + 5
    while True:
        page.reload()
        if int(page.locator("#stored-feedback").inner_text()) == before + 1:
            break
        assert time.monotonic() < deadline, "the feedback did not appear on the user page within 5 s"
        time.sleep(0.3)
    assert prompt[:40] in page.locator("#feedback tbody tr").first.inner_text()
    assert tab.errors == []
    tab.close()


def test_try_it_ranks_like_the_route_endpoint(browser, live: dict) -> None:
    tab = Session(browser, live["base"], ADMIN)
    page = tab.open("/ui/try")
    page.wait_for_selector("#try-ranking tbody tr")
    candidates = page.locator("input[name=candidates]")
    llms = [candidates.nth(i).get_attribute("value") for i in range(candidates.count())]
    dropped = llms[-1]
    page.fill("#try-user", "taste-2")
    page.fill("#try-query", PROMPTS[1])
    page.uncheck(f"input[name=candidates][value='{dropped}']")
    page.eval_on_selector("#try-cost", "el => { el.value = '1.5'; el.dispatchEvent(new Event('input')); }")
    assert page.locator("#try-cost-value").inner_text() == "1.5"
    page.click("#try button[type=submit]")
    page.wait_for_function("document.getElementById('try').dataset.state === 'done'")
    assert page.locator("#try-ranking tbody tr").count() == len(llms) - 1
    shown = [row.split("\t")[1].strip() for row in page.locator("#try-ranking tbody tr").all_inner_texts()]
    body = {
        "user": "taste-2",
        "messages": [{"role": "user", "content": PROMPTS[1]}],
        "candidates": [m for m in llms if m != dropped],
        "cost_weight": 1.5,
    }
    routed = httpx.post(f"{live['base']}/v1/route", json=body, headers=ADMIN_HEADERS, timeout=30).json()
    assert shown == [r["llm"] for r in routed["ranking"]]
    assert page.locator("#try-ranking tr.chosen td").nth(1).inner_text() == routed["llm"]
    page.focus("#try-query")  # typing ranks again at once, without leaving the field or pressing a button
    with page.expect_request(lambda request: "/ui/api/try" in request.url and "and more" in (request.post_data or "")):
        page.keyboard.type(" and more")
    assert page.evaluate("document.activeElement.id") == "try-query"
    assert tab.errors == []
    tab.close()


def test_a_user_key_is_refused_another_users_page(browser, live: dict) -> None:
    tab = Session(browser, live["base"], live["user_key"])
    page = tab.open("/ui/users/taste-1")
    assert page.locator("h1").inner_text() == "User taste-1"
    assert page.locator("text=Forget this user").count() == 0  # forgetting from the console is the admin's
    users = tab.open("/ui/users").locator("table.list tbody a").all_inner_texts()
    assert users == ["taste-1"]
    refused = tab.open("/ui/users/taste-2", expect=403)
    assert "may not act for user 'taste-2'" in refused.locator(".error").inner_text()
    tab.open("/ui/decisions?user=taste-2", expect=403)
    tab.open(f"/ui/decisions/{live['routes']['taste-2'][0]}", expect=404)
    tab.close()


def test_readable_at_phone_width(browser, live: dict) -> None:
    tab = Session(browser, live["base"], ADMIN, width=390, height=844)
    for path, name in (("/ui", "phone-overview"), ("/ui/users/taste-5", "phone-user")):
        page = tab.open(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390 px"
        if path == "/ui":  # the time chart drawn for a phone, whole: its y axis is in view
            assert page.locator("svg.chart.only-wide").first.is_hidden()
            axis = page.locator("svg.chart.only-narrow text.tick").first
            assert axis.is_visible() and axis.bounding_box()["x"] >= 0
        tab.shot(name, full=False)
    assert tab.errors == []
    tab.close()
