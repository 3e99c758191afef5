"""The demo steps that run on the demo cluster (:class:`~.demo_runtime.DemoRuntime`).

Each step exercises one capability end to end, prints what happened and returns one summary
row whose ``ok`` is checked, not assumed: the services are found again, every anycast job is
handled exactly once, the broadcast reaches every component, the task reaches 100 % and the
other one ends cancelled, the signed request passes the middleware stack while an unsigned or
tampered one is refused, each agent answers its RPC.

Guarantees: every step reports ok on the in-memory backends
[tests/cli/test_demo.py::test_demo_json_reports_every_step_ok] and on real Redis and etcd
[tests/cli/test_demo.py::test_demo_on_real_backends].
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from ..auth import HMACSigner, issue_token
from ..bgtask import TaskState
from ..clients.http import HTTPStatusError
from ..contexts import bind_request_id
from ..events import BgtaskUpdatedEvent
from ..json import dump_json_str
from ..message_queue import DeadLetter
from .context import CLIContext
from .demo_runtime import DEMO_TASK, DemoCountArgs, DemoJobEvent, DemoNoticeEvent, DemoRuntime

__all__ = (
    "RUNTIME_STEPS",
    "DemoEnv",
    "StepResult",
    "step_auth",
    "step_bgtask",
    "step_deadletter",
    "step_discovery",
    "step_events",
    "step_rpc",
)


@dataclass(frozen=True)
class StepResult:
    """One line of the summary table."""

    capability: str
    outcome: str
    ok: bool = True


@dataclass(frozen=True)
class DemoEnv:
    """What a step gets: the command's context and the running demo cluster."""

    cli: CLIContext
    runtime: DemoRuntime

    def say(self, text: str) -> None:
        """Print a human line with rich markup (nothing in ``--json`` mode)."""
        self.cli.say(text)


async def step_discovery(env: DemoEnv) -> StepResult:
    """Register the manager and both agents, discover them, and read the Prometheus SD JSON."""
    rt = env.runtime
    records = await rt.register_services()
    ids = {r.id for r in records}
    found = [r for r in await rt.discovery.discover() if r.id in ids]
    for r in found:
        env.say(
            f"  [bold]discovery[/]: {r.service_group:8} {r.display_name:8} "
            f"{r.endpoint.protocol}://{r.endpoint.address}:{r.endpoint.port}"
        )
    agents = [r for r in await rt.discovery.get_service_group("agent") if r.id in ids]
    response = await rt.http.request("GET", rt.url, "/sd/prometheus")
    targets = [t for t in response.json() if t["labels"].get("service_id") in {str(i) for i in ids}]
    for t in targets:
        labels = {k: v for k, v in t["labels"].items() if not k.startswith("__meta_")}
        shown = escape(f"{dump_json_str(t['targets'])} {dump_json_str(labels)}")
        env.say(f"  [bold]discovery[/]: SD target {shown}")
    ok = len(found) == len(records) == 3 and len(agents) == 2 and len(targets) == 3
    return StepResult("discovery", f"{len(found)} services found, {len(targets)} SD targets", ok)


async def step_events(env: DemoEnv) -> StepResult:
    """Anycast jobs go to one agent each; a broadcast notice reaches every component."""
    rt = env.runtime
    before = {a.name: len(a.jobs) for a in rt.agents}
    jobs = [DemoJobEvent(job=n, note="demo") for n in range(1, 7)]
    await rt.producer.anycast_events_batch(jobs)

    def handled() -> list[int]:
        return sorted(j for a in rt.agents for j in a.jobs[before[a.name] :])

    done = await rt.wait_until(lambda: len(handled()) >= len(jobs))
    for agent in rt.agents:
        mine = agent.jobs[before[agent.name] :]
        env.say(f"  [bold]events[/]: {agent.name} (group {rt.agent_group}) handled jobs {mine}")
    once = handled() == [j.job for j in jobs]
    text = f"maintenance at {time.strftime('%H:%M')}"
    await rt.producer.broadcast_event(DemoNoticeEvent(text=text))
    receivers = [a.name for a in rt.agents] + ["manager"]

    def got_notice() -> list[str]:
        seen = [a.name for a in rt.agents if text in a.notices]
        return seen + (["manager"] if text in rt.manager_notices else [])

    everyone = await rt.wait_until(lambda: got_notice() == receivers)
    env.say(f"  [bold]events[/]: broadcast {text!r} received by {', '.join(got_notice())}")
    ok = done and once and everyone
    return StepResult(
        "events",
        f"{len(jobs)} anycast jobs handled once each, broadcast reached {len(got_notice())}",
        ok,
    )


async def step_deadletter(env: DemoEnv) -> StepResult:
    """A job every agent fails on is dead-lettered after 3 deliveries, then replayed once fixed."""
    rt = env.runtime
    queue = rt.agents[0].queue
    seen = len(rt.failures)
    msg_id = await rt.producer.anycast_event(DemoJobEvent(job=0, note="poison"))

    async def dead() -> DeadLetter | None:
        for letter in await queue.list_dead_letters(limit=1000):
            if letter.original_id == msg_id and letter.group == rt.agent_group:
                return letter
        return None

    async with asyncio.timeout(10):
        while True:  # the dead-letter stream has no notification to wait on
            letter = await dead()
            if letter is not None:
                break
            await asyncio.sleep(0.05)
    for agent_name, failure in rt.failures[seen:]:
        env.say(
            f"  [bold]deadletter[/]: delivery {failure.delivery_count} to {agent_name} failed: "
            f"{escape(str(failure.exception))}"
        )
    env.say(
        f"  [bold]deadletter[/]: {letter.dlq_id} in events:dlq after {letter.attempts} "
        f"deliveries (group {letter.group}): {escape(letter.error)}"
    )
    rt.poison_cured = True
    before = {a.name: len(a.jobs) for a in rt.agents}
    await queue.replay_dead_letters([letter.dlq_id])
    replayed = await rt.wait_until(
        lambda: any(0 in a.jobs[before[a.name] :] for a in rt.agents), within=10
    )
    by = [a.name for a in rt.agents if 0 in a.jobs[before[a.name] :]]
    left = [d for d in await queue.list_dead_letters(limit=1000) if d.original_id == msg_id]
    env.say(f"  [bold]deadletter[/]: replayed to group {letter.group} only; handled by {by}")
    ok = letter.attempts == 3 and replayed and len(by) == 1 and not left
    return StepResult(
        "deadletter", f"dead-lettered after {letter.attempts} deliveries, replayed once", ok
    )


