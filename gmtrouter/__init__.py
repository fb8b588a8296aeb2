"""gmtrouter: personalized LLM routing learned from multi-turn feedback (GMTRouter)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
