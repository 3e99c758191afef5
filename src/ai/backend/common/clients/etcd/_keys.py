"""Pure key helpers: namespacing, scope prefixes, flattening nested dicts and back.

Flattening follows upstream ``AsyncEtcd.put_prefix``: each dict key is quoted, an empty key
stands for the value of the prefix itself; unflattening follows ``make_dict_from_pairs``: a key
that has both a value and children becomes ``{"": value, **children}``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from .exceptions import EtcdInvalidArgument
from .types import NestedStrDict, quote, unquote

__all__ = (
    "deep_merge_into",
    "flatten",
    "flatten_dict",
    "slash",
    "unflatten",
    "unflatten_pairs",
)


@functools.lru_cache(maxsize=8192)
def _quote_component(component: str) -> str:
    # Record field names repeat (``endpoint``, ``port``, ...): quote each once.
    return quote(component)


def slash(prefix: str) -> str:
    """``"a"`` -> ``"a/"``; ``""`` stays ``""`` (upstream ``_slash``)."""
    return prefix.rstrip("/") + "/" if prefix else ""


def flatten(key: str, obj: Mapping[str, object]) -> dict[str, str]:
    """Flatten a nested mapping under ``key`` into ``{"key/q(a)/q(b)": str(value)}``."""
    result: dict[str, str] = {}

    def walk(prefix: str, inner: Mapping[str, object]) -> None:
        for k, v in inner.items():
            if not isinstance(k, str):
                raise EtcdInvalidArgument(
                    f"put_prefix({key!r}): dict key {k!r} under {prefix!r} is not a string"
                )
            flat = prefix if k == "" else f"{prefix}/{_quote_component(k)}"
            if isinstance(v, Mapping):
                walk(flat, v)
            elif v is None:
                raise EtcdInvalidArgument(f"put_prefix({key!r}): value of {flat!r} is None")
            else:
                result[flat] = str(v)

    walk(key, obj)
    return result


def unflatten(key_prefix: str, pairs: Iterable[tuple[str, str]]) -> NestedStrDict:
    """Turn ``(key, value)`` pairs under ``key_prefix`` back into a nested dict (unquoted)."""
    result: NestedStrDict = {}
    for k, v in pairs:
        if not k.startswith(key_prefix):
            continue
        sub = k[len(key_prefix) :].removeprefix("/")
        parts = sub.split("/")
        parent = result
        for raw in parts[:-1]:
            p = unquote(raw)
            child = parent.get(p)
            if child is None:
                child = parent[p] = {}
            elif not isinstance(child, dict):
                child = parent[p] = {"": child}
            parent = child
        last = unquote(parts[-1])
        existing = parent.get(last)
        if isinstance(existing, dict):
            existing[""] = v
        else:
            parent[last] = v
    return result


def deep_merge_into(base: NestedStrDict, override: NestedStrDict) -> NestedStrDict:
    """Merge ``override`` into ``base`` in place (override wins; dicts merge recursively)."""
    for k, v in override.items():
        cur = base.get(k)
        if isinstance(v, dict) and isinstance(cur, dict):
            deep_merge_into(cur, v)
        else:
            base[k] = _copy(v)
    return base


def _copy(v: str | NestedStrDict) -> str | NestedStrDict:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


flatten_dict = flatten
"""Public name of :func:`flatten` (upstream ``AsyncEtcd.flatten``)."""

unflatten_pairs = unflatten
"""Public name of :func:`unflatten` (upstream ``make_dict_from_pairs``)."""
