"""The report's figures (PNG, matplotlib): accuracy against k shots, per-user AUC, preference against cost,
accuracy against switch rate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from gmtrouter.bench.aggregate import Estimate, Results

MAIN = "gmtrouter"
DPI = 110
LABELLED_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 5.0)


def _style(variant: str, index: int) -> dict[str, Any]:
    """GMTRouter thick and black, its ablations dashed, baselines in distinct colours."""
    colours = plt.get_cmap("tab20").colors
    if variant == MAIN:
        return {"color": "black", "linewidth": 2.6, "zorder": 5}
    style: dict[str, Any] = {"color": colours[(2 * index) % 20 if index < 10 else (2 * index + 1) % 20]}
    style["linewidth"] = 1.4
    if variant.startswith(f"{MAIN}-"):
        style["linestyle"] = "--"
    return style


_KSHOT = "evaluations.{k}.accuracy"
# (evaluation field, legend label, style) of the reference curves: what a rule that knows the world scores
_REFERENCES = (
    ("oracle", "oracle (true utilities)", {"color": "grey", "linestyle": "--", "linewidth": 1.6}),
    (
        "community_posterior",
        "community posterior (Bayes rule)",
        {"color": "tab:purple", "linestyle": "-.", "linewidth": 1.6},
    ),
    (
        "community_taste",
        "community taste (Bayes rule, no answers)",
        {"color": "tab:brown", "linestyle": ":", "linewidth": 1.8},
    ),
)


def _band(shots: Sequence[int], pick: Callable[[int], Estimate | None]) -> tuple[np.ndarray, ...]:
    """(x, mean, half-width) at the ks where `pick(k)` has an estimate; a single seed has no width."""
    points = [(i, e) for i, k in enumerate(shots) if (e := pick(k)) is not None]
    x = np.array([i for i, _ in points], dtype=float)
    return x, np.array([e.mean for _, e in points]), np.array([e.half or 0.0 for _, e in points])


def best_other(results: Results, dataset: str, shots: Sequence[int]) -> str | None:
    """The router, other than GMTRouter, its variants and random, with the highest accuracy averaged over k."""
    found = {}
    for variant in results.variants(dataset, "user"):
        if variant == MAIN or variant.startswith(f"{MAIN}-") or variant == "random":
            continue
        means = [e.mean for k in shots if (e := results.estimate(dataset, "user", variant, _KSHOT.format(k=k)))]
        if means:
            found[variant] = float(np.mean(means))
    return max(found, key=found.__getitem__) if found else None


def _kshot_routers(results: Results, dataset: str, shots: Sequence[int]) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, legend label, style) of the routers the k-shot plot draws: GMTRouter, its ablations, the best
    other router."""
    variants = results.variants(dataset, "user")
    colours = iter(plt.get_cmap("Dark2").colors)
    drawn = [(MAIN, MAIN, {"color": "black", "linewidth": 2.6, "zorder": 5})] if MAIN in variants else []
    for variant in (v for v in variants if v.startswith(f"{MAIN}-")):  # dashed over GMTRouter: equal curves show
        drawn.append(
            (variant, variant, {"color": next(colours), "linewidth": 1.5, "linestyle": (0, (4, 2)), "zorder": 6})
        )
    other = best_other(results, dataset, shots)
    if other is not None:
        drawn.append((other, f"{other} (best other router)", {"color": "tab:blue", "linewidth": 1.8}))
    return drawn


