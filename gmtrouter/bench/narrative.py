"""The sentences under each dataset's tables: what the numbers show, comparisons stated with their intervals.

Each sentence is computed from the results; nothing is claimed that a number in the tables does not show.
Differences between two routers are paired by seed (same split, same seed) and given with their 95% interval;
a difference whose interval includes zero is called not separable at this number of seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from gmtrouter.bench.aggregate import Estimate, Results
from gmtrouter.bench.plan import SPLIT_NAMES

MAIN = "gmtrouter"
USER_AWARE_ROUTERS = {"user-winrate", "user-query-winrate", "personalized-mlp", "personalizedrouter", "gmtrouter"}
ACCURACY = "evaluations.0.accuracy"


def _diff_text(diff: Estimate | None) -> str:
    if diff is None:
        return "no common seeds"
    if diff.half is None:
        return f"{diff.mean:+.3f} (one seed, no interval)"
    verdict = "not separable" if abs(diff.mean) <= diff.half else "separable"
    return f"{diff.mean:+.3f} ± {diff.half:.3f}, {verdict} at {diff.n} seeds"


def _ranked(
    results: Results, dataset: str, split: str, path: str, variants: Sequence[str]
) -> list[tuple[str, Estimate]]:
    found = [(v, results.estimate(dataset, split, v, path)) for v in variants]
    return sorted([(v, e) for v, e in found if e is not None], key=lambda item: -item[1].mean)


def known_users(results: Results, dataset: str, routers: dict[str, str]) -> list[str]:
    """Sentences on the known-user split: who is best, where GMTRouter stands, what personalization buys."""
    variants = results.variants(dataset, "record")
    ranked = _ranked(results, dataset, "record", ACCURACY, variants)
    if not ranked:
        return ["Known users: no router has a number (no finished job, or no rated pair among the held-out records)."]
    best, best_est = ranked[0]
    lines = [f"Known users: the highest pairwise accuracy is {best}'s ({best_est.format()})."]
    by_auc = _ranked(results, dataset, "record", "evaluations.0.auc", variants)
    if by_auc and by_auc[0][0] != best:
        lines.append(f"The highest AUC is {by_auc[0][0]}'s ({by_auc[0][1].format()}).")
    order = [v for v, _ in ranked]
    if MAIN in order and best != MAIN:
        diff = results.paired(dataset, "record", MAIN, best, ACCURACY)
        est = dict(ranked)[MAIN]
        lines.append(
            f"GMTRouter ranks {order.index(MAIN) + 1} of {len(order)} ({est.format()}); "
            f"its accuracy minus {best}'s: {_diff_text(diff)}."
        )
    elif MAIN in order and len(order) > 1:
        runner_up = order[1]
        diff = results.paired(dataset, "record", MAIN, runner_up, ACCURACY)
        lines.append(f"GMTRouter's accuracy minus the next router's ({runner_up}): {_diff_text(diff)}.")
    elif MAIN in variants:
        lines.append("GMTRouter has no finished job here.")
    aware = [(v, e) for v, e in ranked if routers.get(v) in USER_AWARE_ROUTERS]
    blind = [(v, e) for v, e in ranked if routers.get(v) not in USER_AWARE_ROUTERS and routers.get(v) != "random"]
    if aware and blind:
        diff = results.paired(dataset, "record", aware[0][0], blind[0][0], ACCURACY)
        lines.append(
            f"The best router that sees who is asking ({aware[0][0]}, {aware[0][1].format()}) against the best that "
            f"does not ({blind[0][0]}, {blind[0][1].format()}): {_diff_text(diff)}."
        )
    oracle = results.shared(dataset, "record", "evaluations.0.oracle.accuracy")
    if oracle is not None:
        lines.append(f"Scoring by the simulator's true utilities reaches {oracle.format()} on the same records.")
    return lines


def ablations(results: Results, dataset: str, names: Sequence[str], shots: Sequence[int]) -> list[str]:
    """Each ablation's accuracy minus GMTRouter's on known users and, at the largest k, on new users."""
    lines = []
    for split, path, where in (
        ("record", ACCURACY, "known users"),
        ("user", f"evaluations.{shots[-1]}.accuracy", f"new users at k = {shots[-1]}"),
    ):
        present = [n for n in names if n in results.variants(dataset, split)]
        if not present or MAIN not in results.variants(dataset, split):
            continue
        parts = [f"{name} {_diff_text(results.paired(dataset, split, name, MAIN, path))}" for name in present]
        lines.append(f"Ablations, accuracy minus GMTRouter's on {where}: {'; '.join(parts)}.")
    return lines


def _means(values: Sequence[Estimate | None]) -> str:
    return " / ".join("–" if e is None else f"{e.mean:.3f}" for e in values)


def new_users(results: Results, dataset: str, shots: Sequence[int]) -> list[str]:
    """Sentences on the new-user split: the best router at the smallest and largest k, GMTRouter's gain with k."""
    variants = results.variants(dataset, "user")
    lines = []
    for k in dict.fromkeys([shots[0], shots[-1]]):
        ranked = _ranked(results, dataset, "user", f"evaluations.{k}.accuracy", variants)
        if ranked:
            lines.append(f"New users at k = {k}: best is {ranked[0][0]} ({ranked[0][1].format()}).")
            if MAIN in dict(ranked) and ranked[0][0] != MAIN:
                diff = results.paired(dataset, "user", MAIN, ranked[0][0], f"evaluations.{k}.accuracy")
                lines.append(f"GMTRouter minus {ranked[0][0]} at k = {k}: {_diff_text(diff)}.")
    reference = [results.shared(dataset, "user", f"evaluations.{k}.community_posterior.accuracy") for k in shots]
    taste = [results.shared(dataset, "user", f"evaluations.{k}.community_taste.accuracy") for k in shots]
    mine = [results.estimate(dataset, "user", MAIN, f"evaluations.{k}.accuracy") for k in shots]
    if any(e is not None for e in reference):
        lines.append(
            f"At k = {', '.join(map(str, shots))}: the Bayes rule that knows the taste communities and infers each "
            f"user's from the k shots scores {_means(reference)}; GMTRouter {_means(mine)}."
        )
    if any(e is not None for e in taste):
        lines.append(
            f"Knowing the communities' tastes by LLM and task but not the answers, the same rule scores "
            f"{_means(taste)}."
        )
    if len(shots) > 1 and MAIN in variants:
        low, high = shots[0], shots[-1]
        first = results.values(dataset, "user", MAIN, f"evaluations.{low}.accuracy")
        last = results.values(dataset, "user", MAIN, f"evaluations.{high}.accuracy")
        common = sorted(set(first) & set(last))
        if common:
            from gmtrouter.bench.aggregate import estimate

            gain = estimate([last[s] - first[s] for s in common])
            lines.append(f"GMTRouter's accuracy at k = {high} minus at k = {low}: {_diff_text(gain)}.")
    return lines


