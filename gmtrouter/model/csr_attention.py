"""Multi-head attention over a fixed sparsity pattern, computed with sparse CSR kernels.

Each destination node attends over all of its incoming edges, one softmax per head. The textbook way gathers
keys, queries and values per edge, which builds tensors of shape [edges, channels] several times in the
forward and the backward pass; on CPU that memory traffic is where the time goes. Here the heads are
interleaved into the rows of one CSR matrix, so that

    scores = SDDMM(pattern, q, k)          # torch.sparse.sampled_addmm: one dot product per stored entry
    out    = SpMM(softmax(scores), v)      # CSR @ dense (MKL on CPU)

and the backward pass is two more SDDMM / SpMM pairs. Nothing of size [edges, channels] is ever built; the
per-entry tensors are [edges * heads].

Layout: with H heads of D channels, a node-major tensor [N, H * D] is viewed as [N * H, D]; row n * H + h is
head h of node n. The pattern has one row per (destination, head) and, in that row, the column src * H + h for
every incoming edge, so a head only ever meets the same head of another node.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

# PyG's softmax adds the same constant to the denominator; keeping it makes outputs match to the last bits.
_EPS = 1e-16


@dataclass(frozen=True)
class AttentionPattern:
    """CSR pattern of one destination type's attention, heads interleaved, plus its transpose.

    Built once per graph by `build_pattern` and reusable by any number of layers with the same head count.
    """

    num_dst: int
    num_src: int
    heads: int
    crow: Tensor  # [num_dst * heads + 1] row pointers; row dst * heads + h
    col: Tensor  # [nnz] column src * heads + h of every stored entry
    row: Tensor  # [nnz] row of every stored entry (to broadcast per-row values back to entries)
    crow_t: Tensor  # [num_src * heads + 1] row pointers of the transposed pattern
    col_t: Tensor  # [nnz] columns of the transposed pattern
    perm_t: Tensor  # [nnz] entry i of the transpose is entry perm_t[i] of the pattern

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @property
    def num_edges(self) -> int:
        return self.nnz // self.heads


def _interleave(keys: Tensor, num: int, heads: int) -> tuple[Tensor, Tensor]:
    """Row pointers and entry positions for edges sorted by `keys`, each edge repeated once per head.

    Node i owns deg_i edges starting at edge start_i; its head h row holds entries
    [start_i * H + h * deg_i, start_i * H + (h + 1) * deg_i). Returns crow [num * H + 1] and pos [E, H].
    """
    deg = torch.bincount(keys, minlength=num)
    start = torch.cumsum(deg, 0) - deg
    h = torch.arange(heads, device=keys.device)
    crow = torch.zeros(num * heads + 1, dtype=torch.long, device=keys.device)
    crow[1:] = ((start * heads).unsqueeze(1) + (h + 1).unsqueeze(0) * deg.unsqueeze(1)).flatten()
    within = torch.arange(keys.numel(), device=keys.device) - start[keys]
    pos = (start[keys] * heads + within).unsqueeze(1) + h.unsqueeze(0) * deg[keys].unsqueeze(1)
    return crow, pos


def build_pattern(src: Tensor, dst: Tensor, num_src: int, num_dst: int, heads: int) -> AttentionPattern:
    """Pattern for edges src -> dst (1-D index tensors of equal length); duplicate edges are kept."""
    src, dst = src.long().flatten(), dst.long().flatten()
    if src.numel() != dst.numel():
        raise ValueError(f"src and dst differ in length ({src.numel()} vs {dst.numel()})")
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_src):
        raise ValueError(f"source index out of range [0, {num_src})")
    if dst.numel() and (int(dst.min()) < 0 or int(dst.max()) >= num_dst):
        raise ValueError(f"destination index out of range [0, {num_dst})")
    h = torch.arange(heads, device=src.device)
    nnz = src.numel() * heads

    # Sort by (dst, src): rows of the CSR are contiguous and each row reads its sources in order.
    order = torch.argsort(dst * num_src + src, stable=True)
    src, dst = src[order], dst[order]
    crow, pos = _interleave(dst, num_dst, heads)
    col, row = torch.empty(2, nnz, dtype=torch.long, device=src.device)
    col[pos.flatten()] = (src.unsqueeze(1) * heads + h).flatten()
    row[pos.flatten()] = (dst.unsqueeze(1) * heads + h).flatten()

    # The transpose (rows per source) serves the gradients of keys and values.
    order_t = torch.argsort(src * num_dst + dst, stable=True)
    crow_t, pos_t = _interleave(src[order_t], num_src, heads)
    col_t, perm_t = torch.empty(2, nnz, dtype=torch.long, device=src.device)
    col_t[pos_t.flatten()] = (dst[order_t].unsqueeze(1) * heads + h).flatten()
    perm_t[pos_t.flatten()] = pos[order_t].flatten()
    # MKL's sparse kernels take 32-bit indices; int64 ones would be converted on every call.
    small = max(nnz, num_src * heads, num_dst * heads) < 2**31
    idx = [t.int() if small else t for t in (crow, col, row, crow_t, col_t, perm_t)]
    return AttentionPattern(num_dst, num_src, heads, *idx)


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        # torch flags every sparse CSR tensor as beta; the kernels used here are covered by our tests.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _sddmm(p: AttentionPattern, a: Tensor, b: Tensor) -> Tensor:
    """Per stored entry (r, c): a[r] . b[c]. a [num_dst * H, D], b [num_src * H, D] -> [nnz]."""
    mask = _csr(p.crow, p.col, a.new_zeros(p.nnz), (a.size(0), b.size(0)))
    return torch.sparse.sampled_addmm(mask, a, b.t(), beta=0.0).values()


def _matmul(sparse: Tensor, dense: Tensor) -> Tensor:
    """sparse @ dense into a fresh tensor.

    `sparse @ dense` zero-fills its result and then copies it once more; addmm with beta=0 into an empty
    tensor (whose contents addmm then ignores, as documented) writes the product once.
    """
    out = dense.new_empty(sparse.size(0), dense.size(1))
    return torch.addmm(out, sparse, dense, beta=0.0, out=out)


def _spmm(p: AttentionPattern, values: Tensor, dense: Tensor) -> Tensor:
    """Pattern with `values` times dense [num_src * H, D] -> [num_dst * H, D]."""
    return _matmul(_csr(p.crow, p.col, values, (p.num_dst * p.heads, dense.size(0))), dense)


def _spmm_t(p: AttentionPattern, values: Tensor, dense: Tensor) -> Tensor:
    """Transposed pattern with `values` (pattern order) times dense [num_dst * H, D] -> [num_src * H, D]."""
    a_t = _csr(p.crow_t, p.col_t, values.index_select(0, p.perm_t), (p.num_src * p.heads, dense.size(0)))
    return _matmul(a_t, dense)


def _row_reduce(values: Tensor, p: AttentionPattern, reduce: str) -> Tensor:
    """Per-row max or sum of entry values, broadcast back to the entries: [nnz] -> [nnz]."""
    return torch.segment_reduce(values, reduce, offsets=p.crow, unsafe=True).index_select(0, p.row)


class _PatternAttention(torch.autograd.Function):
    """softmax-per-row(SDDMM(q, k)) @ v with a hand-written backward that stays sparse."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, p: AttentionPattern) -> Tensor:  # type: ignore[override]
        score = _sddmm(p, q, k)
        # Subtracting the row maximum changes nothing mathematically and keeps exp() finite.
        ex = (score - _row_reduce(score, p, "max")).exp_()
        alpha = ex / (_row_reduce(ex, p, "sum") + _EPS)
        ctx.pattern = p
        ctx.save_for_backward(q, k, v, alpha)
        return _spmm(p, alpha, v)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, alpha = ctx.saved_tensors
        p: AttentionPattern = ctx.pattern
        grad_out = grad_out.contiguous()
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        grad_q = grad_k = grad_v = None
        if need_v:
            grad_v = _spmm_t(p, alpha, grad_out)
        if need_q or need_k:
            # d softmax: alpha * (g - sum_row(alpha * g)), g = dL/dalpha = grad_out[r] . v[c].
            weighted = alpha * _sddmm(p, grad_out, v)
            grad_score = weighted - alpha * _row_reduce(weighted, p, "sum")
            if need_q:
                grad_q = _spmm(p, grad_score, k)
            if need_k:
                grad_k = _spmm_t(p, grad_score, q)
        return grad_q, grad_k, grad_v, None


def pattern_attention(q: Tensor, k: Tensor, v: Tensor, p: AttentionPattern) -> Tensor:
    """Multi-head attention of every destination over its pattern row.

    q: [num_dst * H, D] queries; k, v: [num_src * H, D] keys and values (node-major, heads interleaved).
    Returns [num_dst * H, D]: sum over the row's edges of softmax(q . k) * v; zero for rows without edges.
    Differentiable once in q, k and v.
    """
    if p.nnz == 0:
        return q.new_zeros(p.num_dst * p.heads, v.size(1))
    return _PatternAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), p)
