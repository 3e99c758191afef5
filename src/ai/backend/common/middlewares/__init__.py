"""aiohttp middlewares of Backend.AI services and the helper that stacks them in order.

``build_middleware_stack`` / ``install_middleware_stack`` assemble, outermost first: request
id, access log, metrics, CORS, errors, auth. Each is also usable alone. ``install_middleware_stack``
installs them fused into one middleware (``fused_middleware``), which does the same work through
the same functions with a sixth of the coroutine layers and header bookkeeping.

Guarantees:
- with the full stack, auth failures are 401 problem+json bodies that carry the request id and
  CORS headers and are counted by route
  [tests/middlewares/test_stack.py::test_full_stack_auth_failure];
- streamed (SSE) responses get the request id and CORS headers
  [tests/middlewares/test_stack.py::test_sse_gets_request_id_and_cors_headers];
- the fused middleware answers exactly as the separate ones do
  [tests/middlewares/test_stack.py::test_fused_matches_separate];
- see each module for its own promises.
"""

from .access_log import access_log_middleware
from .auth import auth_middleware, require_role
from .cors import CORSOptions, cors_middleware
from .errors import InternalServerError, error_middleware
from .metrics import KNOWN_METHODS, metrics_middleware
from .request_id import REQUEST_ID_HEADER, request_id_middleware
from .stack import build_middleware_stack, fused_middleware, install_middleware_stack

__all__ = (
    "KNOWN_METHODS",
    "REQUEST_ID_HEADER",
    "CORSOptions",
    "InternalServerError",
    "access_log_middleware",
    "auth_middleware",
    "build_middleware_stack",
    "cors_middleware",
    "error_middleware",
    "fused_middleware",
    "install_middleware_stack",
    "metrics_middleware",
    "request_id_middleware",
    "require_role",
)