def kshot_plot(results: Results, dataset: str, shots: Sequence[int], path: Path) -> Path | None:
    """New users: pairwise accuracy against the k records shown, mean over seeds with its 95% interval as a band.

    Drawn: GMTRouter, its ablations, the best other router, and the references (the oracle; the community
    posterior where users come in taste communities). Every other router is in the table beside it."""
    curves = [
        (label, _band(shots, lambda k, v=v: results.estimate(dataset, "user", v, _KSHOT.format(k=k))), style)
        for v, label, style in _kshot_routers(results, dataset, shots)
    ]
    curves = [curve for curve in curves if len(curve[1][0])]
    if not curves:
        return None
    for key, label, style in _REFERENCES:
        band = _band(shots, lambda k, key=key: results.shared(dataset, "user", f"evaluations.{k}.{key}.accuracy"))
        if len(band[0]):
            curves.append((label, band, style))
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for label, (x, y, half), style in curves:
        ax.plot(x, y, marker="o", markersize=3.5, label=label, **style)
        if half.any():
            ax.fill_between(x, y - half, y + half, color=style["color"], alpha=0.13, linewidth=0)
    means = np.concatenate([y for _, (_, y, _), _ in curves])
    ax.set_ylim(max(0.0, means.min() - 0.04), min(1.0, means.max() + 0.04))  # the means fit; wide bands run off
    ax.set_xticks(range(len(shots)), [str(k) for k in shots])
    ax.set_xlabel("k: records of each new user shown as history (not retrained)")
    ax.set_ylabel("pairwise accuracy")
    seeds = max((len(results.ok(dataset, "user", v)) for v in results.variants(dataset, "user")), default=0)
    spread = f"mean and 95% interval over {seeds} seeds" if seeds > 1 else "one seed, no interval"
    ax.set_title(f"{dataset}: new users, accuracy against k shots\n({spread}; every other router in the table)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _save(fig, path)


def user_auc_plot(results: Results, dataset: str, path: Path) -> Path | None:
    """Known users: the distribution of per-user AUC (users with at least 5 test pairs, pooled over seeds)."""
    variants = results.variants(dataset, "record")
    data = [(v, results.pooled(dataset, "record", v, "evaluations.0.per_user_values.auc")) for v in variants]
    data = [(v, values) for v, values in data if values]
    if not data:
        return None
    data.sort(key=lambda item: float(np.median(item[1])))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(data) + 1.6))
    boxes = ax.boxplot(
        [values for _, values in data],
        vert=False,
        widths=0.6,
        patch_artist=True,
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    for patch, (variant, _) in zip(boxes["boxes"], data, strict=True):
        patch.set_facecolor("#f2b134" if variant == MAIN else "#9ecae1")
    ax.set_yticks(range(1, len(data) + 1), [f"{v} (n={len(values)})" for v, values in data], fontsize=8)
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("per-user AUC (each user with at least 5 test pairs; users of all seeds pooled)")
    ax.set_title(f"{dataset}: known users, per-user AUC")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def mean_curve(results: Results, dataset: str, variant: str) -> list[dict[str, Any]]:
    """The variant's trade-off curve averaged over seeds, point by point (same cost weights in every seed)."""
    curves = [r["tradeoff"]["curve"] for r in results.ok(dataset, "record", variant).values() if r.get("tradeoff")]
    if not curves:
        return []
    points = []
    for index, point in enumerate(curves[0]):
        same = [c[index] for c in curves if len(c) > index]
        llms = sorted({m for p in same for m in p["share"]})
        points.append(
            {
                "cost_weight": point["cost_weight"],
                "win_rate": _nanmean([p["win_rate"] for p in same]),
                "cost": _nanmean([p["cost"] for p in same]),
                "utility": _nanmean([p["utility"] for p in same]),
                "share": {m: float(np.mean([p["share"].get(m, 0.0) for p in same])) for m in llms},
            }
        )
    return points


def mean_single(results: Results, dataset: str) -> dict[str, dict[str, float | None]]:
    """Each single LLM's win rate and cost on the held-out records, averaged over seeds."""
    per_seed: dict[int, dict[str, Any]] = {}
    for variant in results.variants(dataset, "record"):
        for seed, result in results.ok(dataset, "record", variant).items():
            if result.get("tradeoff"):
                per_seed.setdefault(seed, result["tradeoff"]["single"])
    llms = sorted({m for single in per_seed.values() for m in single})
    return {
        m: {
            key: _nanmean([single[m][key] for single in per_seed.values() if m in single])
            for key in ("win_rate", "cost", "utility")
        }
        for m in llms
    }


def _nanmean(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return float(np.mean(clean)) if clean else None


def tradeoff_plot(results: Results, dataset: str, compare: str | None, path: Path) -> Path | None:
    """Left: win rate against mean cost per request, GMTRouter over cost weights and every single LLM.
    Right: the share of requests GMTRouter sends to each LLM as the cost weight grows."""
    curve = mean_curve(results, dataset, MAIN)
    single = mean_single(results, dataset)
    if not curve or any(p["cost"] is None for p in curve):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
    left.plot([p["cost"] for p in curve], [p["win_rate"] for p in curve], "-o", color="black", label=MAIN, zorder=5)
    for p in curve:
        if p["cost_weight"] in LABELLED_WEIGHTS:
            where = (p["cost"], p["win_rate"])
            left.annotate(f"w={p['cost_weight']:g}", where, fontsize=7, xytext=(5, 2), textcoords="offset points")
    if compare:
        other = mean_curve(results, dataset, compare)
        if other and all(p["cost"] is not None for p in other):
            left.plot(
                [p["cost"] for p in other],
                [p["win_rate"] for p in other],
                "--s",
                markersize=3,
                color="tab:blue",
                label=compare,
            )
    for index, (llm, point) in enumerate(sorted(single.items(), key=lambda item: item[1]["cost"] or 0.0)):
        if point["cost"] is None or point["win_rate"] is None:
            continue
        left.scatter([point["cost"]], [point["win_rate"]], marker="D", color="tab:red", zorder=6)
        offset = (5, -10) if index % 2 else (5, 4)  # alternate sides: LLMs of equal price sit side by side
        left.annotate(llm, (point["cost"], point["win_rate"]), fontsize=7, xytext=offset, textcoords="offset points")
    left.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    left.set_xscale("log")
    left.set_xlabel("mean cost per request (USD, log scale)")
    left.set_ylabel("win rate of the chosen response")
    left.set_title(f"{dataset}: preference against cost (known users)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    llms = sorted({m for p in curve for m in p["share"]})
    x = np.arange(len(curve))
    bottom = np.zeros(len(curve))
    colours = plt.get_cmap("tab10").colors
    for index, llm in enumerate(llms):
        share = np.array([p["share"].get(llm, 0.0) for p in curve])
        right.bar(x, share, bottom=bottom, color=colours[index % 10], label=llm, width=0.85)
        bottom += share
    right.set_xticks(x, [f"{p['cost_weight']:g}" for p in curve], fontsize=8)
    right.set_xlabel("cost weight")
    right.set_ylabel(f"share of requests ({MAIN})")
    right.set_ylim(0, 1)
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def switch_plot(results: Results, dataset: str, path: Path) -> Path | None:
    """Later turns of known users: pairwise accuracy against the switch rate, every router at switch cost 0
    and GMTRouter (with and without the conversation) along its sweep of switch costs, means over seeds."""
    variants = [
        v for v in results.variants(dataset, "record") if results.values(dataset, "record", v, "conversation.records")
    ]
    if not variants:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    drawn = 0
    for index, variant in enumerate(variants):
        sweep = _mean_sweep(results, dataset, variant)
        if not sweep:
            continue
        drawn += 1
        style = _style(variant, index)
        if variant == MAIN or variant.startswith(f"{MAIN}-"):
            ax.plot([p[1] for p in sweep], [p[2] for p in sweep], marker="o", markersize=3.5, label=variant, **style)
            for cost, x, y in sweep:
                ax.annotate(f"{cost:g}", (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        else:
            ax.scatter([sweep[0][1]], [sweep[0][2]], marker="s", s=30, color=style["color"], label=variant, zorder=4)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("switch rate: later turns routed away from the previous turn's LLM")
    ax.set_ylabel("pairwise accuracy on turns >= 2")
    ax.set_title(f"{dataset}: accuracy against switch rate (labels: switch cost in logits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def _mean_sweep(results: Results, dataset: str, variant: str) -> list[tuple[float, float, float]]:
    """(switch cost, mean switch rate, mean accuracy) along the variant's sweep, over its seeds."""
    runs = [
        r["conversation"]["sweep"] for r in results.ok(dataset, "record", variant).values() if r.get("conversation")
    ]
    if not runs:
        return []
    points = []
    for step in range(min(len(run) for run in runs)):
        rates = [run[step]["switch_rate"] for run in runs]
        accuracies = [run[step]["accuracy"] for run in runs if run[step]["accuracy"] is not None]
        if accuracies:
            points.append((runs[0][step]["switch_cost"], float(np.mean(rates)), float(np.mean(accuracies))))
    return points


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
