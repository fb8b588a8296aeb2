"""The online benchmark's markdown report: how the world works, one section per scenario (tables over seeds,
paired differences, figures), ratings instead of thumbs, the service check, what could not run, and speed."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from gmtrouter import __version__
from gmtrouter.bench.aggregate import Estimate
from gmtrouter.bench.online.config import OnlineConfig, Plan
from gmtrouter.bench.online.jobs import EPSILON, LINUCB_ALPHA, LINUCB_RIDGE, POLICIES, WIN_RATE_SHRINK
from gmtrouter.bench.online.metrics import DRIFT_STEP, DRIFT_TOLERANCE, DRIFT_WINDOW, EARLY, RECENT
from gmtrouter.bench.online.plots import regret_figure, rolling_figure
from gmtrouter.bench.online.scenarios import OFFLINE_RECORDS, OFFLINE_USERS, SCENARIOS
from gmtrouter.bench.online.summary import ROLLING, Summary
from gmtrouter.bench.report import git_commit, markdown_table
from gmtrouter.routing.explore import THOMPSON_SCALE
from gmtrouter.utils.atomic import atomic_write

REFERENCE = "win-rate"  # the rule every learning policy is compared with, seed by seed
CHALLENGER = "gmtrouter-explore"
MAIN_COLUMNS = [
    ("gap closed, last 1,000", f"gap_closed.last_{RECENT[0]}"),
    ("gap closed, last 500", f"gap_closed.last_{RECENT[1]}"),
    ("gap closed, rounds 1,001-2,000", "gap_closed.at_2000"),
    ("utility, last 1,000", f"utility.last_{RECENT[0]}"),
    ("utility, last 500", f"utility.last_{RECENT[1]}"),
    ("regret", "regret"),
    ("routes/s", "routes_per_second"),
]
NEWCOMER_COLUMNS = [
    ("its users' routes to it", "newcomer.favoured_share"),
    ("others' routes to it", "newcomer.other_share"),
    ("routes to it where it is best", "newcomer.where_best"),
]
DRIFT_COLUMNS = [
    (f"gap closed, {DRIFT_WINDOW} rounds before", "drift.before"),
    (f"first {DRIFT_WINDOW} after", "drift.after_first_500"),
    (f"next {DRIFT_WINDOW}", "drift.after_next_500"),
    ("rounds to recover", "drift.recovery_rounds"),
]
PAIRED_METRICS = [
    ("gap closed, last 1,000", f"gap_closed.last_{RECENT[0]}"),
    ("rounds 1,001-2,000", "gap_closed.at_2000"),
]


def _fmt(value: Estimate | None, metric: str) -> str:
    if value is None or not math.isfinite(value.mean):
        return "–"
    if metric == "routes_per_second":  # a speed on a shared machine: the mean, an interval would only say noise
        return f"{value.mean:,.0f}"
    digits = 0 if metric in ("regret", "routes_per_second", "drift.recovery_rounds") else 3
    return value.format(digits)


def _cell(summary: Summary, cell: tuple[str, str, str], metric: str) -> str:
    """A table cell: mean and interval over seeds; rounds to recover over the seeds that recovered, with how many."""
    if metric != "drift.recovery_rounds":
        return _fmt(summary.estimate(cell, metric), metric)
    values = summary.values(cell, metric)
    recovered = [v for v in values if math.isfinite(v)]
    if not recovered:
        return f"never (0 of {len(values)})"
    return f"{_fmt(summary.estimate(cell, metric), metric)} ({len(recovered)} of {len(values)})"


def world_section(config: OnlineConfig, plan: Plan) -> list[str]:
    """How the world, the policies and the metrics are defined, from the code's own settings."""
    w = config.world
    matrices = [
        [m.name, str(m.rows), str(len(m.llms)), str(m.categories), ", ".join(m.llms)] for m in plan.matrices.values()
    ]
    return [
        "## The world",
        "",
        f"{w.users} simulated users, {w.rounds:,} rounds (about {w.rounds // w.users} a user), users drawn "
        f"{'uniformly' if w.activity == 'uniform' else 'by activity (an exponential share each)'} each round. "
        "Users are drawn as `gmtrouter data simulate` draws them (docs/simulator.md): an archetype's weights over "
        "the answer's quality, cost, length and rare words, personal variation of the weights, a personal "
        "affinity per LLM and topic interests; so they share the population's and their archetype's tastes and "
        "hold their own. A round's user asks one query: a task (`meta.category`) drawn from their interests, a "
        "matrix row drawn uniformly within it. The policy routes it to one candidate LLM (every LLM that answered "
        "the row) and sees one feedback on that answer:",
        "",
        f"- **thumbs**: up with probability sigmoid((u - b_user) / T), T = {w.temperature:g} (the simulator's "
        "choice temperature), u the answer's true utility and b_user the utility the user expects of an LLM "
        "picked at random for a query of their own mix of tasks, so that a random route gets about half thumbs up;",
        f"- **rating** (the `rating` scenario): sigmoid((u - b_user) / T + e), e ~ N(0, {w.rating_noise:g}^2).",
        "",
        "Both are drawn once per round and LLM, so every policy meets the same users, queries and feedback draws "
        "(paired comparisons). The **attainable oracle** knows each user's taste and the query's task, not whether "
        "this answer is right: it routes to the LLM of the highest expected utility for that user and task (the "
        "mean utility over the task's queries). The **best single LLM in hindsight** is the LLM of the highest "
        "mean utility over all rounds. Utility is the routed answer's true, realised utility.",
        "",
        *markdown_table(["matrix", "queries", "LLMs", "tasks", "LLMs"], matrices),
        "",
        "Scenarios:",
        "",
        *[f"- **{s.name}**: {s.about}." for s in SCENARIOS.values() if s.name in config.scenarios],
        "",
        f"The new LLM (`new-llm`) joins at round {w.change_round:,}: a variant of the matrix LLM of median "
        "population utility (the lower of two middle ones), with its answers and every user's affinity for it, that "
        f"the users of one archetype (drawn per seed) like {w.newcomer_boost:g} more and every other user "
        f"{w.newcomer_penalty:g} less (a model tuned for one group): the best for about a fifth of the users. At the "
        "same round in the drift scenario the LLM with the highest mean utility so far degrades: its answers' "
        f"quality, realised and expected, is scaled by {1 - w.degradation:g}"
        + (" (it is never right any more, as after a broken release)" if w.degradation == 1 else "")
        + f". The warm start's logs are side-by-side votes of {OFFLINE_USERS} other users of the "
        f"same population ({OFFLINE_RECORDS} records each, as `gmtrouter data simulate` writes them; one set per "
        "matrix, the same for every seed, so that one model is trained per matrix); LinUCB and the win-rate rule "
        "count every vote's response as one observation, gmtrouter starts from a model "
        "`gmtrouter train` fitted on them.",
        "",
        "Policies:",
        "",
        "- `gmtrouter-explore`: gmtrouter routing with its own exploration (posterior sampling, the personal parts "
        f"drawn at {THOMPSON_SCALE:g} of their width: `thompson_scale`), through "
        "`gmtrouter.api.Router` (`route`, then `observe` of a one-response record: rating 1.0 for a thumb up, 0.0 "
        "down, or the rating);",
        "- `gmtrouter-greedy`: the same, always the top of the ranking;",
        f"- `gmtrouter-epsilon`: gmtrouter greedy, except that {EPSILON:.0%} of the rounds go to a uniformly drawn "
        "candidate;",
        f"- `win-rate`: the shrunk per-user win-rate rule, greedy: the population's share of thumbs up per LLM "
        f"(Laplace-smoothed), each user's share shrunk toward it by {WIN_RATE_SHRINK:g} pseudo-observations;",
        f"- `linucb`: LinUCB on the query's text embedding ({config.encoder}) and a constant, one ridge model "
        f"(ridge {LINUCB_RIDGE:g}) per LLM, alpha {LINUCB_ALPHA:g} (PILOT-style, arXiv 2508.21141; it knows queries, "
        "not users);",
        "- `best-single` and `oracle` as above.",
        "",
        "Metrics, per run, then mean and 95% t-interval over seeds: **share of the gap closed** over a window = "
        "(U_policy - U_best_single) / (U_oracle - U_best_single) of the window's mean utilities (1 for the oracle, 0 "
        f"for the best single LLM), over the last {RECENT[0]:,} and {RECENT[1]} rounds and over rounds "
        f"{EARLY[0] + 1:,}-{EARLY[1]:,}; mean utility; **regret**, the summed utility the oracle would have added; "
        "**routes/s**, rounds over the loop's wall time (choose, feedback, learn; starting a policy not counted). "
        f"New LLM, over the last {RECENT[0]:,} rounds: the share of routes to it of the users for whom it is the "
        "oracle's choice in most of their rounds after it joined (its users), of the other users, and of the "
        f"rounds where it is the oracle's choice. Drift: the share of the gap closed over the {DRIFT_WINDOW} "
        "rounds before the degradation (against the best single LLM of the rounds before) and after it (against "
        f"the best single LLM of the rounds after); rounds to recover: the first multiple of {DRIFT_STEP} rounds "
        f"after the change from which the share over the next {DRIFT_WINDOW} rounds is within {DRIFT_TOLERANCE:g} "
        "of the level before, over the seeds where that happens within the run (how many, in brackets).",
        "",
    ]


