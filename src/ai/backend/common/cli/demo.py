"""``backend.ai-common demo``: a guided walk through what the package does.

The demo starts, in one process, a small cluster (:class:`~.demo_runtime.DemoRuntime`): a
"manager" web service with the full middleware stack, HMAC auth with a demo keypair it prints,
metrics, a Prometheus SD endpoint, background tasks with SSE and a live page; two "agents" that
consume anycast events (group ``agent``) and answer RPC. It runs on the embedded in-memory
backends, or on Redis / etcd given with ``--redis`` / ``--etcd``. Each step is a small
coroutine exercising one capability and returning one summary row (listed in ``STEPS``); the
demo ends with a summary table and the time it took, and exits 0 when every step is ok. With
``--serve`` it keeps running after the walkthrough and prints the URLs until SIGINT/SIGTERM.

Guarantees:
- every step reports ok on the in-memory backends, well under 30 s
  [tests/cli/test_demo.py::test_demo_json_reports_every_step_ok];
- a step that raises anything is reported as failed (name, error type, message) and the
  walkthrough goes on; the demo then exits 1
  [tests/cli/test_demo.py::test_failing_step_is_reported];
- the breaker step observes closed -> open -> half_open -> closed from the breaker's own events,
  and says that its wait is simulated [tests/cli/test_demo.py::test_resilience_step_sees_half_open];
- the manager binds loopback only, unless ``--insecure-demo`` (it serves an admin JWT to any
  caller at ``/ui/token``) [tests/cli/test_demo.py::test_non_loopback_host_needs_insecure_demo];
- the same on real Redis and etcd, leaving no consumer group behind
  [tests/cli/test_demo.py::test_demo_on_real_backends];
- ``--serve`` serves until SIGTERM, then shuts down and exits 0
  [tests/cli/test_live_page.py::test_live_page_shows_task_reaching_100].
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pickle
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import click

from ..configs import ConfigurationError, load_config
from ..contexts import ContextBundle, bind_request_id, bind_user, current_request_id, current_user
from ..data import UserData
from ..exception import InvalidAPIParameters, InvalidArgument
from ..resilience import (
    Backoff,
    BreakerOpen,
    BreakerStateChanged,
    CircuitBreaker,
    FakeClock,
    Pipeline,
    ResilienceEvent,
    Retry,
)
from ..types import BinarySize, HostPortPair, ResourceSlot
from .context import CLIContext, pass_cli
from .demo_runtime import DemoRuntime
from .demo_steps import (
    DemoEnv,
    StepResult,
    step_auth,
    step_bgtask,
    step_deadletter,
    step_discovery,
    step_events,
    step_rpc,
)
from .settings import CommonSettings

__all__ = (
    "EXPECTED_BREAKER_PATH",
    "STEPS",
    "DemoEnv",
    "StepResult",
    "demo",
    "is_loopback",
    "run_demo",
)


Step = Callable[[DemoEnv], Awaitable[StepResult]]


async def step_errors(env: DemoEnv) -> StepResult:
    """Errors carry an error code and render as RFC 7807 problem+json; they survive pickling."""
    from pydantic import BaseModel, ValidationError

    class CreateSession(BaseModel):
        image: str
        cluster_size: int

    try:
        CreateSession.model_validate({"cluster_size": "many"})
    except ValidationError as exc:
        err = InvalidAPIParameters.from_validation_error(exc, source="request body")
    problem = err.problem()
    env.say(f"  [bold]errors[/]: {problem['error_code']} ({err.status_code}) {problem['msg']}")
    restored = pickle.loads(pickle.dumps(err))
    same = type(restored) is type(err) and restored.data == err.data
    return StepResult("errors", f"{problem['error_code']}, pickle round trip {same}", same)


async def step_contexts(env: DemoEnv) -> StepResult:
    """A context bundle (request id, user) travels to another task and back out as a dict."""
    user = UserData.model_validate({"user_id": "f46860a2-a604-e5af-f4db-1c1eaa66b464"})
    with bind_request_id() as rid, bind_user(user):
        wire = ContextBundle.capture().to_dict()

    async def elsewhere() -> tuple[str | None, UserData | None]:
        with ContextBundle.from_dict(wire).applied():
            return current_request_id(), current_user()

    got_rid, got_user = await asyncio.create_task(elsewhere())
    ok = got_rid == rid and got_user == user and current_request_id() is None
    env.say(f"  [bold]contexts[/]: request {rid} restored in another task: {ok}")
    return StepResult("contexts", f"bundle carried request {rid}", ok)


async def step_types(env: DemoEnv) -> StepResult:
    """Sizes, resource slots and addresses parse and print the way operators write them."""
    size = BinarySize.from_str("1.5g")
    slots = ResourceSlot.from_user_input({"cpu": "2", "mem": "4g"}) + ResourceSlot({"cpu": "0.5"})
    addr = HostPortPair.parse("[::1]:8080")
    env.say(f"  [bold]types[/]: 1.5g = {int(size):,} bytes ({size}); slots {slots.to_humanized()}")
    env.say(f"  [bold]types[/]: IPv6 address {addr} -> host {addr.host}, port {addr.port}")
    ok = int(size) == 1_610_612_736 and slots["cpu"] == 2.5 and addr.port == 8080
    return StepResult("types", f"{size}, {addr}, cpu={slots['cpu']}", ok)


async def step_configs(env: DemoEnv) -> StepResult:
    """Layered config: file, environment and override, each value with its source."""
    return await asyncio.to_thread(_configs_walkthrough, env.cli)


def _configs_walkthrough(cli: CLIContext) -> StepResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "backend.ai-common.toml")
        path.write_text('namespace = "demo"\n[events]\ngroup = "agent"\n')
        env = {"BACKEND_EVENTS__MAX_DELIVERIES": "3"}
        loaded = load_config(
            CommonSettings, config_file=path, environ=env, overrides={"redis": "redis://demo"}
        )
        for key in ("namespace", "events.group", "events.max_deliveries", "redis", "etcd"):
            cli.say(f"  [bold]configs[/]: {key:24} from {loaded.source_of(key)}")
        path.write_text("[events]\nmax-deliveries = 0\n")
        try:
            load_config(CommonSettings, config_file=path, env_prefix=None)
        except ConfigurationError as exc:
            rejected = str(path) in str(exc) and "events.max-deliveries" in str(exc)
            cli.say(f"  [bold]configs[/]: bad file rejected: {exc}")
        else:
            rejected = False
    from_env = loaded.source_of("events.max_deliveries").layer == "env"
    ok = loaded.config.events.max_deliveries == 3 and from_env and rejected
    return StepResult("configs", "file < env < override, bad value named", ok)


class _Transitions:
    """A breaker observer that records its state changes as ``(old, new)`` pairs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def on_event(self, event: ResilienceEvent) -> None:
        """Record a ``BreakerStateChanged``; ignore the rest."""
        if isinstance(event, BreakerStateChanged):
            self.seen.append((str(event.old), str(event.new)))

    def path(self) -> str:
        """``closed -> open -> half_open -> closed`` (the states actually passed through)."""
        if not self.seen:
            return "no transition"
        return " -> ".join([self.seen[0][0], *(new for _, new in self.seen)])


