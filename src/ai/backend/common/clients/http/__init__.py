"""HTTP clients of layer 4: a pool of aiohttp sessions and the storage-proxy manager API client.

:class:`HTTPSessionPool` shares one aiohttp session per (endpoint, credentials), evicts idle
ones, propagates ``X-BackendAI-RequestID`` and ``traceparent``, and runs every request under a
per-endpoint resilience policy and deadline. :class:`StorageProxyClient` speaks upstream's
storage-proxy manager API with pydantic models and maps error statuses to
:class:`StorageProxyError` subclasses carrying the upstream ``error_code``.

Guarantees:
- sessions are keyed by endpoint and credentials and evicted when idle
  [tests/clients/http/test_pool.py::test_sessions_keyed_and_evicted];
- request id and traceparent reach the server
  [tests/clients/http/test_pool.py::test_context_headers_propagated];
- unsent requests are retried and outages open the breaker
  [tests/clients/http/test_pool.py::test_retry_and_breaker];
- no aiohttp error leaves a public call
  [tests/clients/http/test_pool.py::test_timeout_and_errors_mapped];
- storage-proxy errors carry the upstream error code
  [tests/clients/http/test_storage_proxy.py::test_errors_carry_upstream_code].
"""

from .exceptions import (
    HTTPClientError,
    HTTPPoolClosed,
    HTTPServerError,
    HTTPStatusError,
    HTTPTimeout,
    HTTPUnavailable,
    StorageProxyAuthFailed,
    StorageProxyBadRequest,
    StorageProxyConflict,
    StorageProxyError,
    StorageProxyNotFound,
    StorageProxyServerError,
)
from .pool import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    HTTPPoolStatistics,
    HTTPResponse,
    HTTPSessionPool,
    http_policy,
)
from .storage_proxy import (
    AUTH_HEADER,
    FolderUsage,
    QuotaScopeUsage,
    StorageProxyClient,
    StorageProxyStatus,
    VFolderEntry,
    VolumeInfo,
)

__all__ = (
    "AUTH_HEADER",
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "FolderUsage",
    "HTTPClientError",
    "HTTPPoolClosed",
    "HTTPPoolStatistics",
    "HTTPResponse",
    "HTTPServerError",
    "HTTPSessionPool",
    "HTTPStatusError",
    "HTTPTimeout",
    "HTTPUnavailable",
    "QuotaScopeUsage",
    "StorageProxyAuthFailed",
    "StorageProxyBadRequest",
    "StorageProxyClient",
    "StorageProxyConflict",
    "StorageProxyError",
    "StorageProxyNotFound",
    "StorageProxyServerError",
    "StorageProxyStatus",
    "VFolderEntry",
    "VolumeInfo",
    "http_policy",
)
