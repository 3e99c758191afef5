"""Parse the ``--redis`` and ``--etcd`` options into client targets, naming the bad part.

``--redis`` takes ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS) or the
Sentinel form ``redis+sentinel://[:password@]h1[:p1],h2[:p2]/service_name[/db]``; ``--etcd``
takes ``host:port[,host:port...]``. A malformed value raises ``ConfigurationError`` whose
message names the option, the part that is wrong (scheme, host, port, database, service name)
and the value given.

Guarantees:
- every accepted URL becomes the :class:`~ai.backend.common.clients.valkey.ValkeyTarget` that
  ``ValkeyTarget.from_url`` builds for it, and each malformed part is named
  [tests/cli/test_targets.py::test_redis_urls_parse]
  [tests/cli/test_targets.py::test_bad_redis_urls_name_the_part]
  [tests/cli/test_targets.py::test_etcd_endpoints].
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..clients.valkey import ValkeyTarget
from ..exception import BackendAIError, ConfigurationError, InvalidArgument
from ..types import HostPortPair

__all__ = ("REDIS_SCHEMES", "parse_etcd_endpoints", "parse_redis_url")

REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")
"""URL schemes ``--redis`` accepts."""

_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "redis+sentinel": 26379}


def _bad(option: str, url: str, what: str) -> ConfigurationError:
    return ConfigurationError(f"{option}: {what} (in {url!r})", data={"option": option})


def _address(option: str, url: str, text: str, default_port: int, role: str) -> HostPortPair:
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and text.endswith("]"):  # bare IPv6 literal without a port
        host, sep, port = text, "", ""
    if not sep:
        host, port = text, ""
    if not host or host in ("[]",):
        raise _bad(option, url, f"{role} {text!r} has no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise _bad(option, url, f"{role} {text!r}: port {port!r} is not a number in 1-65535")
    try:
        return HostPortPair.parse(text, default_port=default_port)
    except InvalidArgument as exc:
        raise _bad(option, url, f"{role} {text!r}: {exc}") from exc


def _db(option: str, url: str, text: str) -> int:
    if not text.isdigit():
        raise _bad(option, url, f"database {text!r} is not a non-negative number")
    return int(text)


def parse_redis_url(url: str, *, option: str = "--redis") -> ValkeyTarget:
    """The Valkey target ``url`` names; a malformed part raises ``ConfigurationError``."""
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise _bad(option, url, "not a URL; expected redis://host:port/db")
    scheme = scheme.lower()
    if scheme not in REDIS_SCHEMES:
        known = ", ".join(s + "://" for s in REDIS_SCHEMES)
        raise _bad(option, url, f"scheme {scheme!r} is not one of {known}")
    parts = urlsplit(text)
    hosts = parts.netloc.rpartition("@")[2]
    path = [p for p in parts.path.split("/") if p]
    default_port = _DEFAULT_PORTS[scheme]
    if scheme == "redis+sentinel":
        names = [h for h in hosts.split(",") if h.strip()]
        if not names:
            raise _bad(option, url, "no sentinel address before the service name")
        for name in names:
            _address(option, url, name.strip(), default_port, "sentinel")
        if not path:
            raise _bad(
                option, url, "no service name: expected redis+sentinel://h1:p1,h2:p2/service/db"
            )
        if len(path) > 2:
            raise _bad(option, url, f"path {parts.path!r} has more than /service_name/db")
        if len(path) == 2:
            _db(option, url, path[1])
    else:
        if not hosts:
            raise _bad(option, url, "no host")
        if "," in hosts:
            raise _bad(option, url, f"several hosts {hosts!r}: use redis+sentinel:// for a set")
        _address(option, url, hosts, default_port, "address")
        if len(path) > 1:
            raise _bad(option, url, f"path {parts.path!r} has more than /db")
        if path:
            _db(option, url, path[0])
    try:
        return ValkeyTarget.from_url(text)
    except BackendAIError as exc:  # e.g. a bad query parameter
        raise _bad(option, url, str(exc)) from exc


def parse_etcd_endpoints(value: str | list[str], *, option: str = "--etcd") -> list[str]:
    """``host:port[,host:port...]`` (or a list of them) as a list of ``host:port`` strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for raw in items:
        text = raw.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if not text:
            continue
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ConfigurationError(
                f"{option}: endpoint {raw.strip()!r} is not host:port", data={"option": option}
            )
        if not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError(
                f"{option}: endpoint {raw.strip()!r}: port {port!r} is not a number in 1-65535",
                data={"option": option},
            )
        endpoints.append(f"{host}:{int(port)}")
    if not endpoints:
        raise ConfigurationError(f"{option}: no endpoint given", data={"option": option})
    return endpoints