EXPECTED_BREAKER_PATH = "closed -> open -> half_open -> closed"
"""The transitions the resilience step must observe."""


async def step_resilience(env: DemoEnv) -> StepResult:
    """A breaker opens on failures, fails fast, probes after its wait and closes again.

    The breaker's wait runs on a :class:`FakeClock` that the step advances, so no time passes;
    the output says so. The states are checked from the breaker's own transition events.
    """
    clock = FakeClock()
    transitions = _Transitions()
    wait = 5.0
    breaker = CircuitBreaker(
        name="storage-proxy",
        minimum_calls=4,
        window_size=10,
        wait_in_open=wait,
        clock=clock,
        observers=(transitions,),
    )
    # The retry sleeps for real (10 ms); the breaker's wait runs on a fake clock the demo advances.
    retry = Retry(max_attempts=2, backoff=Backoff(kind="fixed", initial=0.01, max_delay=0.01))
    pipeline = Pipeline([retry, breaker], dependency="storage-proxy")
    env.runtime.breakers["storage-proxy (demo)"] = breaker
    healthy = False
    calls = 0

    async def dependency() -> str:
        nonlocal calls
        calls += 1
        if not healthy:
            raise ConnectionError("storage proxy down")
        return "ok"

    for _ in range(3):
        with contextlib.suppress(ConnectionError, BreakerOpen):
            await pipeline.call(dependency)
    opened = breaker.state == "open"
    before = calls
    try:
        await breaker.call(dependency)
        fast_failed = False
    except BreakerOpen as exc:
        fast_failed = calls == before
        env.say(f"  [bold]resilience[/]: {exc} (dependency not called; clock simulated)")
    healthy = True
    clock.advance(wait)
    env.say(
        f"  [bold]resilience[/]: {wait:.0f} s of breaker wait simulated on a fake clock "
        "(no real waiting)"
    )
    result = await pipeline.call(dependency)
    path = transitions.path()
    env.say(f"  [bold]resilience[/]: one probe succeeded ({result}); states seen: {path}")
    ok = opened and fast_failed and path == EXPECTED_BREAKER_PATH and breaker.state == "closed"
    return StepResult("resilience", f"breaker {path} (wait simulated)", ok)


