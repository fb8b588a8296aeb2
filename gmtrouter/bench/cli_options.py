"""`gmtrouter bench` options to a checked BenchConfig: every bad input is refused here, in one line, before work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmtrouter.bench.plan import (
    ARENA,
    DEFAULT_DATASETS,
    FULL_SEEDS,
    FULL_SHOTS,
    QUICK_ROUTERS,
    QUICK_SEEDS,
    QUICK_SHOTS,
    REAL_DATASETS,
    SYNTHETIC_DATASETS,
    BenchConfig,
    check_variants,
    parse_int_list,
    parse_names,
    parse_value,
    parse_variant,
    registered_variants,
)
from gmtrouter.utils.errors import GmtError

FULL_ABLATION_SEEDS = (0, 1, 2)
FULL_USERS, QUICK_USERS = 100, 40
DEFAULT_REPORT = Path("docs/results.md")


def _datasets(spec: str | None, chatbot_arena: Path | None) -> tuple[str, ...]:
    names = parse_names(spec) if spec is not None else DEFAULT_DATASETS + ((ARENA,) if chatbot_arena else ())
    known = (*REAL_DATASETS, *SYNTHETIC_DATASETS)
    for name in names:
        if name not in known:
            raise GmtError(f"unknown dataset '{name}'; choose from: {', '.join(known)}")
    if not names:
        raise GmtError("--datasets is empty; name at least one dataset")
    if ARENA in names and chatbot_arena is None:
        raise GmtError("chatbot-arena needs its upstream battles file: give --chatbot-arena PATH")
    if chatbot_arena is not None and not chatbot_arena.exists():
        raise GmtError(f"{chatbot_arena}: no such file or folder for --chatbot-arena")
    return names


def _overrides(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--set ROUTER.key=value` pairs by router."""
    overrides: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, eq, value = pair.partition("=")
        router, dot, key = target.partition(".")
        if not eq or not dot or not router or not key:
            raise GmtError(f"--set expects ROUTER.key=value (e.g. gmtrouter.steps=200), got '{pair}'")
        overrides.setdefault(router, {})[key] = parse_value(value)
    return overrides


def bench_config(
    *,
    quick: bool,
    datasets: str | None,
    routers: str | None,
    variants: Sequence[str],
    seeds: str | None,
    ablation_seeds: str | None,
    shots: str | None,
    data_dir: Path,
    chatbot_arena: Path | None,
    out: Path,
    report: Path | None,
    users: int | None,
    records_per_user: int,
    encoder: str | None,
    settings: Sequence[str],
    timeout: float,
    workers: int,
    threads: int,
    retry_failed: bool,
    all_jobs: bool = False,
) -> tuple[BenchConfig, Path, list[str]]:
    """(config, report path, the full plan's router names) from the command line's values."""
    names = _datasets(datasets, chatbot_arena)
    if any(n != ARENA for n in names) and not data_dir.is_dir():
        raise GmtError(f"{data_dir}: no such data folder; point --data-dir at the shared data folder")
    known = registered_variants()
    extra = [parse_variant(spec) for spec in variants]
    clash = [v.name for v in extra if v.name in known]
    if clash:
        raise GmtError(f"--variant name '{clash[0]}' is taken by a router or ablation; choose another name")
    full_routers = list(known)
    chosen = parse_names(routers) if routers is not None else tuple(QUICK_ROUTERS if quick else full_routers)
    chosen = (*chosen, *(v.name for v in extra if v.name not in chosen))
    pool = {**known, **{v.name: v for v in extra}}
    for name in chosen:
        if name not in pool:
            raise GmtError(f"unknown router or variant '{name}'; choose from: {', '.join(pool)}")
    if not chosen:
        raise GmtError("--routers is empty; name at least one router")
    selected = tuple(pool[n] for n in chosen)
    overrides = _overrides(settings)
    check_variants(selected, overrides)
    seed_list = parse_int_list(seeds, "--seeds") if seeds is not None else (QUICK_SEEDS if quick else FULL_SEEDS)
    if ablation_seeds is not None:
        ablation = parse_int_list(ablation_seeds, "--ablation-seeds")
    else:
        ablation = tuple(s for s in seed_list if s in FULL_ABLATION_SEEDS) or seed_list[:1]
    shot_list = parse_int_list(shots, "--shots") if shots is not None else (QUICK_SHOTS if quick else FULL_SHOTS)
    if users is None:  # quick: fewer synthetic users, so a first run on a cold cache encodes less than half the texts
        users = QUICK_USERS if quick else FULL_USERS
    for value, option in ((users, "--users"), (records_per_user, "--records-per-user"), (workers, "--workers")):
        if value < 1:
            raise GmtError(f"{option} must be at least 1, got {value}")
    if threads < 1:
        raise GmtError(f"--threads must be at least 1, got {threads}")
    if timeout <= 0:
        raise GmtError(f"--timeout must be positive, got {timeout:g}")
    if max(shot_list) >= records_per_user and any(n in SYNTHETIC_DATASETS for n in names):
        raise GmtError(f"--shots {max(shot_list)} leaves no record to score of {records_per_user} per user")
    config = BenchConfig(
        datasets=names,
        variants=selected,
        seeds=seed_list,
        shots=tuple(sorted(shot_list)),
        data_dir=data_dir,
        out=out,
        ablation_seeds=ablation,
        chatbot_arena=chatbot_arena,
        users=users,
        records_per_user=records_per_user,
        encoder=encoder,
        overrides=overrides,
        timeout=timeout,
        workers=workers,
        threads=threads,
        retry_failed=retry_failed,
        quick=quick,
        all_jobs=all_jobs,
    )
    report_path = report or (out / "quick" / "results.md" if quick else DEFAULT_REPORT)
    return config, report_path, full_routers
