"""WebServer: run an aiohttp application on a TCP site and stop it gracefully.

::

    async with WebServer(app, host="0.0.0.0", port=8080, shutdown_timeout=10) as server:
        await server.serve_forever()        # until SIGINT/SIGTERM or server.request_stop()

Stopping closes the listening socket first, lets in-flight requests finish within
``shutdown_timeout``, cancels the handlers still running after that, then runs the app's
``on_shutdown`` and ``on_cleanup`` hooks.

Guarantees:
- an in-flight request finishes normally when the stop comes during it
  [tests/web/test_runner.py::test_in_flight_request_drains];
- after the deadline, handlers still running are cancelled and the stop completes
  [tests/web/test_runner.py::test_drain_deadline_cancels_handlers];
- ``serve_forever`` returns on SIGTERM [tests/web/test_runner.py::test_signal_stops_server];
- a port already in use raises ``ServerStartFailed`` [tests/web/test_runner.py::test_bind_failure];
- a start that fails (a startup hook raising, a bind failure, cancellation) first undoes what
  it entered: the ``cleanup_ctx`` contexts already entered are exited, then the error is raised
  [tests/web/test_runner.py::test_failed_startup_exits_entered_contexts];
- ``aclose()`` is idempotent [tests/web/test_runner.py::test_in_flight_request_drains].
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from aiohttp import web

from ..exception import InvalidArgument
from .exceptions import ServerStartFailed

__all__ = ("WebServer",)


class WebServer:
    """An aiohttp ``AppRunner`` plus ``TCPSite`` with a stop event and a drain deadline."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 10.0,
        reuse_port: bool = False,
        backlog: int = 128,
    ) -> None:
        if shutdown_timeout < 0:
            raise InvalidArgument(
                f"shutdown_timeout must be >= 0, got {shutdown_timeout}",
                data={"field": "shutdown_timeout"},
            )
        self.app = app
        self.host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._reuse_port = reuse_port
        self._backlog = backlog
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Set the app up and start listening; a bind failure raises ``ServerStartFailed``.

        On any failure (cancellation included) the contexts the app's startup entered are
        exited before the error is raised; aiohttp then skips ``on_cleanup`` hooks, since
        ``on_startup`` did not complete.
        """
        runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=self._shutdown_timeout, access_log=None
        )
        listening = False
        try:
            await runner.setup()
            site = web.TCPSite(
                runner, self.host, self._port, reuse_port=self._reuse_port, backlog=self._backlog
            )
            listening = True
            await site.start()
        except BaseException as exc:
            try:
                await runner.cleanup()
            except Exception as cleanup_error:  # keep the cause of the failed start on top
                exc.add_note(f"cleaning up after the failed start also failed: {cleanup_error!r}")
            if listening and isinstance(exc, OSError):
                raise ServerStartFailed(
                    f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}",
                    data={"host": self.host, "port": self._port},
                ) from exc
            raise
        self._runner = runner
        for address in runner.addresses:  # learn the port chosen for port 0
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return (safe to call from a signal handler)."""
        self._stop.set()

    async def serve_forever(
        self, *, stop_signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Wait for a stop signal or ``request_stop()``, then stop gracefully."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        try:
            for sig in stop_signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
            await self._stop.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, drain within ``shutdown_timeout``, clean up (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