STEPS: list[Step] = [
    step_types,
    step_errors,
    step_contexts,
    step_configs,
    step_discovery,
    step_events,
    step_deadletter,
    step_bgtask,
    step_resilience,
    step_auth,
    step_rpc,
]
"""The walkthrough, in order."""


STEP_TIMEOUT = 20.0
"""Seconds one demo step may take before it is reported as failed."""


async def run_demo(env: DemoEnv, steps: Sequence[Step] = STEPS) -> list[StepResult]:
    """Run ``steps`` in order; a failing step is reported (name, error type and message) and
    the walkthrough goes on with the next one."""
    results = []
    for step in steps:
        name = step.__name__.removeprefix("step_")
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                results.append(await step(env))
        except TimeoutError:
            results.append(StepResult(name, f"did not finish within {STEP_TIMEOUT:.0f} s", False))
        except Exception as exc:  # any failure of one step is that step's outcome, not fatal
            message = " ".join(str(exc).split()) or "(no message)"
            results.append(StepResult(name, f"failed: {type(exc).__name__}: {message}", False))
    return results


def _urls(runtime: DemoRuntime) -> dict[str, str]:
    base = runtime.url
    return {
        "page": f"{base}/",
        "manager": f"{base}/api/",
        "metrics": f"{base}/metrics",
        "sd": f"{base}/sd/prometheus",
        "task_events": f"{base}/events/background-task?taskId=<id>",
    }


async def _demo(cli: CLIContext, *, serve: bool, host: str, port: int, started: float) -> bool:
    stop = asyncio.Event()
    if serve:  # a stop asked for during the walkthrough ends the demo right after it
        cli.stop_on_signals(stop)
    async with DemoRuntime(cli, host=host, port=port) as runtime:
        keypair = runtime.keypair
        cli.say(f"[bold]backend.ai-common demo[/] ({runtime.backends})")
        cli.say(
            f"manager at {runtime.url}; demo keypair {keypair.access_key} / {keypair.secret_key}"
        )
        results = await run_demo(DemoEnv(cli, runtime))
        if cli.json:
            for r in results:
                cli.emit({"capability": r.capability, "outcome": r.outcome, "ok": r.ok})
        else:
            cli.table(
                "summary",
                ["capability", "outcome", "ok"],
                [[r.capability, r.outcome, "yes" if r.ok else "NO"] for r in results],
            )
        elapsed = f"done in {time.monotonic() - started:.2f} s"
        if cli.json:
            cli.note(elapsed)
        else:
            cli.say(elapsed)
        if serve:
            urls = _urls(runtime)
            cli.emit(
                {
                    "serving": True,
                    **urls,
                    "access_key": keypair.access_key,
                    "secret_key": keypair.secret_key,
                }
            )
            for name, url in urls.items():
                cli.say(f"  {name:12} {url}")
            cli.say("serving until Ctrl-C (SIGINT) or SIGTERM")
            await stop.wait()
            cli.say("shutting down")
    return all(r.ok for r in results)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--serve", is_flag=True, help="keep serving after the walkthrough, until Ctrl-C")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="manager port (0: any)")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="manager address (loopback only)"
)
@click.option(
    "--insecure-demo",
    is_flag=True,
    help="allow a non-loopback --host: anyone who reaches it gets an admin token at /ui/token",
)
@pass_cli
def demo(cli: CLIContext, serve: bool, port: int, host: str, insecure_demo: bool) -> None:
    """Walk through the package's capabilities on embedded backends and print a summary.

    The manager serves /ui/token, a JWT for the demo's admin keypair, to any caller (the live
    page needs it), so it binds a loopback address only unless --insecure-demo is given.
    """
    if not is_loopback(host) and not insecure_demo:
        raise InvalidArgument(
            f"demo --host {host!r} is not a loopback address: the demo hands an admin token "
            "to anyone who can reach it; add --insecure-demo to serve it there anyway",
            data={"option": "--host", "value": host},
        )
    started = time.monotonic()
    ok = cli.run(_demo(cli, serve=serve, host=host, port=port, started=started))
    if not ok:
        raise click.exceptions.Exit(1)
