"""aiohttp helpers of Backend.AI services: responses, request parsing, SSE, server runner.

- ``json_response`` / ``problem_response``: orjson-encoded JSON and RFC 7807 bodies;
- ``parse_body`` / ``parse_query`` / ``parse_match_info``: pydantic models, 400s naming fields;
- ``SSEResponse``: server-sent events with keep-alives and client-disconnect detection;
- ``WebServer``: ``AppRunner`` + ``TCPSite`` with graceful, deadline-bound shutdown;
- ``metrics_handler``: the ``/metrics`` endpoint; ``anonymous`` marks routes served without auth.

Guarantees:
- validation failures are 400 problems naming each field
  [tests/web/test_request.py::test_body_errors_name_fields];
- SSE sources are closed when the client leaves
  [tests/web/test_sse.py::test_disconnect_releases_source];
- in-flight requests drain on stop [tests/web/test_runner.py::test_in_flight_request_drains].
"""

from .exceptions import ClientDisconnected, CORSRejected, ServerStartFailed, WebError
from .metrics import metrics_handler
from .request import parse_body, parse_match_info, parse_query
from .response import PROBLEM_CONTENT_TYPE, ProblemResponse, json_response, problem_response
from .routes import (
    AUTH_RESULT_KEY,
    REQUEST_ID_KEY,
    RESPONSE_HEADERS_KEY,
    UNMATCHED_ROUTE,
    PendingHeaders,
    add_response_header,
    add_response_headers,
    anonymous,
    apply_response_headers,
    auth_result,
    canonical_route,
    claim_response_headers,
    is_anonymous,
    merge_response_headers,
    on_response_prepare,
    started_status,
)
from .runner import WebServer
from .sse import SSEEvent, SSEResponse, format_comment, format_event

__all__ = (
    "AUTH_RESULT_KEY",
    "PROBLEM_CONTENT_TYPE",
    "REQUEST_ID_KEY",
    "RESPONSE_HEADERS_KEY",
    "UNMATCHED_ROUTE",
    "CORSRejected",
    "ClientDisconnected",
    "PendingHeaders",
    "ProblemResponse",
    "SSEEvent",
    "SSEResponse",
    "ServerStartFailed",
    "WebError",
    "WebServer",
    "add_response_header",
    "add_response_headers",
    "anonymous",
    "apply_response_headers",
    "auth_result",
    "canonical_route",
    "claim_response_headers",
    "format_comment",
    "format_event",
    "is_anonymous",
    "json_response",
    "merge_response_headers",
    "metrics_handler",
    "on_response_prepare",
    "parse_body",
    "parse_match_info",
    "parse_query",
    "problem_response",
    "started_status",
)
