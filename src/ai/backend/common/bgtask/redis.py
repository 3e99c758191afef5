"""Redis backend of the task store, on :class:`~ai.backend.common.clients.valkey.ValkeyClient`.

Keys (prefix ``bgtask`` by default, so ``SCAN MATCH bgtask*`` finds everything of ours):

- ``bgtask:t:<id>``: one hash per task (``state``, ``owner``, ``token``, ``lease`` ...; nullable
  values are JSON). Once final it gets a TTL of retention + ``expiry_slack``;
- ``bgtask:leases``: zset of unfinished task ids by lease deadline (adoption scans it);
- ``bgtask:done``: zset of final tasks by purge deadline; each member names the task's owner
  and tags, so the purge can remove its index entries even after the hash expired;
- ``bgtask:o:<node>`` / ``bgtask:g:<tag>``: index sets by owner and by tag;
- channel ``bgtask:cancel``: cancel notifications (ids).

Every operation is one Lua script (one library, dispatched by name) run with the server's own
clock (``TIME``), so lease expiry never depends on the nodes' clocks agreeing, and a fenced
write compares owner and token and applies its change atomically. The purge also deletes the
task's cached event (``bgtask.<id>``, upstream's cache key) when the events share this Redis
database.

Guarantees: the conformance suite [tests/bgtask/test_store_conformance.py]; after the retention
no ``bgtask*`` key is left, indexes included
[tests/bgtask/test_redis.py::test_no_key_left_after_retention]; ``finish()`` returns the final
record also when retention and ``expiry_slack`` are both 0 (the hash expires at once)
[tests/bgtask/test_redis.py::test_zero_retention_without_slack_returns_the_record].

Limits: standalone and Sentinel targets only (a script touches several keys)
[tests/bgtask/test_redis.py::test_cluster_target_is_refused]; index entries of expired tasks are
removed by a purge (every manager runs one), so with no manager running they stay until one does
[tests/bgtask/test_redis.py::test_no_key_left_after_retention].
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Collection, Iterator, Mapping, Sequence
from typing import Any

from ..clients.valkey import (
    ValkeyClient,
    ValkeyError,
    ValkeyMode,
    ValkeyResponseError,
    ValkeyTarget,
)
from ..exception import InvalidArgument
from ..json import dump_json_str, load_json
from .abc import AbstractTaskStore
from .exceptions import (
    BgtaskError,
    StaleFencingToken,
    TaskAlreadyExists,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskStoreUnavailable,
)
from .types import ExpiredLease, Lease, LeaseStatus, TaskId, TaskOutcome, TaskRecord, TaskState

__all__ = ("DEFAULT_PREFIX", "RedisTaskStore")

DEFAULT_PREFIX = "bgtask"
"""Prefix of every key of the store."""

_LUA = r"""
local P = ARGV[1]
local op = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local LEASES = P .. ':leases'
local DONE = P .. ':done'
local function fmt(x) return string.format('%.0f', x) end
local function tkey(id) return P .. ':t:' .. id end
local function okey(o) return P .. ':o:' .. o end
local function gkey(g) return P .. ':g:' .. g end
local function live(state) return state == 'pending' or state == 'running' end
local function record(key)
  local r = redis.call('HGETALL', key)
  table.insert(r, 1, 'ok')
  return r
end
local function check(key, owner, token)
  local cur = redis.call('HMGET', key, 'state', 'owner', 'token')
  if not cur[1] then return {'notfound'} end
  if cur[2] ~= owner or cur[3] ~= token then return {'fenced', cur[2], cur[3]} end
  if not live(cur[1]) then return {'finished', cur[1]} end
  return nil
end

if op == 'create' then
  local id, owner, lease, retention = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
  local key = tkey(id)
  if redis.call('EXISTS', key) == 1 then return {'exists'} end
  redis.call('HSET', key, 'id', id, 'name', ARGV[7], 'state', 'pending', 'owner', owner,
    'token', '1', 'args', ARGV[8], 'tags', ARGV[9], 'resumable', ARGV[10],
    'created_at', fmt(now), 'updated_at', fmt(now), 'started_at', '', 'finished_at', '',
    'lease', fmt(now + lease), 'current', '0', 'total', '0', 'message', 'null',
    'result', 'null', 'errors', '[]', 'error_code', 'null', 'cancel', '0', 'runs', '0',
    'previous_owner', 'null', 'checkpoint', 'null', 'retention', retention, 'expires', '')
  redis.call('ZADD', LEASES, now + lease, id)
  redis.call('SADD', okey(owner), id)
  for i = 11, #ARGV do redis.call('SADD', gkey(ARGV[i]), id) end
  return record(key)