def _table(summary: Summary, matrix: str, scenario: str, columns: list[tuple[str, str]]) -> list[str]:
    rows = []
    for policy in (p for p in POLICIES if p in summary.policies(matrix, scenario)):
        cell = (matrix, scenario, policy)
        status = summary.cell_status(cell)
        seeds = len(summary.seeds(cell))
        if not seeds:  # the reason is in the section on what did not run
            rows.append([policy, "–", status.split(":")[0], *["–"] * (len(columns) - 1)])
            continue
        rows.append([policy, str(seeds), *(_cell(summary, cell, metric) for _, metric in columns)])
    return markdown_table(["policy", "seeds", *(title for title, _ in columns)], rows)


def _paired(summary: Summary, matrix: str, scenario: str) -> list[str]:
    """Every learning policy minus the win-rate rule (and minus gmtrouter with exploration, where it ran)."""
    policies = [p for p in POLICIES if p in summary.policies(matrix, scenario)]
    rows = []
    for reference in (REFERENCE, CHALLENGER):
        ref = (matrix, scenario, reference)
        if reference not in policies or not summary.seeds(ref):
            continue
        for policy in (p for p in policies if p != reference and p not in ("oracle", "best-single")):
            cell = (matrix, scenario, policy)
            values = [summary.paired(cell, ref, metric) for _, metric in PAIRED_METRICS]
            if all(v is None for v in values):
                continue
            rows.append(
                [
                    f"{policy} - {reference}",
                    *(_fmt(v, metric) for v, (_, metric) in zip(values, PAIRED_METRICS, strict=True)),
                ]
            )
    if not rows:
        return []
    return [
        "",
        "Paired differences over seeds (mean and 95% t-interval of the per-seed difference; an interval that "
        "excludes 0 is a difference the seeds agree on):",
        "",
        *markdown_table(["policies", *(title for title, _ in PAIRED_METRICS)], rows),
    ]


