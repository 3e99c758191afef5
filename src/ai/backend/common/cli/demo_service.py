"""The demo manager's web service: the API, the live page, metrics, SD and task SSE.

Every route goes through the full middleware stack (request id, access log, metrics, CORS,
errors, auth). Routes under ``/api/`` need a request signed with the demo keypair (HMAC, as the
official client signs) or an ``X-BackendAI-Token`` JWT; the rest are anonymous:

- ``GET /`` the live page (``static/index.html``), ``GET /ui/token`` a JWT for it (for the
  demo's admin keypair, to any caller: which is why ``demo`` binds a loopback address only
  unless given ``--insecure-demo``);
- ``GET /ui/state`` tasks, last events, services, breakers (JSON the page polls);
- ``GET /events/background-task?taskId=<id>`` one task's bgtask events (upstream's SSE stream);
- ``GET /metrics``, ``GET /metrics/agents/<name>``, ``GET /sd/prometheus`` (HTTP SD JSON);
- ``GET /api/whoami``; ``GET|POST /api/tasks``, ``DELETE /api/tasks/<id>``;
  ``POST /api/jobs``, ``POST /api/notices``; ``GET /api/agents/<name>/ping``.

Guarantees:
- the page loads in a real browser and shows a task started through the API reaching 100 %
  [tests/cli/test_live_page.py::test_live_page_shows_task_reaching_100];
- unsigned API calls are 401 problems; signed ones and JWT ones pass
  [tests/cli/test_demo.py::test_demo_json_reports_every_step_ok].
"""

from __future__ import annotations

import time
import uuid
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, Field

from ..auth import issue_token
from ..bgtask import TaskId
from ..bgtask.sse import make_task_events_handler
from ..contexts import current_request_id
from ..exception import ObjectNotFound
from ..middlewares import CORSOptions, install_middleware_stack
from ..service_discovery import make_prometheus_sd_handler
from ..web import (
    anonymous,
    auth_result,
    json_response,
    metrics_handler,
    parse_body,
    parse_match_info,
)
from .bgtask_cmd import record_row
from .demo_runtime import DEMO_TASK, DemoCountArgs, DemoJobEvent, DemoNoticeEvent

if TYPE_CHECKING:
    from .demo_runtime import DemoRuntime

__all__ = ("PAGE", "build_app", "state_of")

PAGE = "static/index.html"
"""The live page, relative to this package (shipped in the wheel)."""


class _TaskPath(BaseModel):
    task_id: uuid.UUID


class _AgentPath(BaseModel):
    name: str


class _JobsBody(BaseModel):
    count: int = Field(3, ge=1, le=100)


class _NoticeBody(BaseModel):
    text: str = Field("hello from the live page", min_length=1, max_length=200)


async def state_of(rt: DemoRuntime) -> dict[str, Any]:
    """What the live page shows: tasks, last events, services, breakers, agents."""
    now = time.time()
    records = await rt.bgtask.list_tasks()
    services = await rt.discovery.discover()
    return {
        "manager": rt.url,
        "backends": rt.backends,
        "tasks": [record_row(r) for r in records[-20:]][::-1],
        "events": list(rt.recent)[::-1],
        "services": [
            {**s.to_dict(), "healthy": s.is_healthy(now=now)}
            for s in sorted(services, key=lambda s: (s.service_group, s.display_name))
        ],
        "breakers": rt.breaker_states(),
        "agents": [
            {"name": a.name, "jobs": len(a.jobs), "notices": len(a.notices), "rpc": a.rpc.address}
            for a in rt.agents
        ],
    }


def build_app(rt: DemoRuntime) -> web.Application:
    """The manager's aiohttp application, wired to the runtime's components."""
    page = resources.files(__package__ or "ai.backend.common.cli").joinpath(PAGE).read_bytes()
    app = web.Application()
    install_middleware_stack(
        app,
        metrics=rt.metrics,
        cors=CORSOptions(allow_origins=("*",)),
        hmac=rt.hmac,
        jwt=rt.jwt,
    )

    @anonymous
    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    @anonymous
    async def token(request: web.Request) -> web.Response:
        return json_response(
            {"token": issue_token(rt.keypair), "access_key": rt.keypair.access_key}
        )

    @anonymous
    async def state(request: web.Request) -> web.Response:
        return json_response(await state_of(rt))

    @anonymous
    async def agent_metrics(request: web.Request) -> web.Response:
        name = parse_match_info(request, _AgentPath).name
        agent = _agent(rt, name)
        return web.Response(body=agent.render_metrics(), content_type="text/plain", charset="utf-8")

    async def whoami(request: web.Request) -> web.Response:
        result = auth_result(request)
        assert result is not None  # the auth middleware ran
        return json_response(
            {
                "access_key": result.access_key,
                "role": result.role.value,
                "method": result.method.value,
                "request_id": current_request_id(),
            }
        )

    async def list_tasks(request: web.Request) -> web.Response:
        return json_response([record_row(r) for r in await rt.bgtask.list_tasks()])

    async def start_task(request: web.Request) -> web.Response:
        args = await parse_body(request, DemoCountArgs)
        task_id = await rt.bgtask.start(DEMO_TASK, args, tags=["demo"])
        return json_response({"task_id": str(task_id)}, status=201)

    async def cancel_task(request: web.Request) -> web.Response:
        task_id = TaskId(parse_match_info(request, _TaskPath).task_id)
        return json_response(record_row(await rt.bgtask.cancel(task_id)))

    async def publish_jobs(request: web.Request) -> web.Response:
        body = await parse_body(request, _JobsBody)
        start = int(time.time() * 1000) % 100_000
        events = [DemoJobEvent(job=start + i, note="from the API") for i in range(body.count)]
        ids = await rt.producer.anycast_events_batch(events)
        return json_response({"ids": ids}, status=201)

    async def publish_notice(request: web.Request) -> web.Response:
        body = await parse_body(request, _NoticeBody)
        await rt.producer.broadcast_event(DemoNoticeEvent(text=body.text))
        return json_response({"text": body.text}, status=201)

    async def ping_agent(request: web.Request) -> web.Response:
        name = parse_match_info(request, _AgentPath).name
        _agent(rt, name)
        reply = await rt.rpc_clients[name].ping(f"ping from {request.path}")
        return json_response({"agent": name, "reply": reply})

    app.router.add_get("/", index)
    app.router.add_get("/ui/token", token)
    app.router.add_get("/ui/state", state)
    app.router.add_get(
        "/events/background-task",
        anonymous(make_task_events_handler(rt.follower, metrics=rt.bgtask_metrics)),
    )
    app.router.add_get("/metrics", metrics_handler(rt.metrics))
    app.router.add_get("/metrics/agents/{name}", agent_metrics)
    app.router.add_get("/sd/prometheus", anonymous(make_prometheus_sd_handler(rt.discovery)))
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/tasks", list_tasks)
    app.router.add_post("/api/tasks", start_task)
    app.router.add_delete("/api/tasks/{task_id}", cancel_task)
    app.router.add_post("/api/jobs", publish_jobs)
    app.router.add_post("/api/notices", publish_notice)
    app.router.add_get("/api/agents/{name}/ping", ping_agent)
    return app


def _agent(rt: DemoRuntime, name: str) -> Any:
    for agent in rt.agents:
        if agent.name == name:
            return agent
    raise ObjectNotFound(f"no demo agent is named {name!r}", data={"name": name})