elseif op == 'mark_running' then
  local id, owner, token, lease = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  local key = tkey(id)
  local bad = check(key, owner, token)
  if bad then return bad end
  if redis.call('HGET', key, 'started_at') == '' then
    redis.call('HSET', key, 'started_at', fmt(now))
  end
  redis.call('HINCRBY', key, 'runs', 1)
  redis.call('HSET', key, 'state', 'running', 'lease', fmt(now + lease), 'updated_at', fmt(now))
  redis.call('ZADD', LEASES, now + lease, id)
  return record(key)

elseif op == 'progress' then
  local id, owner, token = ARGV[3], ARGV[4], ARGV[5]
  local key = tkey(id)
  local bad = check(key, owner, token)
  if bad then return bad end
  redis.call('HSET', key, 'current', ARGV[6], 'total', ARGV[7], 'message', ARGV[8],
    'updated_at', fmt(now))
  if ARGV[9] == '1' then redis.call('HSET', key, 'checkpoint', ARGV[10]) end
  return {'ok'}

elseif op == 'finish' then
  local id, owner, token = ARGV[3], ARGV[4], ARGV[5]
  local key = tkey(id)
  local bad = check(key, owner, token)
  if bad then return bad end
  local retention = tonumber(redis.call('HGET', key, 'retention'))
  local expires = now + retention
  redis.call('HSET', key, 'state', ARGV[6], 'message', ARGV[7], 'result', ARGV[8],
    'errors', ARGV[9], 'error_code', ARGV[10], 'finished_at', fmt(now), 'updated_at', fmt(now),
    'lease', '', 'expires', fmt(expires))
  if ARGV[11] ~= '' then redis.call('HSET', key, 'current', ARGV[11]) end
  if ARGV[12] ~= '' then redis.call('HSET', key, 'total', ARGV[12]) end
  redis.call('ZREM', LEASES, id)
  local member = cjson.encode({id, owner, redis.call('HGET', key, 'tags')})
  redis.call('ZADD', DONE, expires, member)
  -- The reply first: with retention + slack = 0 the PEXPIRE deletes the hash at once.
  local reply = record(key)
  redis.call('PEXPIRE', key, math.ceil((retention + tonumber(ARGV[13])) / 1000))
  return reply

elseif op == 'release' then
  local id, owner, token = ARGV[3], ARGV[4], ARGV[5]
  local key = tkey(id)
  local bad = check(key, owner, token)
  if bad then return bad end
  redis.call('HSET', key, 'state', 'pending', 'token', tostring(tonumber(token) + 1),
    'lease', fmt(now), 'updated_at', fmt(now))
  redis.call('ZADD', LEASES, now, id)
  return {'ok'}

elseif op == 'renew' then
  local owner, lease = ARGV[3], tonumber(ARGV[4])
  local out = {}
  for i = 5, #ARGV, 2 do
    local id = ARGV[i]
    local key = tkey(id)
    local cur = redis.call('HMGET', key, 'state', 'owner', 'token', 'cancel')
    if (not cur[1]) or (not live(cur[1])) or cur[2] ~= owner or cur[3] ~= ARGV[i + 1] then
      table.insert(out, 'lost')
    else
      redis.call('HSET', key, 'lease', fmt(now + lease))
      redis.call('ZADD', LEASES, now + lease, id)
      if cur[4] == '1' then table.insert(out, 'cancel') else table.insert(out, 'ok') end
    end
  end
  return out

elseif op == 'cancel' then
  local id = ARGV[3]
  local key = tkey(id)
  local state = redis.call('HGET', key, 'state')
  if not state then return {'notfound'} end
  if live(state) then
    redis.call('HSET', key, 'cancel', '1', 'updated_at', fmt(now))
    redis.call('PUBLISH', ARGV[4], id)
  end
  return record(key)

