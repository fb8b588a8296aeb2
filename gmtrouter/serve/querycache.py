"""The service's query encoder: the bounded query LRU of `gmtrouter.querycache`, shared with the Python API."""

from gmtrouter.querycache import QueryCacheEncoder as ServiceEncoder

__all__ = ["ServiceEncoder"]
