"""The demo's cluster in one process: a "manager", two "agents", and the backends they share.

:class:`DemoRuntime` opens, in order: the message-queue backend (a :class:`MemoryBroker`, or
Redis given ``--redis``), one queue per component (group ``manager`` with one consumer, group
``agent`` with two), the background-task store and manager, the event dispatchers (the agents
consume anycast ``demo_job`` events and receive ``demo_notice`` broadcasts; the manager feeds
bgtask events to an :class:`EventHub` for the SSE endpoint), two agent RPC servers on loopback
ports with the manager's pooled :class:`AgentRPCPool`, service discovery (in memory, or etcd /
Redis when given), and the manager's web service (:mod:`.demo_service`). Closing undoes it all
in reverse order; on a real Redis the demo's consumer groups are removed.

On a real Redis the groups are named ``demo-manager`` / ``demo-agent`` so that the demo never
takes events away from real components sharing that Redis.

Guarantees:
- the whole runtime opens, serves the walkthrough and closes cleanly on the in-memory backends
  [tests/cli/test_demo.py::test_demo_json_reports_every_step_ok], and on real Redis and etcd
  [tests/cli/test_demo.py::test_demo_on_real_backends].
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field

from ..auth import (
    HMACVerifier,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    generate_keypair,
)
from ..bgtask import (
    AbstractTaskStore,
    BackgroundTaskConfig,
    BackgroundTaskManager,
    BgtaskMetrics,
    MemoryTaskStore,
    ProgressReporter,
    TaskFollower,
    TaskRegistry,
    subscribe_bgtask_events,
)
from ..bgtask.redis import RedisTaskStore
from ..clients.agent import AgentClient, AgentRPCPool, AgentRPCServer
from ..clients.etcd import EtcdClient
from ..clients.http import HTTPSessionPool
from ..clients.valkey import ValkeyClient
from ..data.user import UserRole
from ..events import (
    AbstractAnycastEvent,
    AbstractBroadcastEvent,
    BgtaskCancelledEvent,
    BgtaskDoneEvent,
    BgtaskFailedEvent,
    BgtaskPartialSuccessEvent,
    DispatchFailure,
    EventDispatcher,
    EventDomain,
    EventHub,
    EventProducer,
)
from ..message_queue import (
    REPLAY_STREAM_PREFIX,
    AbstractMessageQueue,
    MemoryBroker,
    MemoryMessageQueue,
    QueueConfig,
)
from ..message_queue.redis import RedisMessageQueue
from ..metrics import CommonMetricRegistry
from ..resilience import CircuitBreaker
from ..service_discovery import (
    AbstractServiceDiscovery,
    EtcdServiceDiscovery,
    MemoryServiceDiscovery,
    MemoryServiceRegistry,
    RedisServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
    ServiceRegistrar,
)
from ..web import WebServer
from .context import CLIContext

__all__ = (
    "DEMO_TASK",
    "DemoAgent",
    "DemoCountArgs",
    "DemoJobEvent",
    "DemoNoticeEvent",
    "DemoRuntime",
)

DEMO_TASK = "demo_count"
"""The background task the demo (and the live page's button) starts."""


class DemoJobEvent(AbstractAnycastEvent, name="demo_job", domain=EventDomain.AGENT):
    """An anycast job for the agents: one agent of group ``agent`` handles each."""

    job: int
    note: str = ""


class DemoNoticeEvent(AbstractBroadcastEvent, name="demo_notice", domain=EventDomain.AGENT):
    """A broadcast every component receives."""

    text: str


class DemoCountArgs(BaseModel):
    """Arguments of the demo background task."""

    steps: int = Field(20, ge=1, le=100_000)
    interval: float = Field(0.1, ge=0.0, le=5.0)


async def _count(reporter: ProgressReporter, args: DemoCountArgs) -> str:
    reporter.update(total=args.steps, message="counting")
    for step in range(args.steps):
        await asyncio.sleep(args.interval)
        reporter.update(1, message=f"step {step + 1} of {args.steps}")
    return f"counted to {args.steps}"


@dataclass
class DemoAgent:
    """One demo agent: its queue, dispatcher, RPC server, and what it handled."""

    name: str
    queue: AbstractMessageQueue
    dispatcher: EventDispatcher
    rpc: AgentRPCServer
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    jobs: list[int] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.handled_total = Counter(
            "backendai_demo_agent_events_handled",
            "Events this demo agent handled",
            ("event_name",),
            registry=self.metrics,
        )
        self.rpc_total = Counter(
            "backendai_demo_agent_rpc_calls",
            "RPC calls this demo agent answered",
            ("method",),
            registry=self.metrics,
        )

    def render_metrics(self) -> bytes:
        """The agent's own Prometheus exposition."""
        return generate_latest(self.metrics)


class DemoRuntime:
    """Everything the demo runs; ``async with DemoRuntime(cli) as rt`` opens it."""

    producer: EventProducer
    """The manager's event producer."""
    bgtask: BackgroundTaskManager
    """The manager's background-task manager."""
    follower: TaskFollower
    """Follows one task's events (SSE endpoint, progress bars)."""
    manager_dispatcher: EventDispatcher
    """The manager's dispatcher (bgtask events to the hub, notices, task ends)."""
    rpc_pool: AgentRPCPool
    """The manager's pooled connections to the agents."""
    rpc_clients: dict[str, AgentClient]
    """Typed agent clients by agent name."""
    discovery: AbstractServiceDiscovery
    """Service discovery (memory, etcd or Redis)."""
    http: HTTPSessionPool
    """The HTTP client the walkthrough calls the manager with."""
    hmac: HMACVerifier
    """Verifies signed requests against the demo keypair."""
    jwt: JWTVerifier
    """Verifies the live page's JWTs."""
    server: WebServer
    """The manager's web server."""

    def __init__(self, cli: CLIContext, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cli = cli
        self.host = host
        self.port = port
        self.redis = cli.redis_target("demo") if cli.has_redis else None
        self.etcd = cli.etcd_endpoints("demo") if cli.has_etcd else None
        on_redis = self.redis is not None
        self.manager_group = "demo-manager" if on_redis else "manager"
        self.agent_group = "demo-agent" if on_redis else "agent"
        access_key, secret_key = generate_keypair()
        self.keypair = Keypair(
            access_key=access_key,
            secret_key=secret_key,
            user_id=uuid.uuid4(),
            role=UserRole.ADMIN,
        )
        self.metrics = CommonMetricRegistry(CollectorRegistry())
        self.bgtask_metrics = BgtaskMetrics(self.metrics.registry, observer=self.metrics.bgtask)
        self.registry = TaskRegistry()
        self.registry.register(DEMO_TASK, DemoCountArgs, _count)
        self.hub = EventHub()
        self.breakers: dict[str, CircuitBreaker] = {}
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self.manager_notices: list[str] = []
        self.agents: list[DemoAgent] = []
        self.registrars: list[ServiceRegistrar] = []
        self.failures: list[tuple[str, DispatchFailure]] = []
        """Handler failures reported by the agents' dispatchers (agent name, failure)."""
        self.poison_cured = False
        """Whether the agents handle ``demo_job`` events noted ``poison`` (they fail before)."""
        self._seq = 0
        self._changed = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._queue_factory: Callable[[QueueConfig], AbstractMessageQueue] | None = None

    # -- descriptions ------------------------------------------------------------------

    @property
    def backends(self) -> str:
        """Which backends are in use, for the demo's first line."""
        queue = f"Redis {self.redis.describe()}" if self.redis is not None else "in-memory"
        sd = (
            "etcd " + ",".join(self.etcd)
            if self.etcd
            else ("Redis" if self.redis is not None else "in-memory")
        )
        return f"events and tasks on {queue}; service discovery on {sd}"

    @property
    def url(self) -> str:
        """The manager's base URL."""
        return self.server.url

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _enter(self, resource: Any) -> Any:
        return await self._stack.enter_async_context(resource)

    async def _open(self) -> None:
        store: AbstractTaskStore
        if self.redis is not None:
            client = await self._enter(ValkeyClient(self.redis))
            self._stack.push_async_callback(self._drop_redis_groups, client)
            self._queue_factory = lambda config: RedisMessageQueue(client, config)
            store = await self._enter(RedisTaskStore(client))
        else:
            broker = MemoryBroker()
            self._queue_factory = lambda config: MemoryMessageQueue(broker, config)
            store = await self._enter(MemoryTaskStore())
        manager_queue = await self._enter(self._queue("manager", self.manager_group, 64))
        self.producer = EventProducer(manager_queue, "manager")
        self.bgtask = await self._enter(
            BackgroundTaskManager(
                store,
                node_id=f"demo-manager-{uuid.uuid4().hex[:6]}",
                registry=self.registry,
                producer=self.producer,
                config=BackgroundTaskConfig(
                    progress_interval=0.05, cancel_grace=2.0, retention=600.0
                ),
                metrics=self.bgtask_metrics,
            )
        )
        self._stack.push_async_callback(self.hub.aclose)
        self.follower = TaskFollower(store, self.hub, poll_interval=0.5)
        dispatcher = EventDispatcher(manager_queue, observers=[self.metrics.event])
        subscribe_bgtask_events(dispatcher, self.hub)
        dispatcher.subscribe(DemoNoticeEvent, "manager", self._on_notice, name="demo.notice")
        for final in (
            BgtaskDoneEvent,
            BgtaskFailedEvent,
            BgtaskCancelledEvent,
            BgtaskPartialSuccessEvent,
        ):
            dispatcher.subscribe(final, "manager", self._on_task_end, name="demo.task-end")
        self.manager_dispatcher = await self._enter(dispatcher)
        for index in (1, 2):
            self.agents.append(await self._open_agent(f"agent-{index}"))
        self.rpc_pool = await self._enter(AgentRPCPool(call_timeout=5.0, connect_timeout=2.0))
        self.rpc_clients = {
            agent.name: AgentClient(self.rpc_pool.peer(agent.rpc.address), timeout=5.0)
            for agent in self.agents
        }
        self.discovery = await self._enter(await self._open_discovery())
        self.http = await self._enter(HTTPSessionPool(timeout=10.0))
        keypairs = MemoryKeypairStore([self.keypair])
        self.hmac = HMACVerifier(keypairs)
        self.jwt = JWTVerifier(keypairs)
        from .demo_service import build_app  # the web layer of the demo

        self.server = await self._enter(
            WebServer(build_app(self), host=self.host, port=self.port, shutdown_timeout=2.0)
        )

    def _queue(self, source: str, group: str | None, in_flight: int) -> AbstractMessageQueue:
        assert self._queue_factory is not None
        config = QueueConfig(
            source=source,
            group=group,
            consumer_id=source if group else None,
            block_seconds=0.1 if self.redis is None else 0.2,
            batch_size=1 if group == self.agent_group else 16,
            max_in_flight=in_flight,
            retry_delay=0.05,
            reclaim_interval=0.5,
            max_deliveries=3,
        )
        return self._queue_factory(config)

    async def _open_agent(self, name: str) -> DemoAgent:
        queue = await self._enter(self._queue(name, self.agent_group, 4))
        rpc = AgentRPCServer("tcp://127.0.0.1:0")

        def on_failure(failure: DispatchFailure) -> None:
            self.failures.append((name, failure))
            self.record(
                failure.event_name or "?",
                "anycast",
                f"delivery {failure.delivery_count}",
                f"{name} (failed)",
                {"error": str(failure.exception)},
            )

        dispatcher = EventDispatcher(queue, max_concurrency=1, on_failure=on_failure)
        agent = DemoAgent(name, queue, dispatcher, rpc)

        async def on_job(context: DemoAgent, source: str, event: DemoJobEvent) -> None:
            if event.note == "poison" and not self.poison_cured:
                raise RuntimeError(f"{context.name} cannot digest job {event.job}")
            await asyncio.sleep(0.02)  # some work, so that the other consumer gets a turn
            context.jobs.append(event.job)
            context.handled_total.labels(event.event_name).inc()
            self.record(event.event_name, "anycast", source, context.name, event.model_dump())

        async def on_notice(context: DemoAgent, source: str, event: DemoNoticeEvent) -> None:
            context.notices.append(event.text)
            context.handled_total.labels(event.event_name).inc()
            self.record(event.event_name, "broadcast", source, context.name, event.model_dump())

        agent.dispatcher.consume(DemoJobEvent, agent, on_job, name="demo.job")
        agent.dispatcher.subscribe(DemoNoticeEvent, agent, on_notice, name="demo.notice")

        async def ping(msg: str = "ping") -> str:
            agent.rpc_total.labels("ping").inc()
            return f"{name} got {msg!r}"

        async def health() -> dict[str, Any]:
            agent.rpc_total.labels("health").inc()
            return {
                "agent": name,
                "jobs_handled": len(agent.jobs),
                "uptime": round(time.monotonic() - agent.started, 3),
            }

        rpc.register("ping", ping)
        rpc.register("health", health)
        await self._enter(agent.dispatcher)
        await self._enter(rpc)
        return agent

    async def _open_discovery(self) -> AbstractServiceDiscovery:
        if self.etcd:
            etcd = await self._enter(
                EtcdClient(
                    self.etcd,
                    self.cli.settings.namespace,
                    request_timeout=3.0,
                    failover_timeout=5.0,
                )
            )
            return EtcdServiceDiscovery(etcd, ttl=10)
        if self.redis is not None:
            return RedisServiceDiscovery(self.redis, ttl=10.0)
        return MemoryServiceDiscovery(MemoryServiceRegistry(), ttl=10.0)

    async def _drop_redis_groups(self, client: ValkeyClient) -> None:
        """Remove the demo's consumer groups (and replay streams) from a real Redis."""
        commands: list[list[Any]] = []
        for group in (self.manager_group, self.agent_group):
            commands.append(["XGROUP", "DESTROY", "events", group])
            commands.append(["DEL", REPLAY_STREAM_PREFIX + group])
        await client.pipeline(commands, operation="demo-cleanup", raise_on_error=False)

    # -- services ----------------------------------------------------------------------

    def service_records(self) -> list[ServiceMetadata]:
        """The records of the manager and the agents (agents' metrics via the manager)."""
        address = f"{self.host}:{self.server.port}"
        records = [
            ServiceMetadata(
                display_name="manager",
                service_group="manager",
                version="demo",
                endpoint=ServiceEndpoint(
                    address=self.host,
                    port=self.server.port,
                    protocol="http",
                    prometheus_address=address,
                ),
                labels={"demo": "true"},
            )
        ]
        for agent in self.agents:
            rpc_port = int(agent.rpc.address.rpartition(":")[2])
            records.append(
                ServiceMetadata(
                    display_name=agent.name,
                    service_group="agent",
                    version="demo",
                    endpoint=ServiceEndpoint(
                        address=self.host,
                        port=rpc_port,
                        protocol="zmq",
                        prometheus_address=address,
                    ),
                    labels={"demo": "true", "__metrics_path__": f"/metrics/agents/{agent.name}"},
                )
            )
        return records

    async def register_services(self) -> list[ServiceMetadata]:
        """Register (and keep heartbeating) the manager and the agents; idempotent."""
        if not self.registrars:
            for record in self.service_records():
                registrar = ServiceRegistrar(
                    self.discovery,
                    record,
                    heartbeat_interval=3.0,
                    producer=self.producer,
                    publish_heartbeats=False,
                )
                self.registrars.append(await self._enter(registrar))
        return [r.record for r in self.registrars]

    # -- events log --------------------------------------------------------------------

    def record(
        self, name: str, delivery: str, source: str, handled_by: str, payload: dict[str, Any]
    ) -> None:
        """Add one handled event to the log the live page shows."""
        self._seq += 1
        self.recent.append(
            {
                "seq": self._seq,
                "time": time.time(),
                "name": name,
                "delivery": delivery,
                "source": source,
                "handled_by": handled_by,
                "payload": payload,
            }
        )
        self._changed.set()

    async def _on_notice(self, context: str, source: str, event: DemoNoticeEvent) -> None:
        self.manager_notices.append(event.text)
        self.record(event.event_name, "broadcast", source, context, event.model_dump())

    async def _on_task_end(self, context: str, source: str, event: Any) -> None:
        self.record(event.event_name, "broadcast", source, context, event.model_dump(mode="json"))

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds (re-checked on each handled event); False on timeout."""
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await self._changed.wait()
        except TimeoutError:
            return False
        return True

    # -- breakers ----------------------------------------------------------------------

    def breaker_states(self) -> list[dict[str, Any]]:
        """Every breaker the demo knows: the agent RPC breakers and the demo's own."""
        found: dict[str, CircuitBreaker] = dict(self.breakers)
        for agent in self.agents:
            policy = self.rpc_pool.policy(agent.rpc.address)
            for member in getattr(policy, "policies", ()):
                if isinstance(member, CircuitBreaker):
                    found[f"{agent.name} rpc"] = member
        rows = []
        for name, breaker in sorted(found.items()):
            stats = breaker.statistics()
            rows.append(
                {
                    "name": name,
                    "state": str(stats.state),
                    "calls": stats.calls,
                    "failures": stats.failures,
                    "rejected": stats.rejected,
                }
            )
        return rows
