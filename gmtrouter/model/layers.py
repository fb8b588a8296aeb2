"""The message-passing layer behind the encoder, chosen by name.

- `hgt`: our HGT layer (same maths and parameters as PyG's HGTConv, built from gathers and batched matmuls).
- `pyg-hgt`: PyG's HGTConv itself, kept for checking equivalence and speed.
- `sage`: a heterogeneous GraphSAGE (one SAGEConv per relation, summed): the no-attention ablation.
"""

from __future__ import annotations

from torch import nn

from gmtrouter.utils.errors import GmtError

LAYER_KINDS = ("hgt", "pyg-hgt", "sage")


def make_layer(kind: str, hidden: int, metadata: tuple[list[str], list], heads: int) -> nn.Module:
    """A layer mapping {node type: [n, hidden]} and typed edges to new {node type: [n, hidden]}."""
    if kind == "hgt":
        from gmtrouter.model.hgt import HGTLayer

        return HGTLayer(hidden, hidden, metadata, heads=heads)
    if kind == "pyg-hgt":
        from torch_geometric.nn import HGTConv

        return HGTConv(hidden, hidden, metadata, heads=heads)
    if kind == "sage":
        from torch_geometric.nn import HeteroConv, SAGEConv

        return HeteroConv({edge: SAGEConv((hidden, hidden), hidden) for edge in metadata[1]}, aggr="sum")
    raise GmtError(f"unknown layer '{kind}'; choose one of: {', '.join(LAYER_KINDS)}")
