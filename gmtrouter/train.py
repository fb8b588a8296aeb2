"""Training GMTRouter: user-conditioned sampling, pairwise/listwise loss, early stopping on validation AUC."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import holdout_split
from gmtrouter.early_stopping import EarlyStopping
from gmtrouter.graph.build import targets
from gmtrouter.graph.sample import sample_step
from gmtrouter.metrics import evaluate_scores
from gmtrouter.model.loss import preference_loss

if TYPE_CHECKING:
    from gmtrouter.model.gmtrouter import GMTRouter


def _validation_split(router: GMTRouter, train: list[Interaction]) -> tuple[list[Interaction], list[Interaction]]:
    """Hold out a share of each user's records (known-user style) when there is enough data."""
    return holdout_split(train, router.valid_frac, router.seed)


def train_network(router: GMTRouter, train: list[Interaction], valid: Sequence[Interaction] | None) -> dict[str, Any]:
    """Fit `router.net_` in place; return a log of the run (steps, best validation AUC, seconds)."""
    started = time.perf_counter()
    if valid is None:
        train, valid = _validation_split(router, train)
    valid = list(valid)
    table = router.table(train + valid)
    train_ids = np.arange(len(train))
    valid_ids = np.arange(len(train), len(train) + len(valid))
    rng = np.random.default_rng(router.seed)
    torch.manual_seed(router.seed)
    net = router.net_
    optimizer = torch.optim.AdamW(net.parameters(), lr=router.lr, weight_decay=router.weight_decay)
    sampling = router.sampling()

    valid_graph = router.graph(table, train_ids, extra_users=table.rec_user[valid_ids]) if valid else None
    valid_batch = targets(table, valid_graph, valid_ids) if valid else None
    full_graph = None if router.user_sampling else router.graph(table, train_ids)

    stopping = EarlyStopping(net, router.patience)
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, router.steps + 1), desc="training", unit="step", disable=not router.progress)
    for step in bar:
        net.train()
        if router.user_sampling:
            visible, hidden = sample_step(table.rec_user[train_ids], sampling, rng)
            graph = router.graph(table, train_ids[visible], extra_users=table.rec_user[train_ids[hidden]])
        else:  # ablation: one graph of everything, targets drawn from inside it
            hidden = rng.choice(train_ids, min(len(train_ids), sampling.targets_per_step), replace=False)
            graph = full_graph
        batch = targets(table, graph, train_ids[hidden] if router.user_sampling else hidden)
        loss = preference_loss(net(graph, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()

        if valid_batch is not None and (step % router.eval_every == 0 or step == router.steps):
            auc = _validation_auc(net, valid_graph, valid_batch, valid)
            history.append({"step": step, "loss": loss.item(), "valid_auc": auc})
            bar.set_postfix(loss=f"{loss.item():.3f}", valid_auc=f"{auc:.3f}")
            if stopping.check(step, auc):
                break
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    stopping.restore()
    net.eval()
    return {
        "steps": step,
        "best_step": stopping.best_step or step,
        "best_valid_auc": stopping.best_score,
        "stop": stopping.summary(router.steps),
        "train_records": len(train),
        "valid_records": len(valid),
        "seconds": round(time.perf_counter() - started, 2),
        "curve": history,
    }


def _validation_auc(net, graph, batch, records: Sequence[Interaction]) -> float:
    net.eval()
    with torch.no_grad():
        scores = net(graph, batch).numpy()
    counts = batch.mask.sum(dim=1).numpy()
    result = evaluate_scores(records, [scores[i, : counts[i]] for i in range(len(records))])
    auc = result["auc"]
    return float(auc) if auc == auc else float(result["accuracy"])
