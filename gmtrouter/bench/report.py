"""The benchmark report (Markdown): how it was made, one section per dataset with tables and plots, resources.

Tables show the mean and 95% t-interval over seeds; the best mean of each column is in bold (every mean that
rounds to the best). Reference rows (the simulator's true utilities; in worlds of taste communities, the Bayes
rule that knows the communities) are in italics and never bold.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmtrouter.bench import narrative, plots
from gmtrouter.bench.aggregate import Estimate, Results
from gmtrouter.bench.datasets import BenchData
from gmtrouter.bench.plan import SPLIT_NAMES, BenchConfig, Job, Skipped, Variant
from gmtrouter.bench.tradeoff import COST_WEIGHTS
from gmtrouter.utils.version import __version__

TABLE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 5.0)
# The reference rows under the k-shot table: the field of each evaluation, and the row's title.
REFERENCES = (
    ("oracle", "oracle: the simulator's true utilities"),
    ("community_posterior", "community posterior: the Bayes rule that knows the communities"),
    ("community_taste", "community taste: the same rule knowing the tastes by LLM and task, not the answers"),
)


@dataclass(frozen=True)
class RunInfo:
    """How this report came about: the command, when, how long, and what was reused."""

    command: str
    started: float
    wall_seconds: float
    jobs_run: int
    jobs_reused: int
    notes: Sequence[str]
    load: tuple[float, float] | None = None  # 1-minute load average at the start and at the end of the run


@dataclass(frozen=True)
class Column:
    title: str
    path: str
    higher_is_better: bool = True
    digits: int = 3


KNOWN_COLUMNS = (
    Column("accuracy", "evaluations.0.accuracy"),
    Column("AUC", "evaluations.0.auc"),
    Column("per-user AUC p10", "evaluations.0.per_user.auc.p10"),
    Column("ms / route (median)", "latency.median_ms", higher_is_better=False, digits=2),
)
QUERY_COLUMNS = KNOWN_COLUMNS[:3]
CONVERSATION_COLUMNS = (
    Column("accuracy, turns >= 2", "conversation.accuracy"),
    Column("switch rate", "conversation.switch_rate", digits=3),
    Column("utility of the pick", "conversation.utility"),
)
RESOURCE_COLUMNS = (
    Column("train s", "train_seconds", higher_is_better=False, digits=1),
    Column("route ms median", "latency.median_ms", higher_is_better=False, digits=2),
    Column("route ms p95", "latency.p95_ms", higher_is_better=False, digits=2),
    Column("fitted numbers", "params", higher_is_better=False, digits=0),
    Column("peak memory MB", "peak_rss_mb", higher_is_better=False, digits=0),
)


def _bold_best(cells: dict[str, Estimate | None], column: Column) -> dict[str, str]:
    """Format each cell; bold those whose rounded mean equals the best rounded mean."""
    shown = {v: e.format(column.digits) if e is not None else "–" for v, e in cells.items()}
    means = {v: round(e.mean, column.digits) for v, e in cells.items() if e is not None}
    if len(means) > 1:
        best = max(means.values()) if column.higher_is_better else min(means.values())
        for variant, mean in means.items():
            if mean == best:
                shown[variant] = f"**{shown[variant]}**"
    return shown


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _status(results: Results, dataset: str, split: str, variant: str) -> str:
    """'' when every seed finished ok, else e.g. ' (2/5 ok; timeout)'."""
    seeds = results.seeds(dataset, split, variant)
    ok = results.ok(dataset, split, variant)
    if len(ok) == len(seeds):
        return ""
    statuses = sorted(
        {results.by_job.get((dataset, split, variant, s), {}).get("status", "not run") for s in seeds if s not in ok}
    )
    return f" ({len(ok)}/{len(seeds)} ok; {', '.join(statuses)})"


def metric_table(results: Results, dataset: str, split: str, columns: Sequence[Column]) -> list[str]:
    variants = results.variants(dataset, split)
    per_column = [_bold_best({v: results.estimate(dataset, split, v, c.path) for v in variants}, c) for c in columns]
    rows = [[f"{v}{_status(results, dataset, split, v)}", *(cells[v] for cells in per_column)] for v in variants]
    return markdown_table(["router", *(c.title for c in columns)], rows)


def known_table(results: Results, dataset: str) -> list[str]:
    return _with_oracle(results, dataset, "record", KNOWN_COLUMNS)


def new_query_table(results: Results, dataset: str) -> list[str]:
    return _with_oracle(results, dataset, "query", QUERY_COLUMNS)


def new_topic_table(results: Results, dataset: str) -> list[str]:
    return _with_oracle(results, dataset, "category", QUERY_COLUMNS)


def _with_oracle(results: Results, dataset: str, split: str, columns: Sequence[Column]) -> list[str]:
    """The metric table (accuracy and AUC first) with the simulator oracle's row, where the data has one."""
    lines = metric_table(results, dataset, split, columns)
    oracle = [results.shared(dataset, split, f"evaluations.0.oracle.{m}") for m in ("accuracy", "auc")]
    if oracle[0] is not None:
        cells = [f"*{e.format()}*" if e is not None else "–" for e in oracle]
        rest = " – |" * (len(columns) - 2)
        lines.append(f"| *oracle: the simulator's true utilities* | {cells[0]} | {cells[1]} |{rest}")
    return lines


