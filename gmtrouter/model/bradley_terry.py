"""Regularised Bradley-Terry strengths for many groups at once (one per user, or one for everybody).

For each group g it minimises  sum_pairs logloss(target, offset + θ_g[i] - θ_g[j]) + penalty(θ_g)  by
Newton's method with step halving, every group in the same arrays. A tie's target of 0.5 is the same as
counting half a win for each side. `offset` carries a prior score difference (the global strengths, or a
network's scores), so θ_g is the group's deviation from that prior and the penalty how strongly it is pulled
back. The penalty is Gaussian, l2/2 θ², or with a finite `tail` ν a Student-t one, ν/2 log(1 + l2 θ²/ν): as
stiff as the Gaussian near 0, but its pull fades for large deviations, so a few noisy votes stay shrunk while
many consistent ones move the strengths freely (the t penalty is minimised through its quadratic majoriser,
which makes every Newton step a descent step).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, log_expit


def penalty(theta: np.ndarray, l2: float, tail: float | np.ndarray) -> np.ndarray:
    """[groups] the prior's penalty of each group's strengths; `tail` is one ν or one per column (inf: Gaussian)."""
    tail = np.broadcast_to(np.asarray(tail, dtype=np.float64), theta.shape[-1:])
    gaussian = np.isinf(tail)
    nu = np.where(gaussian, 1.0, tail)
    terms = np.where(gaussian, 0.5 * l2 * theta**2, 0.5 * nu * np.log1p(l2 * theta**2 / nu))
    return terms.sum(axis=1)


def prior_curvature(theta: np.ndarray, l2: float, tail: float | np.ndarray) -> np.ndarray:
    """The penalty's gradient is curvature x θ; for the t penalty this curvature majorises it."""
    tail = np.broadcast_to(np.asarray(tail, dtype=np.float64), theta.shape[-1:])
    gaussian = np.isinf(tail)
    nu = np.where(gaussian, 1.0, tail)
    return np.where(gaussian, l2, l2 / (1 + l2 * theta**2 / nu))


def _hessian(
    curvature: np.ndarray, group: np.ndarray, first: np.ndarray, second: np.ndarray, weight: np.ndarray, n_groups: int
) -> np.ndarray:
    """[n_groups, L, L] the objective's curvature: the prior's (`curvature` [n_groups, L], on the diagonal) plus
    each comparison's p(1 - p) (`weight`) on its two strengths. One `bincount` over the flat cells (the prior's
    first, then the comparisons in order: the same sums as adding them one by one, several times faster)."""
    n_llms = curvature.shape[1]
    diagonal = np.arange(n_groups)[:, None] * n_llms * n_llms + np.arange(n_llms) * (n_llms + 1)
    base = group * n_llms
    cells = np.concatenate(
        [
            diagonal.ravel(),
            (base + first) * n_llms + first,
            (base + second) * n_llms + second,
            (base + first) * n_llms + second,
            (base + second) * n_llms + first,
        ]
    )
    weights = np.concatenate([curvature.ravel(), weight, weight, -weight, -weight])
    return np.bincount(cells, weights, minlength=n_groups * n_llms * n_llms).reshape(n_groups, n_llms, n_llms)


def _gradient(
    theta: np.ndarray,
    curvature: np.ndarray,
    group: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    residual: np.ndarray,
) -> np.ndarray:
    """[n_groups, L] the objective's gradient: the prior's (curvature x θ) plus each comparison's p - target
    (`residual`) on its first strength and its negative on its second, summed in that order."""
    n_groups, n_llms = theta.shape
    cells = np.concatenate([np.arange(n_groups * n_llms), group * n_llms + first, group * n_llms + second])
    weights = np.concatenate([(curvature * theta).ravel(), residual, -residual])
    return np.bincount(cells, weights, minlength=n_groups * n_llms).reshape(n_groups, n_llms)


