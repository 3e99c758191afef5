"""Runs ``promtool check metrics`` on an exposition (Debian package ``prometheus``)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

__all__ = ("promtool_check",)


def promtool_check(exposition: bytes) -> tuple[int, str]:
    """``(exit code, output)`` of ``promtool check metrics``; fails the test if it is missing."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package 'prometheus' "
            "(bash scripts/system-deps.sh prometheus)"
        )
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode()
