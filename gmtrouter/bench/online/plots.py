"""The online report's figures (PNG): cumulative regret against the oracle, and the rolling share of the gap
closed, one panel per matrix, every policy a line (mean over seeds, 95% t-band where there are several)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from gmtrouter.bench.online.jobs import POLICIES
from gmtrouter.bench.online.summary import ROLLING, ROLLING_STEP, Summary

DPI = 110
STYLES: dict[str, dict[str, Any]] = {
    "gmtrouter-explore": {"color": "black", "linewidth": 2.4},
    "gmtrouter-greedy": {"color": "#444444", "linewidth": 1.8, "linestyle": "--"},
    "gmtrouter-epsilon": {"color": "#888888", "linewidth": 1.6, "linestyle": "-."},
    "win-rate": {"color": "tab:blue", "linewidth": 1.6},
    "linucb": {"color": "tab:orange", "linewidth": 1.6},
    "best-single": {"color": "tab:red", "linewidth": 1.4, "linestyle": ":"},
    "oracle": {"color": "tab:green", "linewidth": 1.4, "linestyle": ":"},
}


def _band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over seeds and the half-width of its 95% t-interval (None for one seed)."""
    mean = np.nanmean(curves, axis=0)
    if len(curves) < 2:
        return mean, None
    half = stats.t.ppf(0.975, len(curves) - 1) * np.nanstd(curves, axis=0, ddof=1) / np.sqrt(len(curves))
    return mean, half


def _figure(summary: Summary, scenario: str, curve: str, path: Path) -> Path | None:
    matrices = [m for m in summary.plan.matrices if summary.policies(m, scenario)]
    if not matrices:
        return None
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.4 * len(matrices) + 1.8, 4.0), squeeze=False)
    drawn: dict[str, Any] = {}
    change = None
    for ax, matrix in zip(axes[0], matrices, strict=True):
        lowest = 0.0
        for policy in (p for p in POLICIES if p in summary.policies(matrix, scenario)):
            curves = summary.curves((matrix, scenario, policy), curve)
            if curves is None:
                continue
            mean, half = _band(curves)
            x = np.arange(1, len(mean) + 1) if curve == "regret" else np.arange(len(mean)) * ROLLING_STEP + ROLLING
            (line,) = ax.plot(x, mean, label=policy, **STYLES.get(policy, {}))
            if half is not None:
                ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.15, linewidth=0)
            drawn.setdefault(policy, line)
            lowest = min(lowest, float(np.nanmin(mean)) if np.isfinite(mean).any() else 0.0)
            world = next((w for (m, s, _), w in summary.worlds.items() if m == matrix and s == scenario), None)
            change = world.change_at if world is not None else None
        if change is not None:
            ax.axvline(change, color="0.6", linewidth=0.8)
        ax.set_title(matrix, fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if curve == "rolling":  # the share is 1 at the oracle; far below the best single LLM is cut at -1.5
            ax.set_ylim(max(lowest - 0.05, -1.5), 1.1)
    axes[0][0].set_ylabel(
        "cumulative regret against the oracle (utility)"
        if curve == "regret"
        else f"share of the gap closed, last {ROLLING} rounds"
    )
    if not drawn:
        plt.close(fig)
        return None
    fig.legend(list(drawn.values()), list(drawn), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{scenario}: mean over seeds (95% band)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def regret_figure(summary: Summary, scenario: str, path: Path) -> Path | None:
    """Cumulative regret against the attainable oracle, round by round."""
    return _figure(summary, scenario, "regret", path)


def rolling_figure(summary: Summary, scenario: str, path: Path) -> Path | None:
    """The share of the gap closed over the last `ROLLING` rounds, as the run goes."""
    return _figure(summary, scenario, "rolling", path)
