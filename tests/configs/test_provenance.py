"""Tests of the provenance-keeping merger, with hypothesis properties."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ai.backend.common.configs import (
    KeyPath,
    Provenance,
    ValueSource,
    format_key_path,
    merge_layers,
)

keys = st.sampled_from(["a", "b", "c"])
leaf_values = st.one_of(
    st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2), st.none()
)
trees = st.recursive(
    leaf_values, lambda children: st.dictionaries(keys, children, max_size=3), max_leaves=8
)
layer_values = st.dictionaries(keys, trees, max_size=3)
layer_lists = st.lists(layer_values, min_size=1, max_size=4)


def leaves(tree: Mapping[str, Any], path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    for key, value in tree.items():
        here = (*path, key)
        if isinstance(value, Mapping):
            yield from leaves(value, here)
        else:
            yield here, value


def node_at(tree: Any, path: KeyPath) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def overridden(layers: list[dict[str, Any]], index: int, path: KeyPath) -> bool:
    """Whether a later layer sets ``path`` itself, or a non-mapping above it."""
    for later in layers[index + 1 :]:
        if node_at(later, path)[0]:
            return True
        for end in range(1, len(path)):
            found, value = node_at(later, path[:end])
            if found and not isinstance(value, Mapping):
                return True
    return False


def source_fn(index: int) -> Any:
    return lambda path: ValueSource(f"layer{index}", None, format_key_path(path))


@given(layer_lists)
def test_later_layers_win_at_every_leaf(layers: list[dict[str, Any]]) -> None:
    result = merge_layers((values, source_fn(i)) for i, values in enumerate(layers))
    expected: dict[KeyPath, Any] = {}
    for i, values in enumerate(layers):
        for path, value in leaves(values):
            if not overridden(layers, i, path):
                expected[path] = value
    assert dict(leaves(result.values)) == expected
    for path, value in leaves(layers[-1]):
        assert node_at(result.values, path) == (True, value)


@given(layer_lists)
def test_provenance_names_supplier(layers: list[dict[str, Any]]) -> None:
    result = merge_layers((values, source_fn(i)) for i, values in enumerate(layers))
    result_leaves = dict(leaves(result.values))
    assert set(result.provenance.leaves) == set(result_leaves)
    for path, value in result_leaves.items():
        source = result.provenance.leaves[path]
        index = int(source.layer.removeprefix("layer"))
        assert source.key == format_key_path(path)
        assert node_at(layers[index], path) == (True, value)
        assert not overridden(layers, index, path)


@given(layer_lists)
def test_merge_never_mutates_inputs(layers: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(layers)
    result = merge_layers((values, source_fn(i)) for i, values in enumerate(layers))
    assert layers == before

    def poke(tree: Any) -> None:
        if isinstance(tree, dict):
            for value in tree.values():
                poke(value)
            tree["poked"] = True
        elif isinstance(tree, list):
            tree.append("poked")

    poke(result.values)
    assert layers == before


def test_leaf_replaces_subtree_and_subtree_replaces_leaf() -> None:
    first = {"db": {"host": "a", "port": 1}, "hosts": ["x"]}
    second = {"db": "disabled", "hosts": {"primary": "y"}}
    result = merge_layers([(first, source_fn(0)), (second, source_fn(1))])
    assert result.values == {"db": "disabled", "hosts": {"primary": "y"}}
    assert set(result.provenance.leaves) == {("db",), ("hosts", "primary")}
    assert result.provenance.leaves[("db",)].layer == "layer1"


def test_lists_are_replaced_whole() -> None:
    result = merge_layers([({"l": [1, 2, 3]}, source_fn(0)), ({"l": [9]}, source_fn(1))])
    assert result.values == {"l": [9]}


def test_lookup_falls_back_to_leaf_above_below_then_section() -> None:
    prov = Provenance()
    file_src = ValueSource("toml", "/etc/x.toml", "db")
    list_src = ValueSource("toml", "/etc/x.toml", "hosts")
    leaf_src = ValueSource("env", "BACKEND_DB__PORT", "db.port")
    prov.sections[("db",)] = file_src
    prov.leaves[("hosts",)] = list_src
    prov.leaves[("db", "port")] = leaf_src
    assert prov.lookup(("db", "port")) == leaf_src
    assert prov.lookup(("hosts", 0)) == list_src  # a list is one leaf
    assert prov.lookup(("db",)) == leaf_src  # blame a value below
    assert prov.lookup(("db", "host")) == file_src  # missing key: the table's source
    assert prov.lookup(("other",)) is None
    assert prov.leaf_source(("db", "host")) is None


def test_format_key_path_and_source_text() -> None:
    assert format_key_path(("db", "pool", 0, "max-size")) == "db.pool[0].max-size"
    assert format_key_path(("labels", "a.b")) == 'labels."a.b"'
    assert format_key_path(()) == "<root>"
    assert str(ValueSource("toml", "/x.toml", "db.port")) == "/x.toml, key db.port"
    assert str(ValueSource("env", "BACKEND_DB__PORT", "db.port")) == (
        "environment variable BACKEND_DB__PORT"
    )
    assert str(ValueSource("override", None, "debug")) == "override, key debug"
    assert str(ValueSource("default")) == "default"
