"""Errors of service discovery; no etcd, Redis or aiohttp error leaves a public call.

::

    ServiceDiscoveryError               500  service-discovery_generic_internal-error
    ├── ServiceNotFound                 404  service-discovery_read_not-found (ObjectNotFound)
    ├── ServiceDiscoveryUnavailable     503  service-discovery_connect_unavailable
    │                                        (ServiceUnavailable)
    └── ServiceDiscoveryClosed          500  service-discovery_generic_canceled
"""

from __future__ import annotations

from ..exception import (
    PROBLEM_BASE_URI as _PROBS,
)
from ..exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    ObjectNotFound,
    ServiceUnavailable,
)

__all__ = (
    "ServiceDiscoveryClosed",
    "ServiceDiscoveryError",
    "ServiceDiscoveryUnavailable",
    "ServiceNotFound",
)


class ServiceDiscoveryError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.service_discovery`."""

    error_type = _PROBS + "service-discovery-error"
    error_title = "Service discovery failed."
    error_domain = ErrorDomain.SERVICE_DISCOVERY


class ServiceNotFound(ServiceDiscoveryError, ObjectNotFound):
    """No record of that service group and id."""

    error_type = _PROBS + "service-not-found"
    error_title = "No such service."
    error_operation = ErrorOperation.READ


class ServiceDiscoveryUnavailable(ServiceDiscoveryError, ServiceUnavailable):
    """The backend (etcd, Redis) cannot be reached."""

    error_type = _PROBS + "service-discovery-unavailable"
    error_title = "Service discovery backend unavailable."
    error_operation = ErrorOperation.CONNECT


class ServiceDiscoveryClosed(ServiceDiscoveryError):
    """The instance was used before ``open()`` or after ``aclose()``."""

    error_type = _PROBS + "service-discovery-closed"
    error_title = "Service discovery is closed."
    error_detail = ErrorDetail.CANCELED
