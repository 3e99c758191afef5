"""A commented TOML sample of a config model, for ``config sample`` and for documentation.

Each field becomes ``key = <default>`` under a comment with its description and type; nested
models become ``[tables]``. Secrets never show their default: a secret with a default is a
commented-out ``"<secret>"`` placeholder, a required secret an uncommented one. A required
field uses its first ``examples`` entry when it has one; a field whose default is ``None``,
and an optional section whose default is ``None``, are commented out.

Guarantees:
- the sample of a model whose required fields have examples parses as TOML and loads back to
  the model's defaults [tests/configs/test_sample.py::test_sample_round_trips];
- a secret's default never appears in the sample
  [tests/configs/test_sample.py::test_sample_hides_secrets].

Limits:
- a required field without ``examples`` is written commented out: the sample does not load
  until it is filled in (there is no honest value to invent).
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ._schema import FieldSpec, model_of, model_spec

__all__ = ("SECRET_PLACEHOLDER", "sample_config")

SECRET_PLACEHOLDER = "<secret>"
"""The value written for a secret field."""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


class _Unrepresentable(Exception):
    """A value TOML cannot write (``None`` inside a list or table)."""


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise _Unrepresentable(repr(value))


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return str(value)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


_REQUIRED = object()


def _default_of(spec: FieldSpec, parent_default: BaseModel | None) -> Any:
    if parent_default is not None:
        return getattr(parent_default, spec.name)
    if spec.info.is_required():
        return _REQUIRED
    return spec.info.get_default(call_default_factory=True)


def _comment_lines(text: str | None) -> list[str]:
    return [f"# {line}".rstrip() for line in (text or "").strip().splitlines()]


def _leaf(spec: FieldSpec, default: Any) -> list[str]:
    lines = _comment_lines(spec.info.description)
    key = _toml_key(spec.key)
    kind = f"# type: {_type_name(spec.info.annotation)}"
    if spec.secret:
        if default is _REQUIRED:
            placeholder = f"{key} = {_toml_string(SECRET_PLACEHOLDER)}"
            return [*lines, f"{kind} (required secret: replace the placeholder)", placeholder]
        return [*lines, f"{kind} (secret)", f"# {key} = {_toml_string(SECRET_PLACEHOLDER)}"]
    if default is _REQUIRED:
        example = _example(spec)
        if example:
            return [*lines, f"{kind} (required; example value)", f"{key} = {example}"]
        return [*lines, f"{kind} (required: fill in a value)", f"# {key} ="]
    try:
        rendered = _toml_value(_jsonable(default))
    except _Unrepresentable:
        hint = _example(spec)
        return [*lines, f"{kind} (unset by default)", f"# {key} = {hint}".rstrip()]
    return [*lines, kind, f"{key} = {rendered}"]


def _example(spec: FieldSpec) -> str:
    """The first example of a field as a TOML value, or ``""``."""
    if not spec.info.examples:
        return ""
    try:
        return _toml_value(_jsonable(spec.info.examples[0]))
    except _Unrepresentable:
        return ""


def _table(
    model: type[BaseModel],
    parent_default: BaseModel | None,
    path: tuple[str, ...],
    commented: bool,
    out: list[str],
) -> None:
    header: list[str] = []
    if path:
        header.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        header.extend(_comment_lines(_doc_of(model)))
    fields: list[list[str]] = []
    subtables: list[tuple[FieldSpec, type[BaseModel], BaseModel | None, bool]] = []
    for spec in model_spec(model).fields:
        default = _default_of(spec, parent_default)
        sub = model_of(spec.info.annotation)
        if sub is not None and (default is _REQUIRED or default is None):
            subtables.append((spec, sub, None, commented or default is None))
        elif sub is not None and isinstance(default, BaseModel):
            subtables.append((spec, sub, default, commented))
        else:
            fields.append(_leaf(spec, default))
    blocks = [header, *fields] if header else fields
    if commented:
        blocks = [[ln if ln.startswith("#") else f"# {ln}" for ln in b] for b in blocks]
    if blocks:
        out.append("\n\n".join("\n".join(b) for b in blocks if b))
    for spec, sub, default, sub_commented in subtables:
        _table(sub, default, (*path, spec.key), sub_commented, out)


def _doc_of(model: type[BaseModel]) -> str | None:
    doc = model.__doc__
    if not doc or doc == BaseModel.__doc__:
        return None
    return doc.strip().splitlines()[0]


def sample_config(model: type[BaseModel]) -> str:
    """A commented TOML sample of ``model`` with its defaults (see the module docstring)."""
    out = [f"# Sample configuration ({model.__name__})."]
    out.extend(_comment_lines(_doc_of(model)))
    blocks: list[str] = []
    _table(model, None, (), False, blocks)
    return "\n".join(out) + "\n\n" + "\n\n".join(blocks) + "\n"