def _figures(summary: Summary, scenario: str, report_dir: Path) -> list[str]:
    img = report_dir / "img"
    lines = []
    for kind, draw in (("regret", regret_figure), ("gap", rolling_figure)):
        path = draw(summary, scenario, img / f"online-{scenario}-{kind}.png")
        if path is not None:
            caption = (
                "cumulative regret against the oracle"
                if kind == "regret"
                else f"share of the gap closed, rolling {ROLLING} rounds"
            )
            lines += ["", f"![{scenario}: {caption}]({path.relative_to(report_dir).as_posix()})"]
    return lines


def scenario_section(summary: Summary, config: OnlineConfig, scenario: str) -> list[str]:
    lines = [f"## {scenario}", "", f"{SCENARIOS[scenario].about[0].upper()}{SCENARIOS[scenario].about[1:]}."]
    extra = {"new-llm": NEWCOMER_COLUMNS, "drift": DRIFT_COLUMNS}.get(scenario, [])
    for matrix in summary.plan.matrices:
        if not summary.policies(matrix, scenario):
            continue
        facts = summary.world_facts(matrix, scenario)
        said = f"best single LLM in hindsight: {', '.join(facts.get('best_single', [])) or '–'}"
        if facts.get("favoured"):
            share = summary.estimate((matrix, scenario, "oracle"), "newcomer.favoured_users")
            said += f"; the new LLM favoured by: {', '.join(facts['favoured'])} users"
            said += f" (the best for {share.mean:.0%} of the users)" if share else ""
        if facts.get("degraded"):
            said += f"; degraded: {', '.join(facts['degraded'])}"
        lines += ["", f"### {matrix}", "", f"{said}.", ""]
        lines += _table(summary, matrix, scenario, MAIN_COLUMNS)
        if extra:
            lines += ["", *_table(summary, matrix, scenario, extra)]
        lines += _paired(summary, matrix, scenario)
    lines += _figures(summary, scenario, config.report.parent)
    return [*lines, ""]


