"""Shared plumbing of the benchmark scripts: options, alternating rounds, output format.

Every script runs the peers and ours in one process run, alternating rounds so that machine noise
hits every implementation alike, and reports the median of the rounds. Output (see README.md):
human lines by default; with ``--json`` one object per figure,
``{"bench", "impl", "metric", "value", "unit"}``, and a last line
``{"bench", "ratios": {"<metric>:<impl>/<impl>": value}}``. This package's impl is ``ours``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = ("BenchArgs", "Report", "alternate", "parse_args")

T = TypeVar("T")


@dataclass(frozen=True)
class BenchArgs:
    """Command-line options common to every benchmark."""

    quick: bool
    json: bool
    rounds: int


def parse_args(
    description: str, argv: Sequence[str] | None = None, *, default_rounds: int = 5
) -> BenchArgs:
    """Parse ``--quick``, ``--json`` and ``--rounds``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per impl")
    ns = parser.parse_args(argv)
    rounds = ns.rounds if ns.rounds is not None else (2 if ns.quick else default_rounds)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    return BenchArgs(quick=ns.quick, json=ns.json, rounds=rounds)


def alternate(impls: Sequence[str], rounds: int, run: Callable[[str], T]) -> dict[str, list[T]]:
    """Run ``run(impl)`` for each impl in turn, ``rounds`` times; results per impl."""
    results: dict[str, list[T]] = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            results[impl].append(run(impl))
    return results


@dataclass
class Report:
    """Collects figures (medians) and ratios of one benchmark and prints them."""

    bench: str
    as_json: bool
    figures: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        impl: str,
        metric: str,
        samples: Sequence[float],
        unit: str,
        *,
        reduce: Literal["median", "min"] = "median",
    ) -> float:
        """Record the median (or the min, for per-call overheads) of ``samples`` and print it."""
        value = float(statistics.median(samples) if reduce == "median" else min(samples))
        self.figures[(impl, metric)] = (value, unit)
        if self.as_json:
            line = {"bench": self.bench, "impl": impl, "metric": metric}
            print(json.dumps({**line, "value": value, "unit": unit}), flush=True)
        else:
            lo, hi = min(samples), max(samples)
            spread = f" (min {lo:,.1f}, max {hi:,.1f})" if len(samples) > 1 else ""
            head = f"{self.bench:12} {impl:12} {metric:20}"
            print(f"{head} {value:14,.1f} {unit}{spread}", flush=True)
        return value

    def ratio(self, metric: str, num: str, den: str) -> float:
        """Record ``metric`` of ``num`` divided by that of ``den``."""
        value = self.figures[(num, metric)][0] / self.figures[(den, metric)][0]
        self.ratios[f"{metric}:{num}/{den}"] = round(value, 4)
        return value

    def finish(self) -> None:
        """Print the ratios line (JSON) or a ratio table (human)."""
        if self.as_json:
            print(json.dumps({"bench": self.bench, "ratios": self.ratios}), flush=True)
        else:
            for key, value in self.ratios.items():
                print(f"{self.bench:12} ratio {key:40} {value:8.3f}", flush=True)
        sys.stdout.flush()
