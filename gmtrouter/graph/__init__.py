"""The interaction graph: flattened records, graph building, user-conditioned sampling."""
