"""gmtrouter: personalized LLM routing learned from multi-turn feedback (GMTRouter)."""

from gmtrouter.utils.version import __version__

__all__ = ["__version__"]
