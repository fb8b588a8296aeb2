"""What a benchmark run consists of: datasets, router variants, seeds and shots, and one job per trained router.

A job is one (dataset, split, seed, variant): it trains once and evaluates every k of the plan. Its key hashes
everything that decides its result (settings, data, version), so a rerun finds the jobs it already finished.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.version import __version__

SPLITS = ("record", "user", "query", "category")
SPLIT_NAMES = {"record": "known users", "user": "new users", "query": "new queries", "category": "new topics"}
TEST_FRAC = 0.2
FULL_SEEDS = (0, 1, 2, 3, 4)
FULL_SHOTS = (0, 1, 2, 5, 10, 20)
QUICK_SEEDS = (0,)
QUICK_SHOTS = (0, 5)
REAL_DATASETS = ("mt-bench", "chatbot-arena")
COMMUNITY_DATASETS = ("llmrouter-communities", "gsm8k-communities")  # users in taste communities
SYNTHETIC_DATASETS = ("gsm8k", "mmlu", "llmrouter", "llmrouter-task", "llmrouter-switch", *COMMUNITY_DATASETS)
DEFAULT_DATASETS = ("mt-bench", "gsm8k", "mmlu", "llmrouter", "llmrouter-task", "llmrouter-switch", *COMMUNITY_DATASETS)
SWITCH_DATASETS = ("llmrouter-switch",)  # users with a switching aversion: where routing each turn alone is compared
# There the plan compares conversation-aware routing with the rules it must beat, on known users (the conversation
# metrics' setting); every router is measured on `llmrouter`, the same matrix and kind of users without the aversion.
SWITCH_ROUTERS = ("gmtrouter", "gmtrouter-turn-alone", "sticky", "user-winrate")
SWITCH_SPLITS = ("record",)
_SWITCH_OTHERS = "measured on llmrouter (same matrix and users, no switching aversion); here only conversation routing"
ARENA = "chatbot-arena"


@dataclass(frozen=True)
class Variant:
    """A named router configuration: a registered router plus fixed settings (an ablation is one)."""

    name: str
    router: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    ablation: bool = False
    needs_response_text: bool = False  # meaningless where responses carry no text: skipped there
    about: str = ""
    switch_data_only: bool = False  # compared only where users have a switching aversion (SWITCH_DATASETS)


ABLATIONS = (
    Variant(
        "gmtrouter-backbone-only",
        "gmtrouter",
        {"residual": False},
        True,
        about="the Bradley-Terry backbone alone (population, user and query deviations): no network residual",
    ),
    Variant(
        "gmtrouter-no-backbone",
        "gmtrouter",
        {"backbone": False, "residual_margin": 0.0},
        True,
        about="the network alone, as before the backbone: no population strengths, no user or query deviations",
    ),
    Variant(
        "gmtrouter-no-turns",
        "gmtrouter",
        {"turn_nodes": False, "multi_turn": False},
        True,
        about="no turn nodes and no multi-turn edges: interactions link user, query, response and LLM directly",
    ),
    Variant(
        "gmtrouter-no-text",
        "gmtrouter",
        {"response_text": False},
        True,
        needs_response_text=True,
        about="response nodes without the response text's embedding (the rating stays)",
    ),
    Variant("gmtrouter-sage", "gmtrouter", {"layer": "sage"}, True, about="heterogeneous GraphSAGE instead of HGT"),
    Variant(
        "gmtrouter-full-graph",
        "gmtrouter",
        {"user_sampling": False},
        True,
        about="training on the full graph instead of user-conditioned few-shot episodes",
    ),
)

# GMTRouter without the conversation: on the data with a switching aversion, what reading it is worth.
TURN_ALONE = Variant(
    "gmtrouter-turn-alone",
    "gmtrouter",
    {"conversation": False},
    switch_data_only=True,
    about="routes every turn alone: no stickiness to the previous turn's LLM",
)

# Jobs the plan leaves out because they are slow and say nothing the others do not (docs/benchmarks.md has the
# job times behind this). `--all-jobs` runs them anyway.
_QUERY_ONLY = "a query-only graph router that scores within the interval of knn and mlp there, at 40-150 s a job"
_PERSONALIZED = "below personalized-mlp at every k there, at 50-225 s a job"
_FULL_GRAPH = "trails GMTRouter by 5 points or more there, as on gsm8k and mt-bench, at 110-160 s a job"
SLOW_JOBS: dict[tuple[str, str], str] = {
    **{(d, "graphrouter"): _QUERY_ONLY for d in ("mmlu", "llmrouter", "llmrouter-task")},
    **{(d, "personalizedrouter"): _PERSONALIZED for d in ("llmrouter", "llmrouter-task")},
    **{(d, "gmtrouter-full-graph"): _FULL_GRAPH for d in ("mmlu", "llmrouter", "llmrouter-task")},
}
ABLATION_SPLITS = ("record", "user")  # ablations measure the model's parts where they act: known and new users

# --quick keeps the routers that fit in seconds, one of each kind (none, user, query, conversation), and
# GMTRouter (routing each turn alone too, where users mind a switch); the neural and graph baselines and the
# ablations take most of the full plan's time.
QUICK_ROUTERS = (
    "random",
    "sticky",
    "global-winrate",
    "user-winrate",
    "query-winrate",
    "user-query-winrate",
    "knn",
    "mf",
    "gmtrouter",
    "gmtrouter-turn-alone",
)


def registered_variants() -> dict[str, Variant]:
    """Every registered router under its own name (default settings), GMTRouter routing each turn alone, then
    the GMTRouter ablations."""
    from gmtrouter.registry.routers import router_classes

    variants = {name: Variant(name, name) for name in router_classes()}
    variants[TURN_ALONE.name] = TURN_ALONE
    variants.update({v.name: v for v in ABLATIONS})
    return variants


def parse_value(text: str) -> Any:
    """JSON where it parses (numbers, booleans, null, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_variant(spec: str) -> Variant:
    """'NAME=ROUTER:key=value,key=value' (settings optional): an extra named configuration of a router."""
    name, sep, rest = spec.partition("=")
    router, _, settings_text = rest.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or not router:
        raise GmtError(f"--variant expects NAME=ROUTER:key=value,..., got '{spec}'")
    settings: dict[str, Any] = {}
    for pair in filter(None, settings_text.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise GmtError(f"--variant '{name}': settings are key=value pairs separated by commas, got '{pair}'")
        settings[key.strip()] = parse_value(value.strip())
    return Variant(name, router.strip(), settings)


def parse_int_list(spec: str, option: str) -> tuple[int, ...]:
    """'0-4', '0,2,5' or a mix like '0-2,7': distinct non-negative integers in the order given."""
    values: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise GmtError(f"{option} expects numbers like '0-4' or '0,1,5', got '{spec}'")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise GmtError(f"{option}: range '{part}' runs backwards; write it low-high")
        values.extend(range(low, high + 1))
    if not values:
        raise GmtError(f"{option} is empty; give at least one number, like '0-4'")
    return tuple(dict.fromkeys(values))


def parse_names(spec: str) -> tuple[str, ...]:
    """A comma-separated list of names, duplicates dropped."""
    return tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on; the CLI builds it, the runner and the report read it."""

    datasets: tuple[str, ...]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    shots: tuple[int, ...]
    data_dir: Path
    out: Path
    ablation_seeds: tuple[int, ...] | None = None  # None: the same seeds as everything else
    chatbot_arena: Path | None = None
    users: int = 200
    records_per_user: int = 50
    sim_seed: int = 0
    encoder: str | None = None  # None: each router's default encoder
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # router -> settings for all its variants
    timeout: float = 900.0
    workers: int = 1
    threads: int = 1
    retry_failed: bool = False
    quick: bool = False
    all_jobs: bool = False  # run the SLOW_JOBS too
    latency_requests: int = 200


@dataclass(frozen=True)
class Job:
    """One router trained on one split of one dataset with one seed, evaluated at every k of the plan."""

    dataset: str
    split: str
    seed: int
    variant: str
    router: str
    settings_json: str  # canonical JSON of the settings the router is made with
    shots: tuple[int, ...]
    test_frac: float
    data_hash: str
    version: str = __version__

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)

    @property
    def key(self) -> str:
        """Hash of everything that decides the result: a finished job with this key need not run again."""
        fields = [self.dataset, self.split, self.seed, self.router, self.settings_json, list(self.shots)]
        fields += [self.test_frac, self.data_hash, self.version]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.dataset} / {SPLIT_NAMES[self.split]} / seed {self.seed} / {self.variant}"

    def result_path(self, out: Path) -> Path:
        return out / "results" / self.dataset / self.split / f"seed{self.seed}" / f"{self.variant}.{self.key}.json"

    def log_path(self, out: Path) -> Path:
        return out / "logs" / self.dataset / self.split / f"seed{self.seed}" / f"{self.variant}.{self.key}.log"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "variant": self.variant,
            "router": self.router,
            "settings": self.settings,
            "shots": list(self.shots),
            "test_frac": self.test_frac,
            "data_hash": self.data_hash,
            "version": self.version,
            "key": self.key,
        }


def router_settings_for(variant: Variant, config: BenchConfig, seed: int) -> dict[str, Any]:
    """The settings a variant's router is made with: its own, the run's overrides, the seed, the encoder."""
    from gmtrouter.registry.routers import router_settings

    accepted = router_settings(variant.router)
    settings: dict[str, Any] = {**config.overrides.get(variant.router, {}), **variant.settings, "seed": seed}
    if config.encoder is not None and "encoder" in accepted:
        settings["encoder"] = config.encoder
    if "progress" in accepted:
        settings["progress"] = False
    return settings


def check_variants(variants: Sequence[Variant], overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse unknown routers and unknown setting names before anything runs (bad values fail their job)."""
    from gmtrouter.registry.routers import router_classes, router_settings

    known = router_classes()
    for variant in variants:
        if variant.router not in known:
            raise GmtError(f"unknown router '{variant.router}'; choose one of: {', '.join(sorted(known))}")
        unknown = sorted(set(variant.settings) - set(router_settings(variant.router)))
        if unknown:
            raise GmtError(
                f"variant '{variant.name}': router '{variant.router}' has no setting {', '.join(unknown)}; "
                f"its settings are: {', '.join(router_settings(variant.router))}"
            )
    for router, settings in overrides.items():
        if router not in known:
            raise GmtError(f"--set {router}.KEY: unknown router '{router}'; choose one of: {', '.join(sorted(known))}")
        unknown = sorted(set(settings) - set(router_settings(router)))
        if unknown:
            raise GmtError(f"--set: router '{router}' has no setting {', '.join(unknown)}")


@dataclass(frozen=True)
class Skipped:
    """A (dataset, variant) pair the plan leaves out, and why (said in the report)."""

    dataset: str
    variant: str
    reason: str


def splits_of(dataset: str, categories: int) -> tuple[str, ...]:
    """The settings a dataset is measured in: new topics only where records have two categories or more."""
    if dataset in SWITCH_DATASETS:
        return SWITCH_SPLITS
    return tuple(s for s in SPLITS if s != "category" or categories >= 2)


def build_plan(
    config: BenchConfig,
    data_hashes: Mapping[str, str],
    has_response_text: Mapping[str, bool],
    categories: Mapping[str, int] | None = None,
) -> tuple[list[Job], list[Skipped]]:
    """Jobs seed by seed (an interrupted run leaves whole seeds), then dataset, split and variant.

    `categories`: the number of distinct `meta.category` values of each dataset (0 where a record has none);
    a dataset with fewer than two has no new-topics setting.
    """
    jobs: list[Job] = []
    skipped: dict[tuple[str, str], Skipped] = {}
    ablation_seeds = config.seeds if config.ablation_seeds is None else config.ablation_seeds
    for seed in config.seeds:
        for dataset in config.datasets:
            for split in splits_of(dataset, (categories or {}).get(dataset, 0)):
                for variant in config.variants:
                    if variant.needs_response_text and not has_response_text[dataset]:
                        reason = "the responses carry no text, so the ablation equals the full model"
                        skipped[dataset, variant.name] = Skipped(dataset, variant.name, reason)
                        continue
                    if dataset in SWITCH_DATASETS and variant.name not in SWITCH_ROUTERS:
                        skipped[dataset, variant.name] = Skipped(dataset, variant.name, _SWITCH_OTHERS)
                        continue
                    if variant.switch_data_only and dataset not in SWITCH_DATASETS:
                        reason = "it differs from GMTRouter only where users have a switching aversion"
                        skipped[dataset, variant.name] = Skipped(dataset, variant.name, reason)
                        continue
                    if variant.ablation and (seed not in ablation_seeds or split not in ABLATION_SPLITS):
                        continue
                    if (dataset, variant.name) in SLOW_JOBS and not config.all_jobs:
                        skipped[dataset, variant.name] = Skipped(
                            dataset, variant.name, SLOW_JOBS[dataset, variant.name]
                        )
                        continue
                    settings = router_settings_for(variant, config, seed)
                    jobs.append(
                        Job(
                            dataset=dataset,
                            split=split,
                            seed=seed,
                            variant=variant.name,
                            router=variant.router,
                            settings_json=json.dumps(settings, sort_keys=True),
                            shots=config.shots if split == "user" else (0,),
                            test_frac=TEST_FRAC,
                            data_hash=data_hashes[dataset],
                        )
                    )
    return jobs, list(skipped.values())
