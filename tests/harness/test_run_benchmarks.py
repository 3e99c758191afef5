"""``scripts/run_benchmarks.py`` (``make bench``): every script's ratios in one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "scripts" / "run_benchmarks.py"

GOOD = """
import json, sys
assert sys.argv[1:] == ["--json", "--quick"], sys.argv
print(json.dumps({"bench": "good", "impl": "ours", "metric": "ops", "value": 2, "unit": "1/s"}))
print(json.dumps({"bench": "good", "ratios": {"ops:ours/peer": 1.25}}))
"""


def test_ratios_of_every_script_and_failures_reported(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "broken.py").write_text("raise SystemExit('no server here')")
    (tmp_path / "silent.py").write_text("print('no json')")
    (tmp_path / "_helper.py").write_text("raise AssertionError('helpers are not benchmarks')")
    table = subprocess.run(
        [sys.executable, str(RUNNER), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 1, table
    assert "ops:ours/peer  1.250" in table.stdout
    assert "no server here" in table.stdout
    assert "no ratios line" in table.stdout
    assert "_helper" not in table.stdout
    as_json = subprocess.run(
        [sys.executable, str(RUNNER), "--json", "--dir", str(tmp_path), "good"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json
    (row,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert row["ratios"] == {"ops:ours/peer": 1.25}
    assert row["error"] is None
