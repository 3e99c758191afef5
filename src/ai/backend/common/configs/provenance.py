"""Deep merge of config layers that remembers, for every leaf, which source supplied it.

A *leaf* is any value that is not a mapping (lists are leaves: a later layer replaces a whole
list, it never appends). Mappings merge key by key; a later non-mapping value replaces
whatever an earlier layer had at that key, subtree included, and a later mapping replaces an
earlier non-mapping. Besides the source of each leaf, the provenance keeps the last layer that
wrote each mapping (so a missing key can still be traced to the file that declared its table).

Guarantees:
- at every leaf the last layer that sets it (or sets a non-mapping above it) wins
  [tests/configs/test_provenance.py::test_later_layers_win_at_every_leaf];
- the provenance of every leaf of the result is the layer that supplied its value, and only
  leaves of the result have one [tests/configs/test_provenance.py::test_provenance_names_supplier];
- merging never mutates its inputs, and the result shares no mutable value with them
  [tests/configs/test_provenance.py::test_merge_never_mutates_inputs].

Limits:
- merging costs time in proportion to the values merged plus those replaced (a replaced
  subtree's provenance is dropped by walking that subtree, not the whole config).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    "KeyPath",
    "MergeResult",
    "Provenance",
    "ValueSource",
    "format_key_path",
    "merge_layers",
)

KeyPath = tuple[str | int, ...]
"""A path into a nested config: mapping keys (str) and list indexes (int)."""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_key_path(path: Iterable[str | int]) -> str:
    """``("db", "pool", 0)`` -> ``db.pool[0]``; keys that are not bare words are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        word = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        text += f".{word}" if text else word
    return text or "<root>"


@dataclass(frozen=True, slots=True)
class ValueSource:
    """Where one value came from: the layer kind, its location and the key as written there.

    ``layer`` is the kind of source (``"default"``, ``"toml"``, ``"yaml"``, ``"env"``,
    ``"override"``, ``"etcd"``, ...); ``location`` is the file path, environment variable
    name or other address, if any; ``key`` is the key path as the source spells it.
    """

    layer: str
    location: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        if self.layer == "env" and self.location:
            return f"environment variable {self.location}"
        where = self.location or self.layer
        return f"{where}, key {self.key}" if self.key else where

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form: ``{"layer", "location", "key"}``."""
        return {"layer": self.layer, "location": self.location, "key": self.key}


@dataclass(slots=True)
class Provenance:
    """The source of every leaf of a merged config, and of every mapping a layer touched."""

    leaves: dict[KeyPath, ValueSource] = field(default_factory=dict)
    sections: dict[KeyPath, ValueSource] = field(default_factory=dict)

    def leaf_source(self, path: Sequence[str | int]) -> ValueSource | None:
        """The source of the leaf at ``path`` or of the nearest leaf above it (a list), if any."""
        path = tuple(path)
        for end in range(len(path), 0, -1):
            found = self.leaves.get(path[:end])
            if found is not None:
                return found
        return None

    def lookup(self, path: Sequence[str | int]) -> ValueSource | None:
        """The source to blame for ``path``: its leaf, the nearest leaf above it, a leaf below
        it, or the last layer that wrote the nearest mapping above it; ``None`` if no layer did.
        """
        path = tuple(path)
        found = self.leaf_source(path)
        if found is not None:
            return found
        for leaf, source in self.leaves.items():
            if leaf[: len(path)] == path:
                return source
        for end in range(len(path), -1, -1):
            found = self.sections.get(path[:end])
            if found is not None:
                return found
        return None

    def _forget(self, path: KeyPath, value: Any) -> None:
        """Drop the entries of ``value`` (the merged value at ``path``) and of its subtree.

        Entries exist only for paths of the merged result, so walking the replaced value finds
        them all: the cost is the size of what is replaced, not of the whole config.
        """
        stack: list[tuple[KeyPath, Any]] = [(path, value)]
        while stack:
            here, item = stack.pop()
            self.leaves.pop(here, None)
            self.sections.pop(here, None)
            if isinstance(item, dict):
                stack.extend(((*here, key), child) for key, child in item.items())


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged nested dict and the provenance of its leaves."""

    values: dict[str, Any]
    provenance: Provenance


SourceOf = Callable[[KeyPath], ValueSource]


def merge_layers(layers: Iterable[tuple[Mapping[str, Any], SourceOf]]) -> MergeResult:
    """Deep-merge ``(values, source_of)`` pairs in order; later pairs win.

    ``source_of(path)`` gives the :class:`ValueSource` of the value that layer holds at
    ``path``; it is called once per leaf and per mapping the layer contributes.
    """
    result: dict[str, Any] = {}
    provenance = Provenance()
    for values, source_of in layers:
        _merge_into(result, values, (), source_of, provenance)
    return MergeResult(result, provenance)


def _merge_into(
    dst: dict[str, Any],
    src: Mapping[str, Any],
    path: KeyPath,
    source_of: SourceOf,
    provenance: Provenance,
) -> None:
    for key, value in src.items():
        here = (*path, key)
        existing = dst.get(key)
        if isinstance(value, Mapping):
            if not isinstance(existing, dict):
                if key in dst:
                    provenance._forget(here, existing)
                dst[key] = existing = {}
            provenance.sections[here] = source_of(here)
            _merge_into(existing, value, here, source_of, provenance)
        else:
            if key in dst:
                provenance._forget(here, existing)
            dst[key] = copy.deepcopy(value)
            provenance.leaves[here] = source_of(here)
