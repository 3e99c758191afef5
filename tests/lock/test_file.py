"""FileLock only: the OS frees the lock of a killed holder process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from ai.backend.common.lock import FileLock, LockTimeout

_HOLDER = """
import asyncio, sys
from ai.backend.common.lock import FileLock

async def main() -> None:
    lock = FileLock(sys.argv[1], lifetime=600)
    await lock.acquire()
    print("held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "job.lock"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            assert (await proc.stdout.readline()).strip() == b"held"
        with pytest.raises(LockTimeout):
            await FileLock(path, timeout=0.2).acquire()
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        async with FileLock(path, timeout=10) as lock:
            assert lock.locked
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
