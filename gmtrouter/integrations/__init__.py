"""gmtrouter inside other tools: a client for the router (in process or over HTTP) and the gateways that use it.

`client` asks a router for a route and sends feedback back, whether the router is a `gmtrouter.api.Router` in
this process or a `gmtrouter serve` service; `litellm` plugs that into LiteLLM's Router and proxy
(`docs/integrations.md`). Nothing in the rest of the package imports from here.
"""
