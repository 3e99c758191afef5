"""Child processes of the test harness: start, stop by PID, log capture and last-resort cleanup.

Guarantees: every process started here is killed when the test process exits normally, on
Ctrl-C (atexit), and, when started from the main thread, even if the test process is itself
SIGKILLed (the child gets SIGKILL through ``PR_SET_PDEATHSIG`` via ``setpriv``).
Limits: Linux only; a process started from another thread is only covered by atexit.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

DEFAULT_GRACE = 5.0
"""Seconds a process gets to exit after SIGTERM before it is SIGKILLed."""

_SETPRIV = shutil.which("setpriv")
_live: set[ManagedProcess] = set()
_workdirs: set[Path] = set()
_registry_lock = threading.Lock()


class HarnessError(RuntimeError):
    """A server of the test harness failed to start, to answer, or to reach a wanted state."""


class ExternalServerError(HarnessError):
    """Process control was asked of a server the harness did not start (``BACKEND_*_ADDR``)."""


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until true; at the deadline raise `HarnessError` naming ``what``.

    Other exceptions from ``predicate`` count as "not yet"; a `HarnessError` aborts the wait.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            if predicate():
                return
            last_exc = None
        except HarnessError:
            raise
        except Exception as exc:  # the condition may raise while the server is coming up
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.1f} s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            if details is not None:
                msg += "\n" + details()
            raise HarnessError(msg)
        time.sleep(interval)


def make_workdir(prefix: str) -> Path:
    """Create a private temporary directory, removed at exit if its owner did not remove it."""
    path = Path(tempfile.mkdtemp(prefix=f"bai-harness-{prefix}-"))
    with _registry_lock:
        _workdirs.add(path)
    return path


def remove_workdir(path: Path) -> None:
    """Remove a directory made by `make_workdir`."""
    shutil.rmtree(path, ignore_errors=True)
    with _registry_lock:
        _workdirs.discard(path)


class ManagedProcess:
    """One server process, started again and again from the same command line and directory."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path) -> None:
        """Describe the process; nothing is started until `start`."""
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self.is_running() and self._proc else "stopped"
        return f"<ManagedProcess {self.name} {state}>"

    @property
    def pid(self) -> int:
        """PID of the running process."""
        if self._proc is None or not self.is_running():
            raise HarnessError(f"{self.name} is not running")
        return self._proc.pid

    @property
    def spawned_pid(self) -> int | None:
        """PID of the last process started, running or not (None before the first start)."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run, or None while it runs or before the first start."""
        return None if self._proc is None else self._proc.poll()

    def is_running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the process with stdout and stderr appended to its log file."""
        if self.is_running():
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        argv = self.argv
        if _SETPRIV is not None and threading.current_thread() is threading.main_thread():
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C in a terminal reaches pytest only
            )
        with _registry_lock:
            _live.add(self)

    def kill(self) -> None:
        """Send SIGKILL and wait until the process has exited."""
        self._signal_and_wait(signal.SIGKILL, None)

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """Send SIGTERM; send SIGKILL if it has not exited within ``grace`` seconds."""
        self._signal_and_wait(signal.SIGTERM, grace)

    def _signal_and_wait(self, sig: signal.Signals, grace: float | None) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        with _registry_lock:
            _live.discard(self)

    def log_since_start(self) -> str:
        """Text the process logged since its last start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines logged since the last start, for error messages."""
        tail = self.log_since_start().splitlines()[-lines:]
        body = "\n".join(f"    {line}" for line in tail) or "    (empty)"
        return f"--- last {len(tail)} log lines of {self.name} ({self.log_path}) ---\n{body}"

    def failure(self, reason: str) -> HarnessError:
        """An error for a failed start: reason, command, exit status and log tail."""
        status = self.returncode
        exited = "still running" if status is None else f"exit status {status}"
        return HarnessError(
            f"{self.name}: {reason} ({exited})\ncommand: {' '.join(self.argv)}\n{self.log_tail()}"
        )


def _cleanup_at_exit() -> None:
    with _registry_lock:
        procs = list(_live)
        dirs = list(_workdirs)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup_at_exit)

__all__ = (
    "DEFAULT_GRACE",
    "ExternalServerError",
    "HarnessError",
    "ManagedProcess",
    "make_workdir",
    "remove_workdir",
    "wait_until",
)
