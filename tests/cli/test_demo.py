"""The demo runs as a subprocess, exits 0 and reports every step as ok."""

from __future__ import annotations

import json

from ._cli import run_cli

__all__ = ("run_cli",)


def test_demo_json_reports_every_step_ok() -> None:
    proc = run_cli("--json", "demo")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows, "the demo printed no summary rows"
    expected = {"types", "errors", "contexts", "configs", "resilience"}
    assert {row["capability"] for row in rows} >= expected
    assert all(row["ok"] == "yes" for row in rows), rows


def test_demo_human_output_has_summary_table() -> None:
    proc = run_cli("demo")
    assert proc.returncode == 0, proc.stderr
    assert "summary" in proc.stdout


def test_unknown_command_is_one_line_error_without_traceback() -> None:
    proc = run_cli("no-such-command")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no-such-command" in proc.stderr