def conversation_table(results: Results, dataset: str) -> list[str]:
    """Later turns of known users (switch cost 0), with the oracle's row; [] where no scored turn follows a
    known previous one."""
    variants = [
        v for v in results.variants(dataset, "record") if results.values(dataset, "record", v, "conversation.records")
    ]
    if not variants:
        return []
    per_column = [
        _bold_best({v: results.estimate(dataset, "record", v, c.path) for v in variants}, c)
        for c in CONVERSATION_COLUMNS
    ]
    # fewer switches is not better in itself: the switch rate is shown, never bolded
    per_column[1] = {
        v: e.format(3) if (e := results.estimate(dataset, "record", v, "conversation.switch_rate")) else "–"
        for v in variants
    }
    rows = [[v, *(cells[v] for cells in per_column)] for v in variants]
    lines = markdown_table(["router", *(c.title for c in CONVERSATION_COLUMNS)], rows)
    oracle = [
        results.shared(dataset, "record", f"conversation.oracle.{m}") for m in ("accuracy", "switch_rate", "utility")
    ]
    if oracle[2] is not None:
        cells = [f"*{e.format()}*" if e is not None else "–" for e in oracle]
        lines.append(f"| *oracle: the simulator's true utilities* | {' | '.join(cells)} |")
    return lines


def left_out_text(results: Results, dataset: str) -> str:
    """How many new users the k-shot curve leaves out (too few records to score after the largest k)."""
    found = {}
    for variant in results.variants(dataset, "user"):
        for seed, result in results.ok(dataset, "user", variant).items():
            if "users_left_out" in result:
                found[seed] = (result["users_left_out"], result.get("score_after"))
    if not found:
        return ""
    left = [n for n, _ in found.values()]
    after = next(iter(found.values()))[1]
    count = str(left[0]) if min(left) == max(left) else f"{min(left)}–{max(left)}"
    return (
        f"Every k scores the same records: each test user's records after their first {after}. "
        f"Users with {after} records or fewer are left out: {count} per seed."
    )


def kshot_table(results: Results, dataset: str, shots: Sequence[int], metric: str = "accuracy") -> list[str]:
    variants = results.variants(dataset, "user")
    columns = [Column(f"k={k}", f"evaluations.{k}.{metric}") for k in shots]
    per_column = [_bold_best({v: results.estimate(dataset, "user", v, c.path) for v in variants}, c) for c in columns]
    rows = [[f"{v}{_status(results, dataset, 'user', v)}", *(cells[v] for cells in per_column)] for v in variants]
    lines = markdown_table(["router", *(c.title for c in columns)], rows)
    for key, title in REFERENCES:
        reference = [results.shared(dataset, "user", f"evaluations.{k}.{key}.{metric}") for k in shots]
        if any(e is not None for e in reference):
            cells = [f"*{e.format()}*" if e is not None else "–" for e in reference]
            lines.append(f"| *{title}* | " + " | ".join(cells) + " |")
    return lines


def tradeoff_table(results: Results, dataset: str) -> list[str]:
    """GMTRouter's choices at a few cost weights and every single LLM: win rate, cost, utility, shares."""
    curve = {round(p["cost_weight"], 6): p for p in plots.mean_curve(results, dataset, plots.MAIN)}
    single = plots.mean_single(results, dataset)
    if not curve:
        return []
    has_utility = any(p["utility"] is not None for p in curve.values())

    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    rows = []
    for weight in TABLE_WEIGHTS:
        point = curve.get(round(weight, 6))
        if point is None:
            continue
        shares = ", ".join(f"{m} {s:.0%}" for m, s in sorted(point["share"].items(), key=lambda i: -i[1]) if s >= 0.005)
        row = [f"gmtrouter, cost weight {weight:g}", fmt(point["win_rate"], ".3f"), fmt(point["cost"], ".6f")]
        rows.append([*row, *([fmt(point["utility"], ".3f")] if has_utility else []), shares])
    for llm, point in single.items():
        row = [f"always {llm}", fmt(point["win_rate"], ".3f"), fmt(point["cost"], ".6f")]
        rows.append([*row, *([fmt(point["utility"], ".3f")] if has_utility else []), "–"])
    header = ["policy", "win rate", "mean cost (USD)", *(["true utility"] if has_utility else []), "share of requests"]
    return markdown_table(header, rows)


