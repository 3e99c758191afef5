"""Errors of the web helpers.

::

    WebError                          500  api_generic_internal-error
    ├── ClientDisconnected  (ConnectionResetError)  499-style: the peer left (never rendered)
    ├── ServerStartFailed   (OSError)               503  api_setup_unavailable (bind failed)
    └── CORSRejected                  403  api_authorize_forbidden (preflight refused)
"""

from __future__ import annotations

from ..exception import PROBLEM_BASE_URI, BackendAIError, ErrorDetail, ErrorDomain, ErrorOperation

__all__ = ("CORSRejected", "ClientDisconnected", "ServerStartFailed", "WebError")


class WebError(BackendAIError):
    """Base of the web helpers' errors."""

    error_type = PROBLEM_BASE_URI + "web-error"
    error_domain = ErrorDomain.API


class ClientDisconnected(WebError, ConnectionResetError):
    """The client closed the connection of a streaming response."""

    error_type = PROBLEM_BASE_URI + "client-disconnected"
    error_title = "Client disconnected."
    status_code = 499
    error_operation = ErrorOperation.REQUEST
    error_detail = ErrorDetail.CANCELED


class ServerStartFailed(WebError, OSError):
    """The server could not listen on its address (port in use, permission, bad host)."""

    error_type = PROBLEM_BASE_URI + "server-start-failed"
    error_title = "Server failed to start."
    status_code = 503
    error_operation = ErrorOperation.SETUP
    error_detail = ErrorDetail.UNAVAILABLE


class CORSRejected(WebError):
    """A CORS preflight asked for an origin, method or header that is not allowed."""

    error_type = PROBLEM_BASE_URI + "cors-rejected"
    error_title = "CORS request rejected."
    status_code = 403
    error_operation = ErrorOperation.AUTHORIZE
    error_detail = ErrorDetail.FORBIDDEN
