"""pytest plugin of the test harness: server fixtures, automatic markers, task-leak check.

Fixtures: ``redis_server`` (session), ``redis_url``, ``redis_server_factory``, ``redis_sentinel``,
``etcd_server`` (session), ``etcd_endpoint``, ``etcd_cluster``. ``BACKEND_REDIS_ADDR`` and
``BACKEND_ETCD_ADDR`` (``host:port``) replace the session servers with existing ones. The tests
wipe the server before each test that uses ``redis_url`` (``FLUSHALL``: every database) or
``etcd_endpoint`` (every key), so an external server is wiped only when
``BACKEND_TEST_ALLOW_FLUSH=1`` says that is fine; otherwise those fixtures fail with a message
saying so.

Guarantees:
- an external server (``BACKEND_REDIS_ADDR``/``BACKEND_ETCD_ADDR``) is never wiped without
  ``BACKEND_TEST_ALLOW_FLUSH=1`` [harness/test_plugin.py::test_external_servers_need_flush_opt_in];
- a test using a ``redis_*``/``etcd_*`` fixture gets the ``redis``/``sentinel``/``etcd`` marker,
  so ``-m "not redis"`` starts no server [harness/test_plugin.py::test_fixtures_mark_their_tests,
  ::test_deselected_server_tests_start_no_server];
- every process started is stopped at the end of its fixture scope, and on Ctrl-C
  [harness/test_cleanup.py::test_ctrl_c_stops_every_server_and_removes_its_directory];
- an async test fails (as an error at teardown) when a task it started is still pending once
  its fixtures are torn down [harness/test_plugin.py::test_a_leaked_task_fails_the_test].
Limits: the check sees only tasks of the test's own event loop; tasks that fixtures own and
close in their teardown are not leaks.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import pytest
from pytest_asyncio import is_async_test

from .etcd import (
    ETCD_ADDR_ENV,
    EtcdCluster,
    EtcdServer,
    etcd_server_from_env,
    start_etcd_cluster,
    start_etcd_server,
)
from .redis import REDIS_ADDR_ENV, RedisServer, redis_server_from_env, start_redis_server
from .sentinel import RedisSentinelSet, start_sentinel_set

FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    "redis_server": ("redis",),
    "redis_url": ("redis",),
    "redis_server_factory": ("redis",),
    "redis_sentinel": ("redis", "sentinel"),
    "etcd_server": ("etcd",),
    "etcd_endpoint": ("etcd",),
    "etcd_cluster": ("etcd",),
}
"""Markers each harness fixture adds to the tests that use it."""

STARTUP_TIMES: list[tuple[str, float]] = []
"""``(what, seconds)`` for each server start of this session, printed in the summary."""

_SETTLE_ROUNDS = 3

ALLOW_FLUSH_ENV = "BACKEND_TEST_ALLOW_FLUSH"
"""Set to ``1`` to let the tests wipe the external servers ``BACKEND_*_ADDR`` name."""


def ensure_wipe_allowed(external: bool, variable: str, address: str, wipe: str) -> None:
    """Fail the test unless wiping the server is fine: ours always, an external one only with
    ``BACKEND_TEST_ALLOW_FLUSH=1``."""
    if not external or os.environ.get(ALLOW_FLUSH_ENV) == "1":
        return
    pytest.fail(
        f"{variable}={address} is an external server, and this test would {wipe} on it first; "
        f"set {ALLOW_FLUSH_ENV}=1 if that server may be wiped, or unset {variable} to let the "
        "tests start their own",
        pytrace=False,
    )


class RedisServerFactory(Protocol):
    """Type of the ``redis_server_factory`` fixture."""

    def __call__(
        self,
        *,
        name: str = ...,
        replicaof: tuple[str, int] | None = ...,
        extra_config: Sequence[str] = ...,
        timeout: float = ...,
        **options: str | int,
    ) -> RedisServer:
        """Start a new private redis-server; it is stopped when the test ends."""
        ...


@contextmanager
def _timed(what: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    STARTUP_TIMES.append((what, time.monotonic() - start))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the harness fixtures they use, before ``-m`` deselects."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        wanted = {mark for name in names for mark in FIXTURE_MARKS.get(name, ())}
        for mark in sorted(wanted):
            if item.get_closest_marker(mark) is None:
                item.add_marker(mark)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how long each server of the session took to start."""
    if not STARTUP_TIMES:
        return
    terminalreporter.section("harness start-up times")
    by_fixture: dict[str, list[float]] = {}
    for what, seconds in STARTUP_TIMES:
        by_fixture.setdefault(what, []).append(seconds)
    for what, times in by_fixture.items():
        terminalreporter.write_line(
            f"{what}: {len(times)} start(s), median {statistics.median(times):.3f} s, "
            f"max {max(times):.3f} s"
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server, or the one ``BACKEND_REDIS_ADDR`` names."""
    external = redis_server_from_env()
    if external is not None:
        external.wait_ready()
        yield external
        return
    with _timed("redis_server"):
        server = start_redis_server(name="redis-session")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's Redis, emptied by FLUSHALL (and restarted if a test stopped it).

    On an external server (``BACKEND_REDIS_ADDR``) the FLUSHALL, which empties every database,
    needs ``BACKEND_TEST_ALLOW_FLUSH=1``; without it the test fails and nothing is deleted.
    """
    ensure_wipe_allowed(
        redis_server.external, REDIS_ADDR_ENV, f"{redis_server.host}:{redis_server.port}",
        "run FLUSHALL (deleting every key of every database)",
    )  # fmt: skip
    if not redis_server.external and not redis_server.is_running():
        redis_server.start()
    redis_server.command("FLUSHALL")
    return redis_server.url


@pytest.fixture
def redis_server_factory() -> Iterator[RedisServerFactory]:
    """Start new private redis-servers (``factory(**options)``); all stop when the test ends."""
    started: list[RedisServer] = []

    def factory(**kwargs: Any) -> RedisServer:
        kwargs.setdefault("name", f"redis-{len(started)}")
        with _timed("redis_server_factory"):
            server = start_redis_server(**kwargs)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.destroy()


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """Master, replica and three sentinels (service ``mymaster``), stopped when the test ends."""
    with _timed("redis_sentinel"):
        sentinel_set = start_sentinel_set()
    try:
        yield sentinel_set
    finally:
        sentinel_set.destroy()


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """The session's single-member etcd, or the one ``BACKEND_ETCD_ADDR`` names."""
    external = etcd_server_from_env()
    if external is not None:
        external.wait_ready()
        yield external
        return
    with _timed("etcd_server"):
        server = start_etcd_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def etcd_endpoint(etcd_server: EtcdServer) -> str:
    """``host:port`` of the session's etcd with every key deleted (restarted if it was stopped).

    On an external server (``BACKEND_ETCD_ADDR``) deleting every key needs
    ``BACKEND_TEST_ALLOW_FLUSH=1``; without it the test fails and nothing is deleted.
    """
    ensure_wipe_allowed(
        etcd_server.external, ETCD_ADDR_ENV, etcd_server.endpoint,
        "delete every key (the whole keyspace)",
    )  # fmt: skip
    if not etcd_server.external and not etcd_server.is_running():
        etcd_server.start()
    etcd_server.delete_all_keys()
    return etcd_server.endpoint


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A new 3-member etcd cluster, stopped when the test ends."""
    with _timed("etcd_cluster"):
        cluster = start_etcd_cluster(3)
    try:
        yield cluster
    finally:
        cluster.destroy()


def _loop_scope(item: pytest.Item) -> str:
    """The loop scope pytest-asyncio runs an async test in (its marker, else the ini default)."""
    marker = item.get_closest_marker("asyncio")
    kwargs = marker.kwargs if marker is not None else {}
    scope = kwargs.get("loop_scope") or kwargs.get("scope")
    return str(scope or item.config.getini("asyncio_default_test_loop_scope") or "function")


async def _settle() -> None:
    """Let tasks that were just cancelled or woken run to completion."""
    for _ in range(_SETTLE_ROUNDS):
        await asyncio.sleep(0)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks, return_exceptions=True)


def _describe(tasks: set[asyncio.Task[Any]]) -> str:
    return "\n".join(f"  {task!r}" for task in sorted(tasks, key=lambda t: t.get_name()))


@pytest.fixture(autouse=True)
def _no_task_outlives_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an async test that leaves a task of its loop pending after its fixtures closed."""
    item = request.node
    if not is_async_test(item):
        yield  # sync tests need no event loop
        return
    runner: asyncio.Runner = request.getfixturevalue(f"_{_loop_scope(item)}_scoped_runner")
    loop = runner.get_loop()
    before = asyncio.all_tasks(loop)
    # Requested first, this fixture is torn down after the test's other fixtures and before the
    # runner closes the loop: tasks owned and closed by fixtures do not count as leaks.
    yield
    if loop.is_closed():
        return
    runner.run(_settle())
    leaked = {t for t in asyncio.all_tasks(loop) - before if not t.done()}
    if leaked:
        description = _describe(leaked)
        runner.run(_cancel_all(leaked))
        pytest.fail(
            f"{len(leaked)} asyncio task(s) outlived {item.nodeid}; cancel and await every "
            f"task a test or fixture starts:\n{description}",
            pytrace=False,
        )


__all__: tuple[str, ...] = (
    "ALLOW_FLUSH_ENV",
    "FIXTURE_MARKS",
    "STARTUP_TIMES",
    "RedisServerFactory",
    "ensure_wipe_allowed",
    "etcd_cluster",
    "etcd_endpoint",
    "etcd_server",
    "redis_sentinel",
    "redis_server",
    "redis_server_factory",
    "redis_url",
)