def git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def header(config: BenchConfig, info: RunInfo, data: dict[str, BenchData], results: Results) -> list[str]:
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.started))
    commit = git_commit()
    job_seconds = sum((r.get("wall_seconds") or 0.0) for r in results.by_job.values())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `gmtrouter bench` on {date}, gmtrouter {__version__}"
        + (f" (git {commit})" if commit else "")
        + ". The same command writes it again:",
        "",
        "```",
        info.command,
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python {platform.python_version()}); each job "
        f"ran in its own process with {config.threads} torch thread(s), {config.workers} job(s) at a time. "
        f"This run took {info.wall_seconds / 60:.1f} min of wall time and ran {info.jobs_run} jobs; "
        f"{info.jobs_reused} finished jobs were reused from earlier runs with the same key. "
        f"The jobs' own times add up to {job_seconds / 60:.1f} min."
        + (
            f" The machine's load average was {info.load[0]:.1f} at the start and {info.load[1]:.1f} at the end "
            "(each busy core adds 1; other processes raise it and slow the jobs)."
            if info.load
            else ""
        ),
        "",
        "## Plan",
        "",
    ]
    rows = []
    for name, item in data.items():
        s = item.stats
        rows.append(
            [
                name,
                item.source,
                str(s["records"]),
                str(s["users"]),
                str(s["llms"]),
                str(s["rated_pairs"]),
                str(s["multi_turn_records"]),
                f"`{item.sha256[:16]}`",
            ]
        )
    lines += markdown_table(
        ["dataset", "records from", "records", "users", "LLMs", "rated pairs", "turn > 1", "SHA-256 (first 16)"], rows
    )
    return lines


def plan_text(
    config: BenchConfig, variants: Sequence[Variant], skipped: Sequence[Skipped], notes: Sequence[str]
) -> list[str]:
    seeds = ", ".join(map(str, config.seeds))
    ablation = [v for v in variants if v.ablation]
    lines = [
        "",
        "- **Known users**: each dataset split by record (seeded; about 20% of each user's records to test, every "
        "user keeps at least one training record); the training records are the history the router scores from.",
        f"- **New users**: split by user (20% of users to test, seeded); each router is trained once per split and "
        f"evaluated at k = {', '.join(map(str, config.shots))}: each test user's first k records (file order) are "
        f"shown as history, without retraining; every k scores the same records, each test user's records after "
        f"their first {max(config.shots)}.",
        "- **New queries**: split by query text (whole query texts to test until about 20% of the records are "
        "there, seeded): no test query is in training for any user; the test users' other records are their "
        "history.",
        "- **New topics**: split by category (whole `meta.category` values, MT-Bench's categories or a matrix's "
        "tasks, to test until about 20% of the records are there, seeded): no test topic is in training for any "
        "user; the test users' records on the other topics are their history. Only where the records have two "
        "categories or more.",
        f"- **Seeds** {seeds}: the seed is both the split's and the router's. Tables give the mean and the 95% "
        "t-interval over seeds (mean ± t(0.975, n-1) · sd / √n). Differences between two routers are paired by "
        "seed; one whose interval includes 0 is called not separable.",
        "- **Baselines tune themselves** inside `fit`: each tries its small grid on a validation hold-out of 10% "
        "of each user's training records (the same records for every router at a seed) and keeps the best by "
        "validation AUC; docs/baselines.md lists every grid. GMTRouter and its ablations use their default "
        "settings and stop early on the same hold-out.",
        "- **Routers**: " + ", ".join(f"`{v.name}`" for v in variants if not v.ablation) + ".",
    ]
    if ablation:
        lines.append("- **Ablations** of GMTRouter (its settings, no other change):")
        lines += [
            f"  - `{v.name}` ({', '.join(f'{k}={v!r}' for k, v in v.settings.items())}): {v.about}" for v in ablation
        ]
    extra = [v for v in variants if not v.ablation and v.settings]
    if extra:
        lines.append(
            "- **Extra variants**: " + "; ".join(f"`{v.name}` = {v.router} with {dict(v.settings)}" for v in extra)
        )
    for item in skipped:
        lines.append(f"- Left out: `{item.variant}` on {item.dataset}: {item.reason}.")
    if notes:
        lines.append("- **Reductions to fit the time budget**:")
        lines += [f"  - {note}" for note in notes]
    return lines


