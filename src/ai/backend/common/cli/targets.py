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
  [tests/cli/test_targets.py::test_cli_never_prints_the_password];
- any string gives a target or one ``ConfigurationError`` of one line, never another
  exception [tests/cli/test_targets.py::test_any_string_is_a_target_or_one_error];
- ports and databases are ASCII digits only ('²' and fullwidth digits are refused), IPv6
  hosts need balanced brackets, and unknown query parameters are refused
  [tests/cli/test_targets.py::test_only_ascii_digits_and_clear_parts].
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs

from ..clients.valkey import ValkeyTarget
from ..exception import BackendAIError, ConfigurationError

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
    """Refuse a raw ``/``, ``?``, ``#``, ``[`` or ``]`` before the last ``@``: URL parsers
    would split the password there (showing a piece of it as host or path) or fail on it."""
    info = rest.rpartition("@")[0]
    bad = sorted({c for c in info if c in "/?#[]"})
    if bad:
        chars = ", ".join(repr(c) for c in bad)
        raise _bad(
            option,
            url,
            f"the user:password part must percent-encode {chars} (e.g. '/' as %2F)",
        )


_HOST = re.compile(r"[A-Za-z0-9._-]+")
_QUERY_KEYS = ("db", "ssl", "sentinel_password")


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' and fullwidth digits."""
    return text.isascii() and text.isdecimal()


def _split_address(item: str, role: str) -> tuple[str, str]:
    """``(host, port)`` of ``host[:port]`` or ``[ipv6][:port]`` (port ``""`` when absent);
    raises ``ValueError`` with a message naming the bad part."""
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ValueError(f"{role} {item!r}: '[' is never closed (IPv6 looks like [::1]:port)")
        literal, after = item[1:end], item[end + 1 :]
        if after and not after.startswith(":"):
            raise ValueError(f"{role} {item!r}: {after!r} after ']' is not ':port'")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise ValueError(f"{role} {item!r}: {literal!r} is not an IPv6 address") from None
        if after == ":":
            raise ValueError(f"{role} {item!r}: the port after ':' is empty")
        return f"[{literal}]", after[1:]
    if "[" in item or "]" in item:
        raise ValueError(f"{role} {item!r}: misplaced '[' or ']' (IPv6 looks like [::1]:port)")
    host, sep, port = item.rpartition(":")
    if not sep:
        host, port = item, ""
    elif not port:
        raise ValueError(f"{role} {item!r}: the port after ':' is empty")
    if ":" in host:
        raise ValueError(f"{role} {item!r}: an IPv6 address needs brackets: [::1]:port")
    if not host:
        raise ValueError(f"{role} {item!r} has no host")
    if not _HOST.fullmatch(host):
        raise ValueError(
            f"{role} {item!r}: host {host!r} may hold only ASCII letters, digits, '.', '-', '_'"
        )
    return host, port


def _address(item: str, role: str) -> tuple[str, str]:
    host, port = _split_address(item, role)
    if port and not (_is_number(port) and 0 < int(port) < 65536):
        raise ValueError(f"{role} {item!r}: port {port!r} is not a number in 1-65535")
    return host, port


def _db(text: str) -> None:
    if not _is_number(text):
        raise ValueError(f"database {text!r} is not a non-negative number")


def parse_redis_url(url: str, *, option: str = "--redis") -> ValkeyTarget:
    """The Valkey target ``url`` names; a malformed part raises ``ConfigurationError``.

    Never raises anything else, whatever the string
    [tests/cli/test_targets.py::test_any_string_is_a_target_or_one_error].
    """
    try:
        return _parse_redis_url(url, option)
    except ValueError as exc:  # our messages name the part; a parser's own says what it saw
        # Not chained: a parser's message may hold the raw URL, password and all (--debug).
        raise _bad(option, url, str(exc)) from None


def _parse_redis_url(url: str, option: str) -> ValkeyTarget:
    text = url.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("the URL contains whitespace or control characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ValueError("not a URL; expected redis://host:port/db")
    scheme = scheme.lower()
    if scheme not in REDIS_SCHEMES:
        known = ", ".join(s + "://" for s in REDIS_SCHEMES)
        raise ValueError(f"scheme {scheme!r} is not one of {known}")
    _check_userinfo(option, url, rest)
    if "#" in rest:
        raise ValueError("a '#fragment' has no meaning here")
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    remainder = rest[len(authority) :]
    hosts = authority.rpartition("@")[2]
    path_text, _, query = remainder.partition("?")
    path = [p for p in path_text.split("/") if p]
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in _QUERY_KEYS:
            raise ValueError(f"query parameter {key!r} is not one of {', '.join(_QUERY_KEYS)}")
        if key == "db":
            for value in values:
                _db(value)
    if scheme == "redis+sentinel":
        names = [h.strip() for h in hosts.split(",") if h.strip()]
        if not names:
            raise ValueError("no sentinel address before the service name")
        for name in names:
            _address(name, "sentinel")
        if not path:
            raise ValueError("no service name: expected redis+sentinel://h1:p1,h2:p2/service/db")
        if len(path) > 2:
            raise ValueError(f"path {path_text!r} has more than /service_name/db")
        if len(path) == 2:
            _db(path[1])
    else:
        if not hosts:
            raise ValueError("no host")
        if "," in hosts:
            raise ValueError(f"several hosts {hosts!r}: use redis+sentinel:// for a set")
        _address(hosts, "address")
        if len(path) > 1:
            raise ValueError(f"path {path_text!r} has more than /db")
        if path:
            _db(path[0])
    try:
        return ValkeyTarget.from_url(text)
    except (BackendAIError, TypeError) as exc:  # e.g. a value the target model refuses
        raise ValueError(str(exc)) from None


def parse_etcd_endpoints(value: str | list[str], *, option: str = "--etcd") -> list[str]:
    """``host:port[,host:port...]`` (or a list of them) as a list of ``host:port`` strings.

    A malformed endpoint raises ``ConfigurationError`` naming it, and nothing else is raised
    [tests/cli/test_targets.py::test_any_string_is_a_target_or_one_error].
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for raw in items:
        stripped = raw.strip() if isinstance(raw, str) else repr(raw)
        text = stripped.removeprefix("http://").removeprefix("https://").rstrip("/")
        if not text:
            continue
        shown = _masked(stripped)
        try:
            if "@" in text:
                raise ValueError(
                    f"endpoint {shown!r}: give credentials in the config, not as user:password@"
                )
            if any(c.isspace() or not c.isprintable() or c in "/?#" for c in text):
                raise ValueError(f"endpoint {shown!r} is not host:port (no path, no spaces)")
            host, port = _address(text, "endpoint")
            if not port:
                raise ValueError(f"endpoint {shown!r} is not host:port")
        except ValueError as exc:
            message = _scrub(f"{option}: {exc}", stripped)
            raise ConfigurationError(message, data={"option": option}) from None
        endpoints.append(f"{host}:{int(port)}")
    if not endpoints:
        raise ConfigurationError(f"{option}: no endpoint given", data={"option": option})
    return endpoints
