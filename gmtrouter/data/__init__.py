"""Data: the canonical interaction record, query x LLM matrices, loaders, the user simulator, splits."""

from gmtrouter.data.schema import Interaction, Response, read_records, write_records

__all__ = ["Interaction", "Response", "read_records", "write_records"]
