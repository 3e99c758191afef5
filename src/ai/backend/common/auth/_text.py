"""Request text echoed in error messages and ``data``: cut short and always UTF-8 encodable.

aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``, and JSON text may
carry ``\\ud800`` escapes: both give strings with lone surrogates, which neither orjson nor a
UTF-8 stream can encode. Everything a request sent that an error repeats goes through here.
"""

from __future__ import annotations

__all__ = ("MAX_ECHO", "echo", "escape")

MAX_ECHO = 64


def escape(value: str, limit: int = MAX_ECHO) -> str:
    """``value`` cut to ``limit`` characters, lone surrogates written as backslash escapes."""
    if len(value) > limit:
        value = value[:limit] + "..."
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def echo(value: str, limit: int = MAX_ECHO) -> str:
    """``value`` quoted and cut short for a message (``repr`` escapes surrogates too)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
