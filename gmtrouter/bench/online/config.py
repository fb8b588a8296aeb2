"""What one online benchmark run is asked to do, checked, and the plan of jobs it makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gmtrouter.bench.online.jobs import POLICIES, Job
from gmtrouter.bench.online.prepare import MATRICES, Matrix
from gmtrouter.bench.online.scenarios import SCENARIOS
from gmtrouter.bench.online.world import WorldConfig
from gmtrouter.text.base import DEFAULT_ENCODER
from gmtrouter.utils.errors import GmtError


@dataclass(frozen=True)
class OnlineConfig:
    """Everything one online benchmark run is asked to do."""

    data_dir: Path
    out: Path = Path("runs/bench/online")
    report: Path = Path("docs/online.md")
    matrices: tuple[str, ...] = MATRICES
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    policies: tuple[str, ...] = POLICIES
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    gmtrouter_seeds: tuple[int, ...] | None = None  # the gmtrouter policies' seeds (they are slow); None: `seeds`
    world: WorldConfig = field(default_factory=WorldConfig)
    encoder: str = DEFAULT_ENCODER
    workers: int = 2
    retry_failed: bool = False
    http: bool = True
    http_rounds: int = 1000
    report_only: bool = False  # write the report from the finished jobs; run and train nothing

    def check(self) -> None:
        """Refuse a plan that cannot run, in one line naming the option to fix."""
        for option, names, known in [
            ("--matrices", self.matrices, MATRICES),
            ("--scenarios", self.scenarios, tuple(SCENARIOS)),
            ("--policies", self.policies, POLICIES),
        ]:
            if not names:
                raise GmtError(f"{option} is empty; name at least one of: {', '.join(known)}")
            unknown = [n for n in names if n not in known]
            if unknown:
                raise GmtError(f"{option}: unknown {', '.join(unknown)}; choose from: {', '.join(known)}")
        if not self.seeds:
            raise GmtError("--seeds is empty; give at least one seed, e.g. 0-4")
        if self.gmtrouter_seeds is not None and not set(self.gmtrouter_seeds) <= set(self.seeds):
            raise GmtError("--gmtrouter-seeds must be some of --seeds (the other policies run on those)")
        if self.workers < 1:
            raise GmtError(f"--workers must be at least 1, got {self.workers}")
        self.world.check()


@dataclass
class Plan:
    """The jobs of a run and what they share."""

    matrices: dict[str, Matrix] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    models: dict[str, Path] = field(default_factory=dict)  # the warm-start model of each matrix


def online_config(
    data_dir: Path,
    out: Path,
    report: Path | None,
    matrices: str | None,
    scenarios: str | None,
    policies: str | None,
    seeds: str | None,
    gmtrouter_seeds: str | None,
    rounds: int | None,
    users: int | None,
    encoder: str | None,
    workers: int,
    retry_failed: bool,
    http: bool,
    http_rounds: int,
    report_only: bool = False,
) -> OnlineConfig:
    """The command line's options as a checked OnlineConfig (a bad one ends with one line naming it)."""
    from gmtrouter.bench.plan import parse_int_list, parse_names

    world = WorldConfig()
    world = WorldConfig(users=users if users is not None else world.users, rounds=rounds or world.rounds)
    if rounds is not None and rounds < 2:
        raise GmtError(f"--rounds must be at least 2, got {rounds}")
    if http_rounds < 1:
        raise GmtError(f"--http-rounds must be at least 1, got {http_rounds}")
    defaults = OnlineConfig(data_dir=data_dir)
    config = OnlineConfig(
        data_dir=data_dir,
        out=out / "online",
        report=report or defaults.report,
        matrices=parse_names(matrices) if matrices is not None else defaults.matrices,
        scenarios=parse_names(scenarios) if scenarios is not None else defaults.scenarios,
        policies=parse_names(policies) if policies is not None else defaults.policies,
        seeds=parse_int_list(seeds, "--seeds") if seeds is not None else defaults.seeds,
        gmtrouter_seeds=parse_int_list(gmtrouter_seeds, "--gmtrouter-seeds") if gmtrouter_seeds else None,
        world=world,
        encoder=encoder or defaults.encoder,
        workers=workers,
        retry_failed=retry_failed,
        http=http,
        http_rounds=http_rounds,
        report_only=report_only,
    )
    config.check()
    return config
