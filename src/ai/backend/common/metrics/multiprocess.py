"""Prometheus multiprocess mode: one exposition summed over the workers of a service.

Workers of a multi-process service each write their samples to files in a shared directory
(``PROMETHEUS_MULTIPROC_DIR``); the ``/metrics`` handler of any worker renders all of them.
Call :func:`setup_multiprocess_dir` in the parent before forking or spawning workers (or set
the variable before ``prometheus_client`` is imported), :func:`mark_process_dead` when a worker
exits, and :func:`render_multiprocess` to expose.

Guarantees:
- counters and histograms written by several processes are summed in one exposition that
  passes ``promtool check metrics`` [tests/metrics/test_multiprocess.py::test_workers_are_summed];
- a dead worker's live gauges disappear once it is marked dead
  [tests/metrics/test_multiprocess.py::test_dead_worker_gauges_vanish].

Limits: metrics created before ``setup_multiprocess_dir`` in a process keep in-memory values and
are not shared; gauges need a ``multiprocess_mode`` (the observers set ``livesum``/``livemax``).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _mark_process_dead

from ..exception import InvalidArgument

__all__ = (
    "MULTIPROC_ENV",
    "mark_process_dead",
    "multiprocess_dir",
    "render_multiprocess",
    "setup_multiprocess_dir",
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The multiprocess directory of this process, if multiprocess mode is on."""
    value = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    return Path(value) if value else None


def setup_multiprocess_dir(path: str | Path, *, clean: bool = True) -> Path:
    """Turn multiprocess mode on for this process and the workers it starts afterwards.

    Creates ``path``, removes stale ``*.db`` files when ``clean`` (do that only in the parent,
    before workers start), sets ``PROMETHEUS_MULTIPROC_DIR`` and switches ``prometheus_client``
    to file-backed values for the metrics created from now on.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if clean:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks its value class when first imported; pick it again now.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def mark_process_dead(pid: int, path: str | Path | None = None) -> None:
    """Drop the live gauges of a worker that exited (``path`` defaults to the env variable)."""
    directory = Path(path) if path is not None else multiprocess_dir()
    if directory is None:
        raise InvalidArgument(
            f"no multiprocess directory: pass path or set {MULTIPROC_ENV}",
            data={"field": "path"},
        )
    _mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def render_multiprocess(path: str | Path | None = None) -> bytes:
    """The text exposition of every worker's samples in ``path`` (default: the env variable)."""
    directory = Path(path) if path is not None else multiprocess_dir()
    if directory is None or not directory.is_dir():
        raise InvalidArgument(
            f"multiprocess directory {str(directory)!r} does not exist", data={"field": "path"}
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)