def new_queries(results: Results, dataset: str, split: str = "query") -> list[str]:
    """Sentences on the new-query (or, with split "category", new-topic) setting: the best router, and GMTRouter
    against it."""
    ranked = _ranked(results, dataset, split, ACCURACY, results.variants(dataset, split))
    if not ranked:
        return []
    where = SPLIT_NAMES[split]
    lines = [f"{where.capitalize()}: best is {ranked[0][0]} ({ranked[0][1].format()})."]
    if MAIN in dict(ranked) and ranked[0][0] != MAIN:
        diff = results.paired(dataset, split, MAIN, ranked[0][0], ACCURACY)
        lines.append(f"GMTRouter minus {ranked[0][0]} on {where}: {_diff_text(diff)}.")
    elif MAIN in dict(ranked) and len(ranked) > 1:
        diff = results.paired(dataset, split, MAIN, ranked[1][0], ACCURACY)
        lines.append(f"GMTRouter minus the next router ({ranked[1][0]}): {_diff_text(diff)}.")
    return lines


def failures(results: Results, dataset: str) -> list[str]:
    failed = results.failures(dataset)
    if not failed:
        return []
    kinds: dict[str, int] = {}
    for item in failed:
        kinds[item["status"]] = kinds.get(item["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(kinds.items()))
    return [f"Jobs without a result here: {summary} (listed under Failed jobs); their rows average the seeds that ran."]


def conversations(results: Results, dataset: str) -> list[str]:
    """Sentences under the conversation table: GMTRouter against each other router on later turns."""
    variants = [v for v in results.variants(dataset, "record") if v != MAIN]
    if not results.values(dataset, "record", MAIN, "conversation.records"):
        return []
    lines = []
    for other in variants:
        if not results.values(dataset, "record", other, "conversation.records"):
            continue
        accuracy = results.paired(dataset, "record", MAIN, other, "conversation.accuracy")
        utility = results.paired(dataset, "record", MAIN, other, "conversation.utility")
        line = f"GMTRouter minus {other} on turns >= 2: accuracy {_diff_text(accuracy)}"
        lines.append(line + (f"; utility {_diff_text(utility)}." if utility is not None else "."))
    return lines
