"""The router as a service: HTTP API, feedback store, API keys, OpenAI-compatible proxy (docs/service.md)."""
