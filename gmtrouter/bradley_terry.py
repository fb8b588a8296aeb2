"""L2-regularised Bradley-Terry strengths for many groups at once (one per user, or one for everybody).

For each group g it minimises  sum_pairs logloss(target, offset + θ_g[i] - θ_g[j]) + l2/2 ||θ_g||²  by
Newton's method with step halving, every group in the same arrays. A tie's target of 0.5 is the same as
counting half a win for each side. `offset` carries a prior score difference (the global strengths, or a
network's scores), so θ_g is the group's deviation from that prior and `l2` how strongly it is pulled back.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit


def _objective(theta, group, first, second, target, offset, l2, n_groups) -> np.ndarray:
    z = offset + theta[group, first] - theta[group, second]
    loss = -(target * log_expit(z) + (1 - target) * log_expit(-z))
    return np.bincount(group, weights=loss, minlength=n_groups) + 0.5 * l2 * (theta**2).sum(axis=1)


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
) -> np.ndarray:
    """[n_groups, n_llms] strengths; a group without pairs stays at 0 (the prior)."""
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    group, first, second = (np.asarray(x, dtype=np.int64) for x in (group, first, second))
    target = np.asarray(target, dtype=np.float64)
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), target.shape)
    theta = np.zeros((n_groups, n_llms))
    ridge = l2 * np.eye(n_llms)
    current = _objective(theta, group, first, second, target, offset, l2, n_groups)
    for _ in range(iterations):
        p = expit(offset + theta[group, first] - theta[group, second])
        residual, weight = p - target, p * (1 - p)
        grad = l2 * theta
        np.add.at(grad, (group, first), residual)
        np.add.at(grad, (group, second), -residual)
        hess = np.repeat(ridge[None], n_groups, axis=0)
        np.add.at(hess, (group, first, first), weight)
        np.add.at(hess, (group, second, second), weight)
        np.add.at(hess, (group, first, second), -weight)
        np.add.at(hess, (group, second, first), -weight)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        scale = np.ones(n_groups)
        for _ in range(30):  # halve the step of any group whose objective would rise
            candidate = theta - scale[:, None] * step
            value = _objective(candidate, group, first, second, target, offset, l2, n_groups)
            worse = value > current + 1e-12
            if not worse.any():
                break
            scale[worse] *= 0.5
        theta, current = candidate, value
        if np.abs(scale[:, None] * step).max() < tol:
            break
    return theta
