"""The records files a benchmark runs on: real feedback as prepared, benchmarks turned into synthetic users.

Each file is written once under OUT/data and identified by the SHA-256 of its bytes; jobs are keyed by that
hash, so changed data (a new simulator, another loader) reruns them and unchanged data does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmtrouter.bench.plan import ARENA, BenchConfig
from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import SimConfig
from gmtrouter.data.sim_posterior import CommunityModel
from gmtrouter.data.sim_users import TASK_ARCHETYPES
from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import GmtError

SOURCES = {
    "mt-bench": "MT-Bench human pairwise votes (`gmtrouter data prepare mt-bench`), real users",
    "chatbot-arena": "Chatbot Arena battles with voter ids (`gmtrouter data prepare chatbot-arena`), real users",
    "gsm8k": "synthetic users (`gmtrouter data simulate`) over the GSM8K matrix (`data prepare gsm8k`)",
    "mmlu": "synthetic users (`gmtrouter data simulate`) over the MMLU matrix (`data prepare mmlu`)",
    "llmrouter": "synthetic users (`gmtrouter data simulate`) over the LLMRouter matrix (`data prepare llmrouter`)",
    "llmrouter-task": "synthetic users whose taste depends on the task (`data simulate --archetypes "
    "specialist,task-critic`) over the LLMRouter matrix",
    "llmrouter-switch": "synthetic users of whom some dislike a change of LLM within a conversation "
    "(`data simulate --switch-aversion 1`) over the LLMRouter matrix",
    "llmrouter-communities": "synthetic users in 4 taste communities (`data simulate --communities 4`) over the "
    "LLMRouter matrix",
    "gsm8k-communities": "synthetic users in 4 taste communities (`data simulate --communities 4`) over the "
    "GSM8K matrix",
}
UPSTREAM_DIRS = {
    "mt-bench": "mt_bench",
    "gsm8k": "gsm8k",
    "mmlu": "mmlu",
    "llmrouter": "llmrouter",
    "llmrouter-task": "llmrouter",
    "llmrouter-switch": "llmrouter",
    "llmrouter-communities": "llmrouter",
    "gsm8k-communities": "gsm8k",
}
SWITCH_AVERSION = 1.0  # utility units (two choice temperatures): a switch is felt, but quality still matters more
# Four communities: at the full plan's 100 users, 20 training users each to learn a community from, and few
# enough that one to three ratings of a new user already say much about which one it is (docs/simulator.md).
COMMUNITIES = 4


@dataclass(frozen=True)
class SimVariant:
    """A dataset of synthetic users that differ from the defaults: the matrix and the simulator settings."""

    matrix: str
    archetypes: str | None = None
    switch_aversion: float = 0.0
    communities: int = 0

    def config(self, bench: BenchConfig) -> SimConfig:
        """The simulator settings: the variant's, the run's users and seed, every other knob its default."""
        return SimConfig(
            users=bench.users,
            records_per_user=bench.records_per_user,
            seed=bench.sim_seed,
            archetypes=self.archetypes,
            switch_aversion=self.switch_aversion,
            communities=self.communities,
        )


SIM_VARIANTS = {
    "llmrouter-task": SimVariant("llmrouter", archetypes=",".join(TASK_ARCHETYPES)),
    "llmrouter-switch": SimVariant("llmrouter", switch_aversion=SWITCH_AVERSION),
    "llmrouter-communities": SimVariant("llmrouter", communities=COMMUNITIES),
    "gsm8k-communities": SimVariant("gsm8k", communities=COMMUNITIES),
}


@dataclass(frozen=True)
class BenchData:
    """One prepared records file and what the report says about it."""

    name: str
    path: Path
    sha256: str
    synthetic: bool
    source: str
    stats: dict[str, Any]
    has_response_text: bool
    has_costs: bool
    categories: int  # distinct meta.category values; 0 when some record has none
    community_model: CommunityModel | None = None  # what the community-posterior reference knows; None: no communities


def _serialise(records: Sequence[Interaction]) -> bytes:
    """The bytes `write_records` would write, so the hash can be taken before touching the disk."""
    return b"".join(r.model_dump_json(exclude_none=True).encode() + b"\n" for r in records)


def _load(name: str, config: BenchConfig) -> tuple[list[Interaction], str, SimConfig | None]:
    """The dataset's records, the file name (which names the simulator settings for synthetic data) and the
    simulator settings (None for real feedback)."""
    from gmtrouter.data.loaders import prepare

    if name == ARENA:
        if config.chatbot_arena is None:
            raise GmtError("chatbot-arena needs the upstream battles file: give --chatbot-arena PATH")
        return list(prepare(ARENA, config.chatbot_arena)), f"{ARENA}.jsonl", None
    folder = config.data_dir / UPSTREAM_DIRS[name]
    if not folder.exists():
        raise GmtError(f"{folder}: not found; point --data-dir at the shared data folder (it holds {folder.name}/)")
    variant = SIM_VARIANTS.get(name, SimVariant(name))
    loaded = prepare(variant.matrix, folder)
    if name == "mt-bench":
        return list(loaded), f"{name}.jsonl", None
    from gmtrouter.data.simulate import simulate

    sim = variant.config(config)
    records = simulate(loaded, sim).records  # type: ignore[arg-type]
    return records, f"{name}-{config.users}x{config.records_per_user}-seed{config.sim_seed}.jsonl", sim


def prepare_dataset(name: str, config: BenchConfig) -> BenchData:
    """Build (or find unchanged) OUT/data/<file> for dataset `name`."""
    from gmtrouter.evaluation.stats import record_stats

    records, file_name, sim = _load(name, config)
    if not records:
        raise GmtError(f"dataset '{name}' gave no records")
    payload = _serialise(records)
    digest = hashlib.sha256(payload).hexdigest()
    path = config.out / "data" / file_name
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        with atomic_write(path, "wb") as handle:
            handle.write(payload)
    stats = record_stats(records)
    responses = [x for r in records for x in r.responses]
    return BenchData(
        name=name,
        path=path,
        sha256=digest,
        synthetic=name not in ("mt-bench", ARENA),
        source=SOURCES[name],
        stats=stats,
        has_response_text=any(x.text for x in responses),
        has_costs=any(x.cost is not None for x in responses),
        categories=_categories(records),
        community_model=CommunityModel.of(sim) if sim is not None and sim.communities else None,
    )


def _categories(records: Sequence[Interaction]) -> int:
    """Distinct `meta.category` values, or 0 when some record has none (no split by category then)."""
    found = [r.meta.get("category") for r in records]
    return 0 if any(not isinstance(c, str) for c in found) else len(set(found))