def log_loss(target: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Each comparison's logistic loss, -log P(its outcome), at score difference `z` (first minus second); a
    tie's target of 0.5 counts half a win each way."""
    return -(target * log_expit(z) + (1 - target) * log_expit(-z))


def _objective(theta, group, first, second, target, offset, l2, tail, n_groups) -> np.ndarray:
    loss = log_loss(target, offset + theta[group, first] - theta[group, second])
    return np.bincount(group, weights=loss, minlength=n_groups) + penalty(theta, l2, tail)


def bradley_terry(
    group: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    target: np.ndarray,
    n_groups: int,
    n_llms: int,
    l2: float,
    offset: np.ndarray | float = 0.0,
    iterations: int = 50,
    tol: float = 1e-9,
    tail: float | np.ndarray = math.inf,
    blocks: np.ndarray | None = None,
) -> np.ndarray:
    """[n_groups, n_llms] strengths; a group without pairs stays at 0 (the prior). `tail`: one ν for every
    column or one per column. `blocks` [n_groups]: independent problems solved side by side (one per taste
    community, say); each stops when its own steps are below `tol`, so each block's strengths are exactly those
    of a call of its own, at the cost of one call."""
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    tail = np.broadcast_to(np.asarray(tail, dtype=np.float64), (n_llms,))
    if (tail <= 0).any():
        raise ValueError(f"tail must be positive, got {tail}")
    group, first, second = (np.asarray(x, dtype=np.int64) for x in (group, first, second))
    target = np.asarray(target, dtype=np.float64)
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), target.shape)
    blocks = np.zeros(n_groups, dtype=np.int64) if blocks is None else np.asarray(blocks, dtype=np.int64)
    n_blocks = int(blocks.max()) + 1 if n_groups else 0
    active = np.ones(n_groups, dtype=bool)  # groups of the blocks still iterating
    theta = np.zeros((n_groups, n_llms))
    current = _objective(theta, group, first, second, target, offset, l2, tail, n_groups)
    for _ in range(iterations):
        p = expit(offset + theta[group, first] - theta[group, second])
        curvature = prior_curvature(theta, l2, tail)
        grad = _gradient(theta, curvature, group, first, second, p - target)
        hess = _hessian(curvature, group, first, second, p * (1 - p), n_groups)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        scale = np.ones(n_groups)
        for _ in range(30):  # halve the step of any group whose objective would rise
            candidate = theta - scale[:, None] * step
            value = _objective(candidate, group, first, second, target, offset, l2, tail, n_groups)
            worse = (value > current + 1e-12) & active
            if not worse.any():
                break
            scale[worse] *= 0.5
        theta = np.where(active[:, None], candidate, theta)
        current = np.where(active, value, current)
        moves = np.abs(scale[active, None] * step[active]).max(axis=1)
        if n_blocks == 1:
            active &= moves.max() >= tol
        else:
            largest = np.zeros(n_blocks)
            np.maximum.at(largest, blocks[active], moves)
            active &= largest[blocks] >= tol
        if not active.any():
            break
    return theta


def laplace(
    theta: np.ndarray,
    group: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    target: np.ndarray,
    l2: float,
    offset: np.ndarray | float = 0.0,
    tail: float | np.ndarray = math.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """(variance [n_groups, n_llms], log evidence [n_groups]) of fitted strengths `theta` (Laplace, at the fit):
    each strength's posterior variance, the diagonal of the inverse of the objective's curvature (a group
    without comparisons keeps the prior's, 1 / l2; a strength compared often has a small one: how sure the fit
    is, which exploration reads), and the log of how well the group's comparisons are explained under this
    prior, minus the objective at the fit less half the log-determinant of its curvature over the prior's:
    comparing it across priors (taste communities) says which one the group's votes come from."""
    n_groups, n_llms = theta.shape
    tail = np.broadcast_to(np.asarray(tail, dtype=np.float64), (n_llms,))
    group, first, second = (np.asarray(x, dtype=np.int64) for x in (group, first, second))
    target = np.asarray(target, dtype=np.float64)
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), group.shape)
    p = expit(offset + theta[group, first] - theta[group, second])
    hess = _hessian(prior_curvature(theta, l2, tail), group, first, second, p * (1 - p), n_groups)
    _, logdet = np.linalg.slogdet(hess)
    evidence = -_objective(theta, group, first, second, target, offset, l2, tail, n_groups)
    return np.diagonal(np.linalg.inv(hess), axis1=1, axis2=2).copy(), evidence - 0.5 * (logdet - n_llms * math.log(l2))
