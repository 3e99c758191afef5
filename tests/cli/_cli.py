"""Run the command as a subprocess: blocking, in the background, or from async tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

COMMAND = [sys.executable, "-m", "ai.backend.common"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BACKEND_CONFIG_FILE", None)
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ai.backend.common ARGS`` and capture its output."""
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as a JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Background:
    """A command running in the background; its output lines are collected by threads."""

    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _pump(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, needle: str, *, stream: str = "stderr", timeout: float = 20) -> str:
        """The first line of ``stream`` containing ``needle``; fails after ``timeout``."""
        sink = self.stderr if stream == "stderr" else self.stdout
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in sink:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive()):
                    raise AssertionError(
                        f"no line with {needle!r} on {stream} within {timeout} s; "
                        f"stdout={self.stdout!r} stderr={self.stderr!r}"
                    )
                self._changed.wait(min(left, 0.2))

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def finish(self, timeout: float = 30) -> int:
        """Wait for the process to exit (and its output to be read); returns its status."""
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def start_pumps(self) -> None:
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()


@contextmanager
def background(*args: str) -> Iterator[Background]:
    """Start the command; it is killed on exit from the block if still running."""
    proc = subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    bg = Background(proc)
    bg.start_pumps()
    try:
        yield bg
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def arun_cli(*args: str, limit: float = 60) -> subprocess.CompletedProcess[str]:
    """Like :func:`run_cli`, without blocking the event loop (for tests that serve meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(
        [*COMMAND, *args], proc.returncode, out.decode(), err.decode()
    )