elseif op == 'expired' then
  local found = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
    tonumber(ARGV[3]))
  local out = {fmt(now)}
  for i = 1, #found, 2 do
    local name = redis.call('HGET', tkey(found[i]), 'name')
    if name then
      table.insert(out, found[i])
      table.insert(out, name)
      table.insert(out, found[i + 1])
    else
      redis.call('ZREM', LEASES, found[i])
    end
  end
  return out

elseif op == 'adopt' then
  local id, owner, lease = ARGV[3], ARGV[4], tonumber(ARGV[5])
  local key = tkey(id)
  local cur = redis.call('HMGET', key, 'state', 'owner', 'token', 'lease')
  if (not cur[1]) or (not live(cur[1])) then return {'gone'} end
  if tonumber(cur[4]) > now then return {'alive'} end
  redis.call('SREM', okey(cur[2]), id)
  redis.call('SADD', okey(owner), id)
  redis.call('HSET', key, 'owner', owner, 'token', tostring(tonumber(cur[3]) + 1),
    'previous_owner', cjson.encode(cur[2]), 'lease', fmt(now + lease), 'updated_at', fmt(now))
  redis.call('ZADD', LEASES, now + lease, id)
  return record(key)

elseif op == 'purge' then
  local members = redis.call('ZRANGEBYSCORE', DONE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
  for _, m in ipairs(members) do
    local e = cjson.decode(m)
    local id = e[1]
    redis.call('SREM', okey(e[2]), id)
    for _, tag in ipairs(cjson.decode(e[3])) do redis.call('SREM', gkey(tag), id) end
    redis.call('DEL', tkey(id))
    if ARGV[4] ~= '' then redis.call('DEL', ARGV[4] .. id) end
    redis.call('ZREM', DONE, m)
  end
  return #members
end
return redis.error_reply('bgtask: unknown operation ' .. tostring(op))
"""

_STATES = {s.value: s for s in TaskState}
_FETCH_BATCH = 500


class RedisTaskStore(AbstractTaskStore):
    """The task store in Redis/Valkey (see the module docstring for the keys).

    Give it a :class:`ValkeyTarget` (it opens and closes its own client) or an open
    :class:`ValkeyClient` (shared; never closed here). At most ``max_in_flight`` calls run at
    once (keep it below the client's pool size); more wait for a turn.
    """

    def __init__(
        self,
        target: ValkeyTarget | ValkeyClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        event_cache_prefix: str | None = "bgtask.",
        expiry_slack: float = 60.0,
        max_in_flight: int = 64,
    ) -> None:
        owns = isinstance(target, ValkeyTarget)
        mode = target.mode if isinstance(target, ValkeyTarget) else target.target.mode
        if mode is ValkeyMode.CLUSTER:
            raise InvalidArgument(
                "RedisTaskStore needs a single server or a Sentinel target; its scripts touch "
                f"several keys, which a Cluster spreads over slots (got mode {mode.value!r})",
                data={"field": "mode"},
            )
        if not prefix or expiry_slack < 0 or max_in_flight < 1:
            raise InvalidArgument(
                f"RedisTaskStore: prefix must not be empty, expiry_slack >= 0 and "
                f"max_in_flight >= 1 (got {prefix!r}, {expiry_slack}, {max_in_flight})",
                data={"field": "prefix"},
            )
        self._client = ValkeyClient(target) if isinstance(target, ValkeyTarget) else target
        self._owns_client = owns
        self._prefix = prefix
        self._cache_prefix = event_cache_prefix or ""
        self._slack_us = int(expiry_slack * 1_000_000)
        # Calls in flight at once: redis-py's pool refuses (does not queue) calls beyond its
        # size, so bursts (a thousand tasks ending together) wait here instead.
        self._gate = asyncio.Semaphore(max_in_flight)
        self._script: Any = None
        self._closed = False
        self._opened = False

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self._prefix

    @property
    def cancel_channel(self) -> str:
        """The pub/sub channel of cancel notifications."""
        return f"{self._prefix}:cancel"

    async def open(self) -> None:
        """Connect (when the store owns its client) and register the script; idempotent."""
        if self._closed:
            raise TaskStoreUnavailable("RedisTaskStore is closed")
        if self._opened:
            return
        with _mapped("open"):
            if self._owns_client:
                await self._client.open()
            self._script = self._client.raw.register_script(_LUA)
        self._opened = True

    async def aclose(self) -> None:
        """Close the client if the store opened it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with contextlib.suppress(ValkeyError):
                await self._client.aclose()

    async def _run(self, op: str, *args: Any) -> Any:
        if self._closed or self._script is None:
            state = "closed" if self._closed else "not open (use `async with`)"
            raise TaskStoreUnavailable(f"RedisTaskStore is {state}")
        script = self._script
        argv = [self._prefix, op, *args]
        async with self._gate:
            with _mapped(op):
                return await self._client.call(
                    f"bgtask.{op}", lambda redis: script(keys=[], args=argv, client=redis)
                )

    # -- create and read ----------------------------------------------------------------

    async def create(
        self,
        task_id: TaskId,
        name: str,
        *,
        owner: str,
        lease_ttl: float,
        args: Mapping[str, Any] | None = None,
        tags: Collection[str] = (),
        resumable: bool = False,
        retention: float,
    ) -> TaskRecord:
        """Record a new pending task with token 1."""
        self._check_durations("create()", lease_ttl=lease_ttl, retention=retention)
        unique_tags = list(dict.fromkeys(tags))
        reply = await self._run(
            "create",
            str(task_id),
            owner,
            _us(lease_ttl),
            _us(retention),
            name,
            dump_json_str(dict(args or {})),
            dump_json_str(unique_tags),
            "1" if resumable else "0",
            *unique_tags,
        )
        if _status(reply) == "exists":
            raise TaskAlreadyExists(
                f"background task {task_id} already exists", data={"task_id": str(task_id)}
            )
        return _record(reply[1:])

    async def get(self, task_id: TaskId) -> TaskRecord | None:
        """The record, or ``None``."""
        records = await self._fetch([str(task_id)])
        return records[0] if records else None

    async def _fetch(self, ids: Sequence[str]) -> list[TaskRecord]:
        if self._closed or self._script is None:
            raise TaskStoreUnavailable("RedisTaskStore is closed or not open")
        out: list[TaskRecord] = []
        for start in range(0, len(ids), _FETCH_BATCH):
            chunk = ids[start : start + _FETCH_BATCH]
            async with self._gate:
                with _mapped("get"):
                    replies = await self._client.pipeline(
                        [("HGETALL", f"{self._prefix}:t:{i}") for i in chunk],
                        operation="bgtask.get",
                    )
            out.extend(_record(_flatten(r)) for r in replies if r)
        return out

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        tag: str | None = None,
        states: Collection[TaskState] | None = None,
    ) -> list[TaskRecord]:
        """Matching tasks, oldest first."""
        if self._closed or self._script is None:
            raise TaskStoreUnavailable("RedisTaskStore is closed or not open")
        async with self._gate:
            with _mapped("list"):
                if owner is not None and tag is not None:
                    raw = await self._client.execute(
                        "SINTER", f"{self._prefix}:o:{owner}", f"{self._prefix}:g:{tag}"
                    )
                elif owner is not None:
                    raw = await self._client.execute("SMEMBERS", f"{self._prefix}:o:{owner}")
                elif tag is not None:
                    raw = await self._client.execute("SMEMBERS", f"{self._prefix}:g:{tag}")
                else:
                    live, done = await self._client.pipeline(
                        [
                            ("ZRANGE", f"{self._prefix}:leases", 0, -1),
                            ("ZRANGE", f"{self._prefix}:done", 0, -1),
                        ],
                        operation="bgtask.list",
                    )
                    raw = [*live, *(load_json(m)[0] for m in done)]
        ids = sorted({_text(i) for i in raw})
        wanted = None if states is None else set(states)
        records = [r for r in await self._fetch(ids) if wanted is None or r.state in wanted]
        records.sort(key=lambda r: (r.created_at, str(r.task_id)))
        return records

    # -- fenced writes ----------------------------------------------------------------

    def _raise_for(self, reply: Any, lease: Lease, what: str) -> None:
        status = _status(reply)
        if status == "ok":
            return
        if status == "notfound":
            raise TaskNotFound(
                f"background task {lease.task_id} not found ({what} by {lease.owner})",
                data={"task_id": str(lease.task_id)},
            )
        if status == "fenced":
            owner, token = _text(reply[1]), _text(reply[2])
            raise StaleFencingToken(
                f"background task {lease.task_id}: {what} by {lease.owner!r} with fencing token "
                f"{lease.token} rejected: the task is owned by {owner!r} with token {token}",
                data={
                    "task_id": str(lease.task_id),
                    "owner": lease.owner,
                    "token": lease.token,
                    "current_owner": owner,
                    "current_token": int(token),
                },
            )
        if status == "finished":
            state = _text(reply[1])
            raise TaskAlreadyFinished(
                f"background task {lease.task_id}: {what} by {lease.owner!r} rejected: the task "
                f"already ended as {state}",
                data={"task_id": str(lease.task_id), "state": state},
            )
        raise BgtaskError(f"background task {lease.task_id}: unexpected reply {status!r}")

    async def mark_running(self, lease: Lease, *, lease_ttl: float) -> TaskRecord:
        """Pending -> running, one more run, lease renewed."""
        self._check_durations("mark_running()", lease_ttl=lease_ttl)
        reply = await self._run(
            "mark_running", str(lease.task_id), lease.owner, str(lease.token), _us(lease_ttl)
        )
        self._raise_for(reply, lease, "mark_running")
        return _record(reply[1:])

    async def update_progress(
        self,
        lease: Lease,
        *,
        current: float,
        total: float,
        message: str | None = None,
        checkpoint: Any = None,
        save_checkpoint: bool = False,
    ) -> None:
        """Record progress."""
        reply = await self._run(
            "progress",
            str(lease.task_id),
            lease.owner,
            str(lease.token),
            repr(float(current)),
            repr(float(total)),
            dump_json_str(message),
            "1" if save_checkpoint else "0",
            dump_json_str(checkpoint) if save_checkpoint else "",
        )
        self._raise_for(reply, lease, "update_progress")

    async def finish(
        self,
        lease: Lease,
        outcome: TaskOutcome,
        *,
        current: float | None = None,
        total: float | None = None,
    ) -> TaskRecord:
        """End the task; it is purged after its retention."""
        if not outcome.state.is_final:
            raise InvalidArgument(
                f"finish(): state {outcome.state!r} is not final", data={"field": "state"}
            )
        reply = await self._run(
            "finish",
            str(lease.task_id),
            lease.owner,
            str(lease.token),
            outcome.state.value,
            dump_json_str(outcome.message),
            dump_json_str(outcome.result),
            dump_json_str(list(outcome.errors)),
            dump_json_str(outcome.error_code),
            "" if current is None else repr(float(current)),
            "" if total is None else repr(float(total)),
            self._slack_us,
        )
        self._raise_for(reply, lease, "finish")
        return _record(reply[1:])

    async def release(self, lease: Lease) -> None:
        """Back to pending with an expired lease; the released lease's token is retired."""
        reply = await self._run("release", str(lease.task_id), lease.owner, str(lease.token))
        self._raise_for(reply, lease, "release")

    async def renew(
        self, owner: str, leases: Sequence[Lease], *, lease_ttl: float
    ) -> dict[TaskId, LeaseStatus]:
        """Extend the leases still held, in one script call."""
        self._check_durations("renew()", lease_ttl=lease_ttl)
        if not leases:
            return {}
        args: list[Any] = [owner, _us(lease_ttl)]
        for lease in leases:
            args.extend((str(lease.task_id), str(lease.token)))
        reply = await self._run("renew", *args)
        return {
            lease.task_id: _RENEW_STATUS[_text(status)]
            for lease, status in zip(leases, reply, strict=True)
        }

    # -- any node ------------------------------------------------------------------------

    async def request_cancel(self, task_id: TaskId) -> TaskRecord:
        """Flag for cancellation and publish on the cancel channel."""
        reply = await self._run("cancel", str(task_id), self.cancel_channel)
        if _status(reply) == "notfound":
            raise TaskNotFound(
                f"background task {task_id} not found", data={"task_id": str(task_id)}
            )
        return _record(reply[1:])

    async def expired(self, *, limit: int = 100) -> list[ExpiredLease]:
        """Unfinished tasks with a lease in the past (server clock)."""
        reply = await self._run("expired", limit)
        now = int(reply[0]) / 1_000_000
        out = []
        for i in range(1, len(reply), 3):
            deadline = int(float(reply[i + 2])) / 1_000_000
            out.append(
                ExpiredLease(
                    TaskId(uuid.UUID(_text(reply[i]))),
                    _text(reply[i + 1]),
                    deadline,
                    max(0.0, now - deadline),
                )
            )
        return out

    async def adopt(self, task_id: TaskId, owner: str, *, lease_ttl: float) -> TaskRecord | None:
        """Take over an expired lease with the next token."""
        self._check_durations("adopt()", lease_ttl=lease_ttl)
        reply = await self._run("adopt", str(task_id), owner, _us(lease_ttl))
        if _status(reply) != "ok":
            return None
        return _record(reply[1:])

    async def purge(self, *, limit: int = 500) -> int:
        """Drop final tasks past their retention, with their index entries and cached event."""
        return int(await self._run("purge", limit, self._cache_prefix))

    async def cancellations(self) -> AsyncGenerator[TaskId, None]:
        """Ids published on the cancel channel from now on, until the store closes."""
        if self._closed or self._script is None:
            raise TaskStoreUnavailable("RedisTaskStore is closed or not open")
        with _mapped("subscribe"):
            subscription = self._client.subscription(self.cancel_channel)
            await subscription.open()
        try:
            while not self._closed:
                with _mapped("subscribe"):
                    message = await subscription.get(max_wait=0.5)
                if message is None:
                    continue
                try:
                    task_id = TaskId(uuid.UUID(_text(message[1])))
                except ValueError:
                    continue  # not ours
                yield task_id
        finally:
            # Short cleanup that must run even while the iteration is being cancelled.
            with contextlib.suppress(ValkeyError):
                await asyncio.shield(subscription.aclose())


_RENEW_STATUS = {
    "ok": LeaseStatus.RENEWED,
    "cancel": LeaseStatus.CANCEL_REQUESTED,
    "lost": LeaseStatus.LOST,
}


@contextlib.contextmanager
def _mapped(op: str) -> Iterator[None]:
    """Valkey errors -> bgtask errors (chained)."""
    try:
        yield
    except ValkeyResponseError as exc:
        raise BgtaskError(f"task store operation {op!r} was rejected by Redis: {exc}") from exc
    except ValkeyError as exc:
        raise TaskStoreUnavailable(f"task store operation {op!r} failed: {exc}") from exc


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _status(reply: Any) -> str:
    return _text(reply[0]) if reply else ""


def _flatten(reply: Any) -> list[Any]:
    if isinstance(reply, dict):
        flat: list[Any] = []
        for key, value in reply.items():
            flat.extend((key, value))
        return flat
    return list(reply)


def _record(flat: Sequence[Any]) -> TaskRecord:
    d = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}

    def seconds(key: str) -> float | None:
        value = d.get(key, "")
        return None if value == "" else int(float(value)) / 1_000_000

    return TaskRecord(
        task_id=TaskId(uuid.UUID(d["id"])),
        name=d["name"],
        state=_STATES[d["state"]],
        owner=d["owner"],
        token=int(d["token"]),
        args=load_json(d["args"], source="bgtask args"),
        tags=tuple(load_json(d["tags"], source="bgtask tags")),
        resumable=d.get("resumable") == "1",
        created_at=seconds("created_at") or 0.0,
        updated_at=seconds("updated_at") or 0.0,
        started_at=seconds("started_at"),
        finished_at=seconds("finished_at"),
        lease_expires_at=seconds("lease"),
        current=float(d.get("current", "0")),
        total=float(d.get("total", "0")),
        message=load_json(d.get("message", "null")),
        result=load_json(d.get("result", "null")),
        errors=tuple(load_json(d.get("errors", "[]"))),
        error_code=load_json(d.get("error_code", "null")),
        cancel_requested=d.get("cancel") == "1",
        run_count=int(d.get("runs", "0")),
        previous_owner=load_json(d.get("previous_owner", "null")),
        checkpoint=load_json(d.get("checkpoint", "null")),
        retention=int(float(d.get("retention", "0"))) / 1_000_000,
        expires_at=seconds("expires"),
    )
