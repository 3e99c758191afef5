"""Multiprocess mode: worker processes write, any process renders the sum."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ai.backend.common.metrics import mark_process_dead, render_multiprocess

from .promtool import promtool_check

WORKER = textwrap.dedent(
    """
    import os, sys
    from prometheus_client import CollectorRegistry
    from ai.backend.common.metrics import CommonMetricRegistry

    reg = CommonMetricRegistry(CollectorRegistry())
    for _ in range(int(sys.argv[1])):
        reg.api.observe_request(
            method="GET", endpoint="/folders/{name}", status_code=200, duration=0.05
        )
    reg.bgtask.observe_bgtask_started(task_name="clone")
    print(os.getpid())
    """
)


def _run_worker(directory: Path, requests: int, *, setup: bool) -> int:
    env = dict(os.environ)
    code = WORKER
    if setup:
        # The parent-style call instead of an inherited variable.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        code = (
            "from ai.backend.common.metrics import setup_multiprocess_dir\n"
            f"setup_multiprocess_dir({str(directory)!r}, clean=False)\n" + WORKER
        )
    else:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(requests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def _samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    result = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


REQ_LABELS = frozenset(
    {
        "method": "GET",
        "endpoint": "/folders/{name}",
        "domain": "",
        "operation": "",
        "error_detail": "",
        "status_code": "200",
    }.items()
)
TASK = frozenset({"task_name": "clone"}.items())


def test_workers_are_summed(tmp_path: Path) -> None:
    _run_worker(tmp_path, 3, setup=False)
    _run_worker(tmp_path, 4, setup=True)
    text = render_multiprocess(tmp_path)
    samples = _samples(text)
    assert samples[("backendai_api_request_count_total", REQ_LABELS)] == 7
    assert samples[("backendai_api_request_duration_seconds_count", REQ_LABELS)] == 7
    code, output = promtool_check(text)
    assert code == 0, output


def test_dead_worker_gauges_vanish(tmp_path: Path) -> None:
    first = _run_worker(tmp_path, 1, setup=False)
    second = _run_worker(tmp_path, 1, setup=False)
    assert _samples(render_multiprocess(tmp_path))[("backendai_bgtask_in_progress", TASK)] == 2
    mark_process_dead(first, tmp_path)
    assert _samples(render_multiprocess(tmp_path))[("backendai_bgtask_in_progress", TASK)] == 1
    mark_process_dead(second, tmp_path)
    samples = _samples(render_multiprocess(tmp_path))
    assert samples.get(("backendai_bgtask_in_progress", TASK), 0) == 0
    # Counters survive their writers: the total is still there.
    assert samples[("backendai_api_request_count_total", REQ_LABELS)] == 2
