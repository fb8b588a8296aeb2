"""The static encoder against MiniLM (int8 ONNX): GMTRouter's accuracy, AUC, train time and route time on every
dataset and setting of `gmtrouter bench`, from two bench runs that differ only in `--encoder`.

    gmtrouter bench --routers gmtrouter --seeds 0 --out runs/enc-minilm --report runs/enc-minilm/results.md
    gmtrouter bench --routers gmtrouter --seeds 0 --encoder static --out runs/enc-static \
        --report runs/enc-static/results.md
    python -m benchmarks.encoder_quality --minilm runs/enc-minilm --static runs/enc-static

Prints a Markdown table (mean over the seeds both runs finished; new users at k = 0 and k = 20), writes it with
the per-seed values to benchmarks/out/encoder_quality.json and a plot of the accuracy differences to
benchmarks/out/encoder_quality.png. The encoding cost of a fresh query (server CPU a route pays for it) is
measured here on MT-Bench's 80 questions, each encoded alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt

from benchmarks.common import DEFAULT_DATA, OUT, mt_bench, save_json

SETTINGS = (("record", 0, "known users"), ("user", 0, "new users, k = 0"), ("user", 20, "new users, k = 20"))
SETTINGS += (("query", 0, "new queries"),)
GATE = 0.005  # the most accuracy a default encoder may lose on any dataset and setting


def results(run: Path) -> dict[tuple[str, str, int], dict]:
    """(dataset, split, seed) -> the finished GMTRouter job's result."""
    found = {}
    for path in sorted((run / "results").glob("*/*/seed*/gmtrouter.*.json")):
        result = json.loads(path.read_text())
        if result.get("status") == "ok":
            job = result["job"]
            found[job["dataset"], job["split"], int(job["seed"])] = result
    return found


def reads_text(result: dict) -> str:
    """Whether the fitted model reads a query's vector: its residual kept (best step > 0) or its topics on."""
    log = result.get("training_log", {})
    backbone = log.get("backbone") or {}
    topics = any(backbone.get(name) is not None for name in ("topic_prior", "task_prior"))
    residual = (log.get("best_step") or 0) > 0
    return "residual" if residual else "topics" if topics else "no"


def encode_ms(name: str, texts: list[str]) -> float:
    """CPU ms to encode one query alone (median over `texts`), the encoder warm."""
    from gmtrouter.text.encoders import get_encoder

    encoder = get_encoder(name, cache=False)
    encoder.encode(texts[:4])
    times = []
    for text in texts:
        started = time.process_time()
        encoder.encode([text])
        times.append(1000 * (time.process_time() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, default=Path("runs/enc-minilm"))
    parser.add_argument("--static", type=Path, default=Path("runs/enc-static"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    runs = {"minilm": results(args.minilm), "static": results(args.static)}
    rows, worst = [], 0.0
    datasets = sorted({key[0] for run in runs.values() for key in run})
    for dataset in datasets:
        for split, shots, label in SETTINGS:
            seeds = sorted({s for d, p, s in runs["minilm"] if (d, p) == (dataset, split)})
            seeds = [s for s in seeds if (dataset, split, s) in runs["static"]]
            if not seeds:
                continue
            row: dict = {"dataset": dataset, "setting": label, "seeds": seeds}
            for name, run in runs.items():
                picked = [run[dataset, split, s] for s in seeds]
                evaluations = [r["evaluations"][str(shots)] for r in picked]
                row[f"{name}_accuracy"] = statistics.fmean(e["accuracy"] for e in evaluations)
                row[f"{name}_auc"] = statistics.fmean(e["auc"] for e in evaluations if e["auc"] is not None)
                row[f"{name}_train_s"] = statistics.fmean(r["train_seconds"] for r in picked)
                latency = [r["latency"]["median_ms"] for r in picked if r.get("latency")]
                row[f"{name}_route_ms"] = statistics.fmean(latency) if latency else None
                row[f"{name}_reads"] = ",".join(sorted({reads_text(r) for r in picked}))
            row["accuracy_diff"] = row["static_accuracy"] - row["minilm_accuracy"]
            row["auc_diff"] = row["static_auc"] - row["minilm_auc"]
            worst = min(worst, row["accuracy_diff"])
            rows.append(row)
    questions = sorted({r.query for r in mt_bench(args.data_dir / "mt_bench")})
    encode = {"minilm": encode_ms("all-MiniLM-L6-v2", questions), "static": encode_ms("static", questions)}
    save_json("encoder_quality", {"rows": rows, "encode_ms": encode, "worst_accuracy_diff": worst})
    print(table(rows))
    minilm, static = encode["minilm"], encode["static"]
    print(f"\nencoding one MT-Bench question, median CPU ms: MiniLM (int8 ONNX) {minilm:.2f}, static {static:.3f}")
    loss = max(0.0, -worst)
    print(f"largest accuracy loss: {loss:.4f} (gate {GATE}): {'within' if loss <= GATE else 'over'} the gate")
    plot(rows, OUT / "encoder_quality.png")


def table(rows: list[dict]) -> str:
    def cell(value: float | None, digits: int = 3) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = [
        "| dataset | setting | accuracy MiniLM | accuracy static | diff | AUC MiniLM | AUC static | diff "
        "| train s MiniLM / static | route ms MiniLM / static | reads the vector (MiniLM / static) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['setting']} | {cell(r['minilm_accuracy'])} | {cell(r['static_accuracy'])} "
            f"| {r['accuracy_diff']:+.3f} | {cell(r['minilm_auc'])} | {cell(r['static_auc'])} | {r['auc_diff']:+.3f} "
            f"| {r['minilm_train_s']:.0f} / {r['static_train_s']:.0f} "
            f"| {cell(r['minilm_route_ms'], 2)} / {cell(r['static_route_ms'], 2)} "
            f"| {r['minilm_reads']} / {r['static_reads']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy of static minus MiniLM per dataset and setting, the gate drawn."""
    labels = [f"{r['dataset']}\n{r['setting']}" for r in rows]
    diffs = [r["accuracy_diff"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(rows)), 4.5))
    ax.bar(range(len(rows)), diffs, color=["tab:red" if d < -GATE else "tab:blue" for d in diffs])
    ax.axhline(-GATE, color="grey", linestyle="--", label=f"-{GATE} (the gate)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy, static - MiniLM")
    span = max(0.02, *(abs(d) for d in diffs)) * 1.2
    ax.set_ylim(-span, span)
    ax.legend(loc="upper right")
    ax.set_title("GMTRouter with the static encoder against MiniLM (int8 ONNX)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
