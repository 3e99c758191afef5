"""Servers started by a pytest run die with it: on Ctrl-C, and even when pytest is SIGKILLed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._harness import wait_until

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import json
import json
import os
import shutil
import time

def test_hold(redis_server, etcd_server):
    servers = [redis_server, etcd_server]
    state = {
        "pids": [s.pid for s in servers],
        "dirs": [str(s.process.workdir) for s in servers],
    }
    with open("state.tmp", "w") as f:
        json.dump(state, f)
    os.rename("state.tmp", "state.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # held until the outer test signals this run
        time.sleep(0.05)
"""


REAPER = """
import ctypes
import json
import os
import shutil
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
# Orphaned servers are re-parented here, not to PID 1, and reaped: no zombies are left behind.
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
child = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"])
with open("pytest.pid", "w") as f:
    f.write(str(child.pid))
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _run_holder(pytester: pytest.Pytester, sig: signal.Signals) -> dict[str, list[Any]]:
    """Run HOLDER in a child pytest, wait for its servers, send ``sig`` to that pytest.

    The child runs under a subreaper that exits once every process below it has exited and been
    reaped. Returns the PIDs of the servers.
    """
    pytester.makepyfile(HOLDER)
    reaper_script = pytester.path / "reaper.py"
    reaper_script.write_text(REAPER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BACKEND_REDIS_ADDR", None)
    env.pop("BACKEND_ETCD_ADDR", None)
    reaper = subprocess.Popen(
        [sys.executable, str(reaper_script)],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = pytester.path / "state.json"
    try:
        wait_until(state_file.exists, 60, "the child pytest to start its servers")
        state: dict[str, list[Any]] = json.loads(state_file.read_text())
        assert all(_alive(pid) for pid in state["pids"])
        assert all(Path(d).is_dir() for d in state["dirs"])
        os.kill(int((pytester.path / "pytest.pid").read_text()), sig)
        reaper.wait(30)  # returns only when pytest and every server below it have exited
    finally:
        if reaper.poll() is None:
            reaper.kill()
            reaper.wait()
    return state


@pytest.mark.slow
def test_ctrl_c_stops_every_server_and_removes_its_directory(
    inner_pytester: pytest.Pytester,
) -> None:
    state = _run_holder(inner_pytester, signal.SIGINT)
    assert not any(_alive(pid) for pid in state["pids"])
    assert not any(Path(d).exists() for d in state["dirs"])


@pytest.mark.slow
def test_servers_die_with_a_sigkilled_pytest(inner_pytester: pytest.Pytester) -> None:
    state = _run_holder(inner_pytester, signal.SIGKILL)
    assert not any(_alive(pid) for pid in state["pids"])
    for leftover in state["dirs"]:  # nothing could run in the killed pytest to remove them
        shutil.rmtree(leftover, ignore_errors=True)
