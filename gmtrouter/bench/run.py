"""One benchmark run from start to report: check the plan, prepare the data, run the jobs, write the report."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gmtrouter.bench.datasets import BenchData, prepare_dataset
from gmtrouter.bench.plan import SWITCH_DATASETS, SWITCH_ROUTERS, BenchConfig, build_plan, check_variants
from gmtrouter.bench.report import RunInfo, write_report
from gmtrouter.bench.runner import Runner, RunSummary
from gmtrouter.data.sim_config import SimConfig


@dataclass(frozen=True)
class BenchOutcome:
    report: Path
    summary: RunSummary
    jobs: int
    wall_seconds: float  # the whole run, data and embeddings included: the figure the report gives


def reduction_notes(config: BenchConfig, full_routers: Sequence[str]) -> list[str]:
    """Where this plan departs from the full protocol, in words for the report."""
    defaults = SimConfig()
    notes = []
    if (config.users, config.records_per_user) != (defaults.users, defaults.records_per_user):
        notes.append(
            f"synthetic datasets simulate {config.users} users x {config.records_per_user} records "
            f"(simulator defaults: {defaults.users} x {defaults.records_per_user}); every other simulator setting "
            f"is its default, seed {config.sim_seed}"
        )
    if config.ablation_seeds is not None and set(config.ablation_seeds) != set(config.seeds):
        notes.append(f"ablations run on seeds {', '.join(map(str, config.ablation_seeds))} only")
    for router, settings in config.overrides.items():
        shown = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        notes.append(f"`{router}` and its variants run with {shown} instead of the defaults")
    left_out = [name for name in full_routers if name not in {v.name for v in config.variants}]
    if left_out:
        notes.append(f"routers left out: {', '.join(left_out)}")
    for dataset in (d for d in config.datasets if d in SWITCH_DATASETS):
        notes.append(
            f"{dataset}: known users only, and only {', '.join(SWITCH_ROUTERS)} (with and without the conversation, "
            "and the rules it must beat); every router's other settings are measured on llmrouter"
        )
    notes.append(f"each job has a budget of {config.timeout:g} s of wall time; a job past it is stopped and reported")
    return notes


def warm_embeddings(config: BenchConfig, data: dict[str, BenchData], console: Console) -> None:
    """Encode every query and response text once, before the jobs, so no job's time includes first-time encoding.

    The encoder's on-disk cache makes this free on later runs; the hashing test encoder needs no cache.
    """
    from gmtrouter.data.schema import read_records
    from gmtrouter.text.base import DEFAULT_ENCODER
    from gmtrouter.text.encoders import get_encoder
    from gmtrouter.text.hashing import HASHING_PREFIX

    name = config.encoder or DEFAULT_ENCODER
    if name.startswith(HASHING_PREFIX):
        return
    texts: set[str] = set()
    for item in data.values():
        for record in read_records(item.path):
            texts.add(record.query)
            texts.update(x.text for x in record.responses if x.text)
    with console.status(f"text embeddings ({name}): {len(texts)} texts, cached after the first run"):
        get_encoder(name).encode(sorted(texts))


def run_bench(
    config: BenchConfig, command: str, console: Console, full_routers: Sequence[str], report: Path
) -> BenchOutcome:
    """Prepare, run what is not finished, and write the report; a failing job never stops the others."""
    started = time.time()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    check_variants(config.variants, config.overrides)
    data: dict[str, BenchData] = {}
    for name in config.datasets:
        with console.status(f"preparing {name}"):
            data[name] = prepare_dataset(name, config)
        item = data[name]
        console.print(
            f"data {name}: {item.stats['records']} records, {item.stats['users']} users -> {item.path}", soft_wrap=True
        )
    warm_embeddings(config, data, console)
    jobs, skipped = build_plan(
        config,
        {n: d.sha256 for n, d in data.items()},
        {n: d.has_response_text for n, d in data.items()},
        {n: d.categories for n, d in data.items()},
    )
    console.print(f"plan: {len(jobs)} jobs ({len(config.datasets)} datasets, {len(config.seeds)} seeds)")
    references = {n: d.community_model for n, d in data.items() if d.community_model is not None}
    summary = Runner(config, {n: d.path for n, d in data.items()}, console, references).run(jobs)
    info = RunInfo(
        command=command,
        started=started,
        wall_seconds=time.time() - started,
        jobs_run=summary.ran,
        jobs_reused=summary.skipped,
        notes=reduction_notes(config, full_routers),
        load=(load_start, os.getloadavg()[0]) if load_start is not None else None,
    )
    with console.status("writing the report"):
        path = write_report(report, config, info, data, jobs, list(config.variants), skipped)
    return BenchOutcome(path, summary, len(jobs), info.wall_seconds)
