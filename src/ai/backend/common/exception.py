"""The root of every error this package raises, and its wire shape.

Every error is a :class:`BackendAIError`. It carries an :class:`ErrorCode` (``domain``,
``operation`` and ``detail``, rendered ``domain_operation_detail`` as upstream Backend.AI does),
an HTTP status, and a problem type URI and title, and renders itself as the body of an RFC 7807
``application/problem+json`` response::

    BackendAIError                      500  backendai_generic_internal-error
    ├── InvalidAPIParameters            400  backendai_generic_bad-request
    │   └── (pydantic failures: ``InvalidAPIParameters.from_validation_error``)
    ├── ConfigurationError              400  config_parse_invalid-parameters
    ├── InvalidArgument  (ValueError)   400  backendai_generic_invalid-parameters
    ├── ObjectNotFound   (LookupError)  404  backendai_generic_not-found
    ├── OperationTimeout (TimeoutError) 504  backendai_generic_timeout
    └── ServiceUnavailable              503  backendai_generic_unavailable

Subpackages derive their own base from :class:`BackendAIError` (``MessageQueueError``, ...)
and set the class attributes; nothing here imports a web framework, so layer 1 stays pure.

Guarantees:
- every instance pickles and unpickles to the same class, message, data and attributes
  [tests/test_exception.py::test_pickle_round_trip];
- ``problem()`` always has the keys ``type``, ``title``, ``error_code``, ``msg``, ``data``
  [tests/test_exception.py::test_problem_body_shape].
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = (
    "BackendAIError",
    "ConfigurationError",
    "ErrorCode",
    "ErrorDetail",
    "ErrorDomain",
    "ErrorOperation",
    "InvalidAPIParameters",
    "InvalidArgument",
    "ObjectNotFound",
    "OperationTimeout",
    "ServiceUnavailable",
    "format_validation_errors",
)

PROBLEM_BASE_URI = "https://api.backend.ai/probs/"


class ErrorDomain(enum.StrEnum):
    """Which part of the platform an error comes from (upstream's domains plus ours)."""

    BACKENDAI = "backendai"
    API = "api"
    AUTH = "auth"
    CONFIG = "config"
    BGTASK = "bgtask"
    EVENT = "event"
    MESSAGE_QUEUE = "message-queue"
    RESILIENCE = "resilience"
    SERVICE_DISCOVERY = "service-discovery"
    LEADER = "leader"
    LOCK = "lock"
    REDIS = "redis"
    ETCD = "etcd"
    AGENT = "agent"
    KERNEL = "kernel"
    SESSION = "session"
    STORAGE_PROXY = "storage-proxy"
    HEALTH = "health"
    METRIC = "metric"


class ErrorOperation(enum.StrEnum):
    """What was being done when the error happened."""

    GENERIC = "generic"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    LIST = "list"
    PARSE = "parse"
    EXECUTE = "execute"
    CONNECT = "connect"
    PUBLISH = "publish"
    CONSUME = "consume"
    AUTHORIZE = "authorize"
    SETUP = "setup"
    SERVICE = "service"
    REQUEST = "request"


class ErrorDetail(enum.StrEnum):
    """Why it failed."""

    INTERNAL_ERROR = "internal-error"
    BAD_REQUEST = "bad-request"
    INVALID_PARAMETERS = "invalid-parameters"
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    CANCELED = "canceled"
    NOT_IMPLEMENTED = "not-implemented"
    MISMATCH = "mismatch"
    TOO_MANY_REQUESTS = "too-many-requests"
    DATA_EXPIRED = "data-expired"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A machine-readable error identity; ``str()`` gives ``domain_operation_detail``."""

    domain: str
    operation: str
    error_detail: str

    def __str__(self) -> str:
        return f"{self.domain}_{self.operation}_{self.error_detail}"

    @classmethod
    def parse(cls, text: str) -> ErrorCode:
        """Split ``domain_operation_detail`` back into its three parts."""
        parts = text.split("_", 2)
        if len(parts) != 3 or not all(parts):
            raise InvalidArgument(
                f"error code {text!r} is not of the form domain_operation_detail",
                data={"error_code": text},
            )
        return cls(parts[0], parts[1], parts[2])


class BackendAIError(Exception):
    """Base of every error raised by this package; renders as an RFC 7807 problem."""

    error_type: ClassVar[str] = PROBLEM_BASE_URI + "internal-server-error"
    error_title: ClassVar[str] = "Internal server error."
    status_code: ClassVar[int] = 500
    error_domain: ClassVar[str] = ErrorDomain.BACKENDAI
    error_operation: ClassVar[str] = ErrorOperation.GENERIC
    error_detail: ClassVar[str] = ErrorDetail.INTERNAL_ERROR

    msg: str | None
    data: dict[str, Any]

    def __init__(self, msg: str | None = None, *, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(*(() if msg is None else (msg,)))
        self.msg = msg
        self.data = dict(data) if data else {}

    def error_code(self) -> ErrorCode:
        """The error code of this error (class attributes unless overridden)."""
        return ErrorCode(self.error_domain, self.error_operation, self.error_detail)

    def problem(self) -> dict[str, Any]:
        """The RFC 7807 body: ``type``, ``title``, ``error_code``, ``msg``, ``data``."""
        return {
            "type": self.error_type,
            "title": self.error_title,
            "error_code": str(self.error_code()),
            "msg": self.msg if self.msg is not None else self.error_title,
            "data": self.data,
        }

    def __str__(self) -> str:
        return self.msg if self.msg is not None else self.error_title

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.msg!r}, error_code={str(self.error_code())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses may take other positional arguments; rebuild through the base
        # initialiser and restore every attribute, so any subclass pickles.
        return (_rebuild, (type(self), self.msg, self.data), self.__dict__)


def _rebuild(cls: type[BackendAIError], msg: str | None, data: dict[str, Any]) -> BackendAIError:
    obj = cls.__new__(cls)
    BackendAIError.__init__(obj, msg, data=data)
    return obj


class InvalidAPIParameters(BackendAIError):
    """A request's parameters are missing or malformed; ``data["errors"]`` lists each field."""

    error_type = PROBLEM_BASE_URI + "invalid-api-params"
    error_title = "Missing or invalid API parameters."
    status_code = 400
    error_detail = ErrorDetail.BAD_REQUEST

    @classmethod
    def from_validation_error(
        cls, exc: ValidationError, *, source: str | None = None
    ) -> InvalidAPIParameters:
        """Turn a pydantic ``ValidationError`` into a 400 naming each failing field."""
        errors = format_validation_errors(exc.errors(include_url=False))
        where = f" in {source}" if source else ""
        fields = ", ".join(e["loc"] or "<root>" for e in errors)
        return cls(
            f"{len(errors)} invalid field(s){where}: {fields}",
            data={"errors": errors, **({"source": source} if source else {})},
        )


def format_validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten pydantic error dicts to ``{"loc": "a.b[0]", "msg", "type"}`` (inputs dropped)."""
    result = []
    for err in errors:
        loc = ""
        for part in err.get("loc", ()):
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg, kind = str(err.get("msg", "")), str(err.get("type", ""))
        result.append({"loc": loc, "msg": msg, "type": kind})
    return result


class ConfigurationError(BackendAIError):
    """A configuration source (file, env, override) is unreadable or fails validation."""

    error_type = PROBLEM_BASE_URI + "invalid-configuration"
    error_title = "Invalid configuration."
    status_code = 400
    error_domain = ErrorDomain.CONFIG
    error_operation = ErrorOperation.PARSE
    error_detail = ErrorDetail.INVALID_PARAMETERS


class InvalidArgument(BackendAIError, ValueError):
    """A value given to a function of this package is malformed (the message names it)."""

    error_type = PROBLEM_BASE_URI + "invalid-argument"
    error_title = "Invalid argument."
    status_code = 400
    error_detail = ErrorDetail.INVALID_PARAMETERS


class ObjectNotFound(BackendAIError, LookupError):
    """A looked-up object does not exist."""

    error_type = PROBLEM_BASE_URI + "object-not-found"
    error_title = "No such object."
    status_code = 404
    error_detail = ErrorDetail.NOT_FOUND


class OperationTimeout(BackendAIError, TimeoutError):
    """An operation did not finish within its deadline."""

    error_type = PROBLEM_BASE_URI + "operation-timeout"
    error_title = "Operation timed out."
    status_code = 504
    error_detail = ErrorDetail.TIMEOUT


class ServiceUnavailable(BackendAIError):
    """A dependency (server, peer, backend) cannot be reached right now."""

    error_type = PROBLEM_BASE_URI + "service-unavailable"
    error_title = "Service unavailable."
    status_code = 503
    error_detail = ErrorDetail.UNAVAILABLE
