"""Run every benchmark script with ``--quick --json`` and print one table of their ratios.

``make bench`` runs this. Each ``benchmarks/<name>.py`` (not ``_private.py``) runs in its own
process, one after the other, from the repository root; its last JSON line,
``{"bench", "ratios": {...}}`` (the format of ``benchmarks/README.md``), gives the rows. A script
that fails or prints no ratios line is reported in the table and makes the exit status 1; the
others still run.

Usage: ``python scripts/run_benchmarks.py [--full] [--json] [--dir DIR] [NAME ...]``
(``--full`` drops ``--quick``; names pick scripts, e.g. ``resilience web``).

Guarantees:
- every script's ratios are printed, and a failing script is reported, not fatal
  [tests/harness/test_run_benchmarks.py::test_ratios_of_every_script_and_failures_reported].
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ("BenchResult", "main", "run_script", "scripts_in")

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the scripts run from there)."""

SCRIPT_TIMEOUT = 600.0
"""Seconds one benchmark script may run before it is reported as failed."""


@dataclass
class BenchResult:
    """What one script gave: its ratios, or why it gave none."""

    script: str
    seconds: float
    ratios: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def scripts_in(directory: Path, names: Sequence[str] = ()) -> list[Path]:
    """The benchmark scripts of ``directory`` (``_private.py`` excluded), optionally by name."""
    found = sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))
    if not names:
        return found
    by_name = {p.stem: p for p in found}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"no benchmark named {', '.join(unknown)} (have: {', '.join(by_name)})")
    return [by_name[n] for n in names]


def run_script(script: Path, *, quick: bool = True, timeout: float = SCRIPT_TIMEOUT) -> BenchResult:
    """Run one script with ``--json`` (and ``--quick``) and read its ratios line."""
    argv = [sys.executable, str(script), "--json", *(["--quick"] if quick else [])]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return BenchResult(
            script.stem, time.monotonic() - started, error=f"timed out ({timeout:.0f} s)"
        )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return BenchResult(script.stem, seconds, error=f"exit {proc.returncode}: {last}")
    for line in reversed(proc.stdout.splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("ratios"), dict):
            ratios = {str(k): float(v) for k, v in row["ratios"].items()}
            return BenchResult(str(row.get("bench", script.stem)), seconds, ratios)
    return BenchResult(script.stem, seconds, error="no ratios line in its --json output")


def _table(results: Sequence[BenchResult]) -> str:
    rows = [("bench", "ratio", "value")]
    for r in results:
        if r.error is not None:
            rows.append((r.script, "FAILED", r.error))
        for name, value in r.ratios.items():
            rows.append((r.script, name, f"{value:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scripts, print the table (or JSON lines); 1 if any script failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="benchmark names (default: all)")
    parser.add_argument("--full", action="store_true", help="full runs instead of --quick")
    parser.add_argument("--json", action="store_true", help="one JSON object per script")
    parser.add_argument("--dir", type=Path, default=ROOT / "benchmarks", help="scripts folder")
    args = parser.parse_args(argv)
    results = []
    for script in scripts_in(args.dir, args.names):
        if not args.json:
            print(f"==> {script.name}", file=sys.stderr, flush=True)
        results.append(run_script(script, quick=not args.full))
    if args.json:
        for r in results:
            print(json.dumps({"bench": r.script, "seconds": round(r.seconds, 1),
                              "ratios": r.ratios, "error": r.error}))  # fmt: skip
    else:
        print(_table(results))
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