def headline(results: Results, datasets: Sequence[str], shots: Sequence[int]) -> list[str]:
    """One row per dataset: the best router and GMTRouter, on known users and on new users at the largest k."""
    k = shots[-1]
    rows = []
    for name in datasets:
        row = [name]
        settings = (
            ("record", "evaluations.0.accuracy"),
            ("user", f"evaluations.{k}.accuracy"),
            ("query", "evaluations.0.accuracy"),
            ("category", "evaluations.0.accuracy"),
        )
        for split, path in settings:
            found = [(v, results.estimate(name, split, v, path)) for v in results.variants(name, split)]
            found = [(v, e) for v, e in found if e is not None]
            best = max(found, key=lambda item: item[1].mean, default=None)
            mine = dict(found).get(plots.MAIN)
            row += [f"{best[0]} {best[1].format()}" if best else "–", mine.format() if mine else "–"]
        rows.append(row)
    header = ["dataset", "best, known users", "gmtrouter, known users", f"best, new users k={k}", f"gmtrouter, k={k}"]
    header += ["best, new queries", "gmtrouter, new queries", "best, new topics", "gmtrouter, new topics"]
    return ["", "## Summary: pairwise accuracy", "", *markdown_table(header, rows)]


def dataset_section(
    name: str, config: BenchConfig, results: Results, variants: Sequence[Variant], report_dir: Path, img_dir: Path
) -> list[str]:
    routers = {v.name: v.router for v in variants}
    lines = ["", f"## {name}", ""]
    parts = [
        narrative.known_users(results, name, routers),
        narrative.ablations(results, name, [v.name for v in variants if v.ablation], config.shots),
        narrative.new_users(results, name, config.shots),
        narrative.new_queries(results, name),
        narrative.new_queries(results, name, "category"),
        narrative.failures(results, name),
    ]
    lines += [f"- {' '.join(part)}" for part in parts if part]
    lines += ["", f"### {SPLIT_NAMES['record'].capitalize()}", ""]
    lines += known_table(results, name)
    if results.variants(name, "user"):
        lines += ["", f"### {SPLIT_NAMES['user'].capitalize()}: pairwise accuracy by k shots", ""]
        left_out = left_out_text(results, name)
        lines += [left_out, ""] if left_out else []
        lines += kshot_table(results, name, config.shots)
    if results.variants(name, "query"):
        lines += ["", f"### {SPLIT_NAMES['query'].capitalize()}", ""]
        lines += new_query_table(results, name)
    if results.variants(name, "category"):
        lines += ["", f"### {SPLIT_NAMES['category'].capitalize()}", ""]
        lines += new_topic_table(results, name)
    conversations = conversation_table(results, name)
    if conversations:
        lines += ["", "### Conversations: turns after a known previous turn (known users)", "", *conversations]
        lines += ["", *(f"- {line}" for line in narrative.conversations(results, name))]
    figures = _figures(name, config, results, report_dir, img_dir)
    trade = tradeoff_table(results, name)
    if trade:
        lines += ["", "### Preference against cost (known users)", "", *trade]
    if figures:
        lines += ["", *figures]
    return lines


def _figures(name: str, config: BenchConfig, results: Results, report_dir: Path, img_dir: Path) -> list[str]:
    slug = name.replace("/", "-")
    ranked = sorted(
        (
            (v, e)
            for v in results.variants(name, "record")
            if v != plots.MAIN and not v.startswith(f"{plots.MAIN}-") and v != "random"
            for e in [results.estimate(name, "record", v, "evaluations.0.accuracy")]
            if e is not None
        ),
        key=lambda item: -item[1].mean,
    )
    compare = ranked[0][0] if ranked else None
    made: list[tuple[str, Path | None]] = [
        ("new users: accuracy against k", plots.kshot_plot(results, name, config.shots, img_dir / f"{slug}-kshot.png")),
        ("known users: per-user AUC", plots.user_auc_plot(results, name, img_dir / f"{slug}-user-auc.png")),
        ("preference against cost", plots.tradeoff_plot(results, name, compare, img_dir / f"{slug}-cost.png")),
        ("accuracy against switch rate", plots.switch_plot(results, name, img_dir / f"{slug}-switch.png")),
    ]
    return [f"![{name}: {title}]({os.path.relpath(path, report_dir)})" for title, path in made if path is not None]