async def step_bgtask(env: DemoEnv) -> StepResult:
    """Run a background task to completion with a progress bar; cancel another one."""
    rt = env.runtime
    task_id = await rt.bgtask.start(DEMO_TASK, DemoCountArgs(steps=10, interval=0.05))
    columns = (
        TextColumn("  [bold]bgtask[/]: {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
    )
    with Progress(*columns, console=env.cli.out, disable=env.cli.json) as progress:
        bar = progress.add_task(f"{str(task_id)[:8]} {DEMO_TASK}", total=10)
        async with aclosing(rt.follower.follow(task_id)) as events:
            async for event in events:
                if isinstance(event, BgtaskUpdatedEvent):
                    progress.update(bar, completed=event.current_progress)
        record = await rt.bgtask.get(task_id)
        if record.state is TaskState.SUCCEEDED:
            progress.update(bar, completed=10)
    env.say(f"  [bold]bgtask[/]: {str(task_id)[:8]} ended {record.state}: {record.message}")
    other = await rt.bgtask.start(DEMO_TASK, DemoCountArgs(steps=1000, interval=0.05))
    async with aclosing(rt.follower.follow(other)) as events:
        async for event in events:
            if isinstance(event, BgtaskUpdatedEvent) and event.current_progress >= 2:
                break
    cancelled = await rt.bgtask.cancel(other)
    env.say(
        f"  [bold]bgtask[/]: {str(other)[:8]} cancelled at {cancelled.current:g}/"
        f"{cancelled.total:g}: {cancelled.state}"
    )
    ok = record.state is TaskState.SUCCEEDED and cancelled.state is TaskState.CANCELLED
    return StepResult("bgtask", f"one task {record.state}, another {cancelled.state}", ok)


async def step_auth(env: DemoEnv) -> StepResult:
    """Call the manager through its middleware stack: unsigned, signed, tampered, JWT."""
    rt = env.runtime
    outcomes: dict[str, Any] = {}

    async def call(label: str, headers: dict[str, str]) -> dict[str, Any] | None:
        try:
            response = await rt.http.request("GET", rt.url, "/api/whoami", headers=headers)
        except HTTPStatusError as exc:
            outcomes[label] = exc.status
            env.say(f"  [bold]auth[/]: {label:9} -> {exc.status} {exc.upstream_error_code}")
            return None
        outcomes[label] = response.status
        body: dict[str, Any] = response.json()
        env.say(
            f"  [bold]auth[/]: {label:9} -> {response.status} as {body['access_key']} "
            f"({body['method']}), request id {body['request_id']}"
        )
        return body

    await call("unsigned", {})
    keypair = rt.keypair
    signer = HMACSigner(keypair.access_key, keypair.secret_key, rt.url)
    with bind_request_id() as request_id:
        signed = await call("signed", signer.sign("GET", "/api/whoami"))
    forged = HMACSigner(keypair.access_key, "not-" + keypair.secret_key, rt.url)
    await call("tampered", forged.sign("GET", "/api/whoami"))
    token = await call("jwt", {"X-BackendAI-Token": issue_token(keypair)})
    metrics = (await rt.http.request("GET", rt.url, "/metrics")).body.decode()
    counted = 'endpoint="/api/whoami"' in metrics
    env.say(f"  [bold]auth[/]: /metrics counts /api/whoami by route: {counted}")
    ok = (
        outcomes == {"unsigned": 401, "signed": 200, "tampered": 401, "jwt": 200}
        and signed is not None
        and signed["request_id"] == request_id
        and token is not None
        and token["method"] == "jwt"
        and counted
    )
    return StepResult("auth", "unsigned 401, signed 200, tampered 401, JWT 200", ok)


async def step_rpc(env: DemoEnv) -> StepResult:
    """One RPC round trip to each agent through the manager's pooled agent client."""
    rt = env.runtime
    answered = 0
    for name, client in rt.rpc_clients.items():
        started = time.perf_counter()
        reply = await client.ping("hello from the manager")
        health = await client.health()
        elapsed = (time.perf_counter() - started) * 1000
        env.say(
            f"  [bold]rpc[/]: {name} at {client.address}: {escape(reply)}; "
            f"health {escape(dump_json_str(health))} ({elapsed:.1f} ms for both)"
        )
        answered += int(name in reply and health.get("agent") == name)
    stats = rt.rpc_pool.statistics()
    ok = answered == len(rt.agents) == 2
    return StepResult(
        "rpc", f"{answered} agents answered (pool: {stats.connections} connections)", ok
    )


RUNTIME_STEPS = (step_discovery, step_events, step_deadletter, step_bgtask, step_auth, step_rpc)
"""The steps that need the demo cluster, in order."""
