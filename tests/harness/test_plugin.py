"""The harness plugin marks tests by the servers they use and fails tests that leak tasks."""

from __future__ import annotations

import pytest

from tests._harness import EtcdServer
from tests._harness.plugin import ALLOW_FLUSH_ENV, RedisServerFactory

FIXTURE_MARKS_USED = {"redis", "sentinel", "etcd"}

LEAKY = """
import asyncio

async def test_leaks_a_task():
    asyncio.create_task(asyncio.sleep(3600), name="forgotten-sleeper")

async def test_awaits_its_task():
    task = asyncio.create_task(asyncio.sleep(0))
    await task

async def test_cancels_and_awaits_its_task():
    task = asyncio.create_task(asyncio.sleep(3600))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
"""


def test_a_leaked_task_fails_the_test(inner_pytester: pytest.Pytester) -> None:
    inner_pytester.makepyfile(LEAKY)
    result = inner_pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_task*",
            "*1 asyncio task(s) outlived*test_leaks_a_task*",
            "*forgotten-sleeper*sleep*",
        ]
    )


def test_tasks_owned_by_fixtures_are_not_leaks(inner_pytester: pytest.Pytester) -> None:
    inner_pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.fixture
        async def background():
            task = asyncio.create_task(asyncio.sleep(3600))
            yield task
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        async def test_uses_a_fixture_task(background):
            assert not background.done()

        def test_sync_tests_get_no_event_loop(request):
            assert not any(n.endswith("_scoped_runner") for n in request.fixturenames)
        """
    )
    inner_pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_wider_loop_scopes_are_checked_against_their_own_loop(
    inner_pytester: pytest.Pytester,
) -> None:
    inner_pytester.makepyfile(
        """
        import asyncio
        import pytest
        import pytest_asyncio

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def module_task():
            task = asyncio.create_task(asyncio.sleep(3600))
            yield task
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        async def test_first(module_task):
            assert not module_task.done()

        async def test_second(module_task):
            assert module_task.get_loop() is asyncio.get_running_loop()

        async def test_leaks_in_the_module_loop(module_task):
            asyncio.create_task(asyncio.sleep(3600), name="module-leak")
        """
    )
    result = inner_pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*outlived*test_leaks_in_the_module_loop*", "*module-leak*"])


def test_fixtures_mark_their_tests(inner_pytester: pytest.Pytester) -> None:
    inner_pytester.makepyfile(
        """
        def test_plain():
            pass

        def test_redis(redis_url):
            pass

        def test_factory(redis_server_factory):
            pass

        def test_sentinel(redis_sentinel):
            pass

        def test_etcd(etcd_endpoint):
            pass

        def test_cluster(etcd_cluster):
            pass
        """
    )

    items, _ = inner_pytester.inline_genitems("-p", "no:cacheprovider")
    marks = {
        item.name: sorted(m.name for m in item.iter_markers() if m.name in FIXTURE_MARKS_USED)
        for item in items
    }
    assert marks == {
        "test_plain": [],
        "test_redis": ["redis"],
        "test_factory": ["redis"],
        "test_sentinel": ["redis", "sentinel"],
        "test_etcd": ["etcd"],
        "test_cluster": ["etcd"],
    }


def test_deselected_server_tests_start_no_server(inner_pytester: pytest.Pytester) -> None:
    inner_pytester.makepyfile(
        """
        from tests._harness import plugin

        def test_redis(redis_url):
            raise AssertionError("deselected")

        def test_nothing_was_started():
            assert plugin.STARTUP_TIMES == []
        """
    )
    from tests._harness import plugin

    saved = list(plugin.STARTUP_TIMES)
    plugin.STARTUP_TIMES.clear()
    try:
        result = inner_pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "not redis")
    finally:
        plugin.STARTUP_TIMES[:] = saved
    result.assert_outcomes(passed=1, deselected=1)


def test_external_servers_need_flush_opt_in(
    inner_pytester: pytest.Pytester,
    redis_server_factory: RedisServerFactory,
    etcd_server: EtcdServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = redis_server_factory(name="external")
    redis.command("SET", "precious", "1")
    etcd_server.call("/v3/kv/put", {"key": "cHJlY2lvdXM=", "value": "MQ=="})  # precious=1
    monkeypatch.setenv("BACKEND_REDIS_ADDR", f"127.0.0.1:{redis.port}")
    monkeypatch.setenv("BACKEND_ETCD_ADDR", etcd_server.endpoint)
    monkeypatch.delenv(ALLOW_FLUSH_ENV, raising=False)
    inner_pytester.makepyfile(
        """
        def test_redis(redis_url):
            pass

        def test_etcd(etcd_endpoint):
            pass
        """
    )
    refused = inner_pytester.runpytest_inprocess("-p", "no:cacheprovider")
    refused.assert_outcomes(errors=2)
    refused.stdout.fnmatch_lines(
        [
            "*BACKEND_REDIS_ADDR=127.0.0.1:*external server*FLUSHALL*BACKEND_TEST_ALLOW_FLUSH=1*",
            "*BACKEND_ETCD_ADDR=127.0.0.1:*external server*every key*BACKEND_TEST_ALLOW_FLUSH=1*",
        ]
    )
    assert redis.command("GET", "precious") == "1"
    assert etcd_server.call("/v3/kv/range", {"key": "cHJlY2lvdXM="}).get("count") == "1"

    monkeypatch.setenv(ALLOW_FLUSH_ENV, "1")
    inner_pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert redis.command("GET", "precious") is None
    assert "kvs" not in etcd_server.call("/v3/kv/range", {"key": "cHJlY2lvdXM="})
