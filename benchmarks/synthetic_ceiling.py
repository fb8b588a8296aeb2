"""How far a router can get on synthetic users when it knows each answer before routing.

    python -m benchmarks.synthetic_ceiling --dataset gsm8k --seeds 0,1,2

The oracle of `data stats` scores with the simulator's true utilities: each user's true weights and
the choice noise aside, nothing is estimated. A router has to estimate each user's taste from their
training records. This script fits one logistic regression per user on the pairs of that user's
training records (the record split of benchmarks/synthetic_users.py) with two feature sets:

- `llm`: which LLM answered (one-hot): a per-user Bradley-Terry model, what `user-winrate` estimates;
- `llm + answer`: also the answer's true correctness (the matrix score), ln cost and tokens, which no
  router sees before the LLM has answered.

The second is a generous ceiling for any router that learns a user's taste from their history:
the gap between it and the oracle is the cost of estimating ~6 weights from ~40 noisy choices.
Writes benchmarks/out/synthetic_ceiling_<dataset>.json.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression

from benchmarks.common import OUT, save_json, synthetic_arguments, synthetic_users
from gmtrouter.data.matrix import read_matrix
from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.stats import oracle_metrics


def pair_features(
    records: list[Interaction], llms: dict[str, int], cells: dict, with_answer: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user index per pair, feature difference first - second, label first wins) over differently rated pairs."""
    users, diffs, labels = [], [], []
    width = len(llms) + (3 if with_answer else 0)

    def features(record: Interaction, llm: str) -> np.ndarray:
        x = np.zeros(width)
        x[llms[llm]] = 1.0
        if with_answer:
            cell = cells[record.meta["matrix_id"]][llm]
            x[len(llms) :] = (cell.score, np.log((cell.cost or 0.0) + 1e-9) / 5, (cell.tokens or 0) / 200)
        return x

    for record in records:
        for i, a in enumerate(record.responses):
            for b in record.responses[i + 1 :]:
                if a.rating != b.rating:
                    users.append(record.user)
                    diffs.append(features(record, a.llm) - features(record, b.llm))
                    labels.append(int(a.rating > b.rating))
    return np.asarray(users), np.asarray(diffs), np.asarray(labels)


def per_user_accuracy(train: tuple, test: tuple, c: float = 1.0) -> float:
    """Accuracy on test pairs of one antisymmetric logistic regression per user fitted on their train pairs."""
    train_users, train_x, train_y = train
    test_users, test_x, test_y = test
    rows: dict[str, list[int]] = defaultdict(list)
    for index, user in enumerate(train_users):
        rows[user].append(index)
    correct = 0
    for user in np.unique(test_users):
        mine = np.flatnonzero(test_users == user)
        fit = rows.get(user, [])
        if not fit:
            continue
        x, y = train_x[fit], train_y[fit]
        model = LogisticRegression(C=c, fit_intercept=False).fit(np.r_[x, -x], np.r_[y, 1 - y])
        correct += int(((test_x[mine] @ model.coef_[0] > 0) == (test_y[mine] == 1)).sum())
    return correct / len(test_y)


def main() -> None:
    args = synthetic_arguments(__doc__.splitlines()[0])
    records = synthetic_users(args.data_dir, args.dataset)
    cells = {row.id: row.responses for row in read_matrix(OUT / f"{args.dataset}_matrix.jsonl")}
    llms = {name: i for i, name in enumerate(sorted({x.llm for r in records for x in r.responses}))}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train, test = split_records(records, "record", 0.2, seed)
        row = {"seed": seed, "oracle": oracle_metrics(test)["accuracy"]}
        for name, with_answer in (("llm", False), ("llm + answer", True)):
            row[name] = per_user_accuracy(
                pair_features(train, llms, cells, with_answer), pair_features(test, llms, cells, with_answer)
            )
        rows.append(row)
    table = Table(title=f"per-user logistic regression on synthetic users over {args.dataset}, known users")
    for column in ("features", "accuracy (mean)", "per seed"):
        table.add_column(column)
    for key in ("llm", "llm + answer", "oracle"):
        values = [r[key] for r in rows]
        table.add_row(key, f"{np.mean(values):.4f}", " ".join(f"{v:.3f}" for v in values))
    Console().print(table)
    save_json(f"synthetic_ceiling_{args.dataset}", rows)


if __name__ == "__main__":
    main()
