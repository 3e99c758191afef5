"""Parse the ``--redis`` and ``--etcd`` options into client targets, naming the bad part.

``--redis`` takes ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS) or the
Sentinel form ``redis+sentinel://[:password@]h1[:p1],h2[:p2]/service_name[/db]``; ``--etcd``
takes ``host:port[,host:port...]``. A malformed value raises ``ConfigurationError`` whose
message names the option, the part that is wrong (scheme, host, port, database, service name)
and the value given, with the URL's password masked (``redis://user:***@host``).

Guarantees:
- every accepted URL becomes the :class:`~ai.backend.common.clients.valkey.ValkeyTarget` that
  ``ValkeyTarget.from_url`` builds for it, and each malformed part is named
  [tests/cli/test_targets.py::test_redis_urls_parse]
  [tests/cli/test_targets.py::test_bad_redis_urls_name_the_part]
  [tests/cli/test_targets.py::test_etcd_endpoints];
- no message shows a password given in the URL (userinfo or ``*password=`` query values),
  however malformed the URL [tests/cli/test_targets.py::test_errors_never_show_the_password]
  [tests/cli/test_targets.py::test_cli_never_prints_the_password].
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..clients.valkey import ValkeyTarget
from ..exception import BackendAIError, ConfigurationError, InvalidArgument
from ..types import HostPortPair

__all__ = ("REDIS_SCHEMES", "mask_url_secrets", "parse_etcd_endpoints", "parse_redis_url")

REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")
"""URL schemes ``--redis`` accepts."""

_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "redis+sentinel": 26379}


MASK = "***"
"""What a masked password (or user:password) reads as."""

# scheme://<userinfo>@ : greedy up to the last "@" of the token, so a raw "@" in a password
# is masked too (masking too much is the safe direction).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^\s'\"]*)@")
_PASSWORD_PARAM = re.compile(r"(?P<key>[?&;][^=&#\s'\"]*password=)[^&#\s'\"]*", re.IGNORECASE)


def _mask_info(info: str) -> str:
    user, sep, _ = info.partition(":")
    return f"{user}:{MASK}" if sep else MASK


def mask_url_secrets(text: str) -> str:
    """``text`` with the password of every URL in it masked: the userinfo of
    ``scheme://user:password@host`` becomes ``user:***`` (a bare ``scheme://token@`` becomes
    ``***``) and the value of a ``...password=`` query parameter becomes ``***``."""
    text = _USERINFO.sub(lambda m: m["scheme"] + _mask_info(m["info"]) + "@", text)
    return _PASSWORD_PARAM.sub(lambda m: m["key"] + MASK, text)


def _masked(url: str) -> str:
    """``url`` for messages: its secrets masked, even without a ``scheme://``."""
    if "://" not in url and "@" in url:
        info, _, rest = url.rpartition("@")
        return mask_url_secrets(f"{_mask_info(info)}@{rest}")
    return mask_url_secrets(url)


def _secrets(url: str) -> list[str]:
    """The raw secret substrings of ``url`` (scrubbed from messages as a last line of defence)."""
    rest = url.partition("://")[2] if "://" in url else url
    info = rest.rpartition("@")[0]
    found = [info, info.partition(":")[2]] if info else []
    found += [m.group(0).partition("=")[2] for m in _PASSWORD_PARAM.finditer(url)]
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def _scrub(message: str, url: str) -> str:
    message = mask_url_secrets(message)
    for secret in _secrets(url):
        message = message.replace(secret, MASK)
    return message


def _bad(option: str, url: str, what: str) -> ConfigurationError:
    message = _scrub(f"{option}: {what} (in {_masked(url)!r})", url)
    return ConfigurationError(message, data={"option": option})


def _check_userinfo(option: str, url: str, rest: str) -> None:
    """Refuse a raw ``/``, ``?`` or ``#`` before the last ``@``: URL parsers would split the
    password there and show a piece of it as the host or path."""
    info = rest.rpartition("@")[0]
    bad = sorted({c for c in info if c in "/?#"})
    if bad:
        chars = ", ".join(repr(c) for c in bad)
        raise _bad(
            option,
            url,
            f"the user:password part must percent-encode {chars} (e.g. '/' as %2F)",
        )


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
    _check_userinfo(option, url, text.partition("://")[2])
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
        # Not chained: the original message holds the raw URL, password and all (--debug).
        raise _bad(option, url, str(exc)) from None


def parse_etcd_endpoints(value: str | list[str], *, option: str = "--etcd") -> list[str]:
    """``host:port[,host:port...]`` (or a list of them) as a list of ``host:port`` strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for raw in items:
        text = raw.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if not text:
            continue
        shown = _masked(raw.strip())
        if "@" in text:
            raise ConfigurationError(
                _scrub(
                    f"{option}: endpoint {shown!r}: give credentials in the config, "
                    "not as user:password@ in the endpoint",
                    raw,
                ),
                data={"option": option},
            )
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ConfigurationError(
                f"{option}: endpoint {shown!r} is not host:port", data={"option": option}
            )
        if not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError(
                f"{option}: endpoint {shown!r}: port {port!r} is not a number in 1-65535",
                data={"option": option},
            )
        endpoints.append(f"{host}:{int(port)}")
    if not endpoints:
        raise ConfigurationError(f"{option}: no endpoint given", data={"option": option})
    return endpoints
