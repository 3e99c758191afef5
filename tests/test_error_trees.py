"""The error tree each exceptions module draws in its docstring matches its classes.

A leaf inherits its status and error detail from the builtin-like leaf it also derives from
(``ServiceUnavailable`` 503, ``OperationTimeout`` 504, ...); this pins what the docstrings
promise, so a change to a package's base error cannot silently change a leaf's code.
"""

from __future__ import annotations

import importlib
import re

import pytest

from ai.backend.common.exception import BackendAIError

MODULES = (
    "ai.backend.common.clients.agent.exceptions",
    "ai.backend.common.clients.etcd.exceptions",
    "ai.backend.common.clients.http.exceptions",
    "ai.backend.common.health_checker.exceptions",
    "ai.backend.common.leader.exceptions",
    "ai.backend.common.lock.exceptions",
    "ai.backend.common.service_discovery.exceptions",
)

# "├── EtcdUnavailable   503  etcd_connect_unavailable   (ServiceUnavailable)"
_ROW = re.compile(r"^[\s│├└─]*(?P<name>[A-Z]\w+)\s+(?P<status>\d{3})(?=\s|$)(?:\s+(?P<code>\S+))?")
_CODE = re.compile(r"^[a-z-]+_[a-z-]+_[a-z-]+$")


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_tree_matches_the_classes(module_name: str) -> None:
    module = importlib.import_module(module_name)
    rows = [m for line in (module.__doc__ or "").splitlines() if (m := _ROW.match(line))]
    assert rows, f"{module_name} draws no error tree"
    for row in rows:
        cls = getattr(module, row["name"])
        assert issubclass(cls, BackendAIError)
        assert cls.status_code == int(row["status"]), row["name"]
        code = row["code"]
        if code is not None and _CODE.match(code):
            error = cls.__new__(cls)
            assert str(error.error_code()) == code, row["name"]