def resources_section(results: Results, datasets: Sequence[str]) -> list[str]:
    lines = [
        "",
        "## Resources",
        "",
        "Known-user split, mean over seeds. Train s: `fit` alone, tuning grid included. Route ms: single "
        "`Router.route` calls (all LLMs as candidates) for 200 held-out requests of known users, after one warm-up "
        "pass so that query embeddings are cached. Fitted numbers: the values in the tensors of `get_state()` "
        "(for knn and the graph baselines this includes stored query embeddings). Peak memory: the job process's "
        "peak resident set, which includes about the libraries every job starts with (see `random`).",
    ]
    for name in datasets:
        lines += ["", f"### {name}", ""]
        lines += metric_table(results, name, "record", RESOURCE_COLUMNS)
    return lines


def failures_section(results: Results) -> list[str]:
    failed = results.failures()
    lines = ["", "## Failed jobs", ""]
    if not failed:
        return [*lines, "None: every planned job finished."]
    rows = []
    for item in failed:
        job = item["job"]
        error = str(item.get("error", "")).replace("|", "\\|")
        rows.append(
            [job["dataset"], SPLIT_NAMES[job["split"]], str(job["seed"]), job["variant"], item["status"], error]
        )
    return lines + markdown_table(["dataset", "setting", "seed", "router", "status", "what happened"], rows)


DEFINITIONS = """
## Definitions

- **Pairwise accuracy** (the contract in docs/architecture.md): over every pair of responses in a held-out
  record whose ratings differ, the share where the router's score order matches the rating order; a
  predicted tie counts as wrong.
- **AUC**: ROC-AUC of the score difference against the label 1[rating_i > rating_j], pairs in record order.
- **Per-user AUC p10**: the 10th percentile, over users with at least 5 held-out pairs, of each user's AUC:
  how well the router serves its worst-served users.
- **Win rate of the chosen response** (cost section): each held-out record is a request whose candidates are
  the LLMs it showed; the router picks the top of score − cost_weight · ln(expected cost / cheapest
  candidate's), as `Router.route` does, with expected costs from the training records. The pick scores 1 when
  its response was rated above the other shown one, 0.5 for a tie, 0 below (with more than two responses: the
  share of the others it beat). Its cost is the picked response's own cost. *Always LLM m* is measured on the
  held-out records that showed m. For synthetic users, *true utility* is the simulator's utility of the picked
  response for that user (docs/simulator.md).
- **Conversations** (known users): the held-out records of turn 2 or later whose previous turn's LLM is known
  (the LLM the conversation went on with: the previous turn's top-rated response, `gmtrouter.data.conversation`).
  *Accuracy, turns >= 2* is pairwise accuracy on them; the *switch rate* the share whose top-scored candidate
  is not the previous turn's LLM; the *utility of the pick* the simulator's true utility of that candidate for
  the user (it includes the user's switching aversion). The plot sweeps `switch_cost`: that many logits are
  taken from every candidate but the previous LLM, as `Router.route` does.
"""


def write_report(
    path: Path,
    config: BenchConfig,
    info: RunInfo,
    data: dict[str, BenchData],
    jobs: Sequence[Job],
    variants: Sequence[Variant],
    skipped: Sequence[Skipped],
    progress: Callable[[str], Any] | None = None,
) -> Path:
    """Write the Markdown report and its figures (into an `img` folder beside it)."""
    from gmtrouter.utils.atomic import atomic_write

    results = Results(jobs, config.out)
    report_dir = path.parent
    img_dir = report_dir / "img"
    lines = header(config, info, data, results)
    lines += plan_text(config, variants, skipped, info.notes)
    lines += headline(results, list(data), config.shots)
    for name in data:
        if progress:
            progress(f"report: {name}")
        lines += dataset_section(name, config, results, variants, report_dir, img_dir)
    lines += resources_section(results, list(data))
    lines += failures_section(results)
    lines += DEFINITIONS.splitlines()
    attribution = (
        "Data: MT-Bench human judgments (CC-BY-4.0, Zheng et al. 2023); FastChat and RouteLLM (Apache-2.0); "
        "GSM8K (MIT, Cobbe et al. 2021); MMLU (MIT, Hendrycks et al. 2021); LLMRouter and PersonalizedRouter "
        "(MIT, ulab-uiuc)."
    )
    lines += ["", attribution]
    with atomic_write(path) as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return path


__all__ = ["COST_WEIGHTS", "RunInfo", "write_report"]