def http_section(http: dict[str, Any] | None) -> list[str]:
    lines = ["## The service check", ""]
    if http is None:
        return [*lines, "Not run: it routes gmtrouter greedy from the warm start, which this plan leaves out.", ""]
    if http["status"] != "ok":
        return [*lines, f"{http['label']}: {http['status']} ({http['reason']}).", ""]
    return [
        *lines,
        f"{http['label']}: the first {http['rounds']:,} rounds through `gmtrouter serve` (`/v1/route`, then "
        f"`/v1/feedback` with kind thumbs, admin key, SQLite store) against the same rounds of the in-process run. "
        f"The two chose the same LLM in **{http['agreement']:.1%}** of the rounds; mean utility "
        f"{http['utility_service']:.3f} through the service, {http['utility_in_process']:.3f} in process; "
        f"{http['routes_per_second_service']:.1f} routes/s through the service (route and feedback, each waiting "
        f"for the fold of the user's last feedback) against {http['routes_per_second_in_process']:.1f} in "
        f"process (the in-process run's mean over all its rounds). The service took "
        f"{http['service_start_seconds']:.0f} s to start.",
        "",
    ]


def unavailable_section(summary: Summary) -> list[str]:
    rows = sorted(
        {(c[2], c[1], status) for c in summary.cells() if (status := summary.cell_status(c)) != "ok"},
    )
    if not rows:
        return []
    lines = ["## What did not run", ""]
    return lines + markdown_table(["policy", "scenario", "why"], [list(r) for r in rows]) + [""]


def speed_section(summary: Summary) -> list[str]:
    rows = []
    for policy in POLICIES:
        runs = [r for (c, _), r in summary.runs.items() if c[2] == policy]
        if not runs:
            continue
        speeds = sorted(r.metrics["routes_per_second"] for r in runs)
        starts = sorted(r.metrics["start_seconds"] for r in runs)
        rows.append(
            [
                policy,
                str(len(runs)),
                f"{speeds[len(speeds) // 2]:,.0f}",
                f"{speeds[0]:,.0f}-{speeds[-1]:,.0f}",
                f"{starts[len(starts) // 2]:.1f}",
            ]
        )
    return [
        "## Speed",
        "",
        "Routes per second of the whole loop (choose, feedback, learn), per run; starting a policy (loading a "
        "model, the warm start) is counted apart. Jobs ran side by side on a shared machine, so these are noisy.",
        "",
        *markdown_table(["policy", "runs", "routes/s (median)", "range", "start s (median)"], rows),
        "",
    ]


def write_report(config: OnlineConfig, plan: Plan, info: dict[str, Any], http: dict[str, Any] | None) -> Path:
    """Write the report (and its figures into img/ beside it); returns its path."""
    summary = Summary(plan)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info["started"]))
    commit = git_commit()
    seeds = ", ".join(map(str, config.seeds))
    lines = [
        "# Online benchmark: learning from the one answer a user sees",
        "",
        f"Written by `gmtrouter bench --online` on {date}, gmtrouter {__version__}"
        + (f" (git {commit})" if commit else "")
        + ". The same command writes it again (finished jobs are reused):",
        "",
        "```",
        info["command"],
        "```",
        "",
        f"Seeds {seeds}. Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
        f"{platform.python_version()}), {config.workers} job(s) at a time, one torch and one BLAS thread each. "
        f"This run took {info['wall_seconds'] / 60:.1f} min and ran {info['ran']} jobs; {info['reused']} finished "
        "jobs were reused from earlier runs with the same key. The finished jobs' own times (starting the policy "
        f"and the loop) add up to {summary.job_seconds() / 60:.1f} min. The machine's load average was "
        f"{info['load'][0]:.1f} at the start and {info['load'][1]:.1f} at the end; jobs that ran while other work "
        "loaded it ran slower (docs/benchmarks.md has speeds measured on an idle machine).",
        "",
        *world_section(config, plan),
    ]
    for scenario in config.scenarios:
        lines += scenario_section(summary, config, scenario)
    lines += http_section(http) + unavailable_section(summary) + speed_section(summary)
    with atomic_write(config.report, "w") as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return config.report
