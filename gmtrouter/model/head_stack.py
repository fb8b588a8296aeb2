"""Per-head linear maps of several node blocks, written straight into one stacked tensor.

HGT maps the keys (and values) of every relation's source nodes with one [D, D] matrix per head, then stacks
the blocks of all relations that end at the same node type. A plain torch.bmm returns a head-major result
that needs a transposing copy back to node-major and then a torch.cat; those copies cost more than the
products. Here each block's bmm reads the heads as strided views of the node-major input and writes, through
`out=`, every head straight into its column slice of the stacked output (BLAS takes the row stride); the
backward pass does the same, so nothing is copied.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _by_head(x: Tensor, heads: int) -> Tensor:
    """View [N, H * D] as [H, N, D] without copying (batch stride D, row stride H * D)."""
    return x.view(x.size(0), heads, -1).transpose(0, 1)


def _per_head_mm(x: Tensor, weight: Tensor, out: Tensor, transpose: bool = False) -> None:
    """out[:, head h] = x[:, head h] @ weight[h] (or weight[h].T); x, out: [N, H * D], weight: [H, D, D]."""
    heads = weight.size(0)
    torch.bmm(_by_head(x, heads), weight.transpose(1, 2) if transpose else weight, out=_by_head(out, heads))


class _HeadStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, count: int, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        xs, weights = tensors[:count], tensors[count:]
        out = xs[0].new_empty(sum(x.size(0) for x in xs), xs[0].size(1))
        start = 0
        for x, w in zip(xs, weights, strict=True):
            _per_head_mm(x, w, out[start : start + x.size(0)])
            start += x.size(0)
        ctx.count = count
        ctx.save_for_backward(*tensors)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        tensors = ctx.saved_tensors
        grad = grad.contiguous()
        xs, weights = tensors[: ctx.count], tensors[ctx.count :]
        need = ctx.needs_input_grad[1:]
        grad_xs: list[Tensor | None] = []
        grad_ws: list[Tensor | None] = []
        start = 0
        for i, (x, w) in enumerate(zip(xs, weights, strict=True)):
            g = grad[start : start + x.size(0)]
            start += x.size(0)
            grad_x = grad_w = None
            if need[i]:
                grad_x = torch.empty_like(x)
                _per_head_mm(g, w, grad_x, transpose=True)
            if need[ctx.count + i]:
                grad_w = torch.bmm(_by_head(x, len(w)).transpose(1, 2), _by_head(g, len(w)))
            grad_xs.append(grad_x)
            grad_ws.append(grad_w)
        return (None, *grad_xs, *grad_ws)


def stack_per_head(xs: list[Tensor], weights: list[Tensor]) -> Tensor:
    """cat([x_i @ blockdiag(weights_i) for i]): xs[i] [N_i, H * D], weights[i] [H, D, D] -> [sum N_i, H * D].

    Differentiable once in every x and weight; a tensor may appear in xs more than once.
    """
    if len(xs) != len(weights) or not xs:
        raise ValueError("need one [H, D, D] weight per block, and at least one block")
    return _HeadStack.apply(len(xs), *[x.contiguous() for x in xs], *weights)
