"""Rate limiter: at most ``rate`` calls per ``period`` (a token bucket), waiting or rejecting.

Tokens refill continuously at ``rate / period`` per second up to ``burst``. A call takes a token;
when none is left it waits for its turn if that wait is at most ``max_wait`` seconds (waiters are
served in arrival order: each reserves the next token), else fails with :class:`RateLimited`
carrying ``retry_after``.

Guarantees:
- over any interval of length *t*, at most ``burst + rate * t / period`` calls are admitted
  [tests/resilience/test_ratelimit.py::test_admits_at_most_rate];
- with ``max_wait`` > 0 a call waits for its token instead of failing, in arrival order
  [tests/resilience/test_ratelimit.py::test_waits_in_order];
- a waiter cancelled before its turn gives its reserved token back
  [tests/resilience/test_ratelimit.py::test_cancelled_waiter_returns_token].
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..exception import InvalidArgument
from .abc import Policy, Runner
from .clock import SYSTEM_CLOCK, Clock
from .events import CallRejected, CallSite, Observer, RejectReason
from .exceptions import RateLimited

__all__ = ("RateLimiter", "RateLimiterStatistics")


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """A snapshot of a rate limiter."""

    tokens: float
    """Tokens available now (negative while waiters hold reservations)."""
    burst: float
    rejected: int
    """Calls refused since the limiter was built."""


class _Bucket:
    __slots__ = ("rejected", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.rejected = 0


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RateLimiter(Policy):
    """Admit at most ``rate`` calls per ``period`` seconds, with bursts up to ``burst``."""

    rate: float
    """Calls per period."""
    period: float = 1.0
    """Seconds."""
    burst: float | None = None
    """Bucket capacity (default: ``max(1, rate)``)."""
    max_wait: float = 0.0
    """Seconds a call may wait for a token (0: reject at once)."""
    clock: Clock = SYSTEM_CLOCK
    name: str = ""
    observers: tuple[Observer, ...] = ()
    _bucket: _Bucket = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.burst is None:
            object.__setattr__(self, "burst", max(1.0, float(self.rate)))
        checks: tuple[tuple[str, float | None, float, bool], ...] = (
            ("rate", self.rate, 0.0, False),
            ("period", self.period, 0.0, False),
            ("burst", self.burst, 1.0, True),
            ("max_wait", self.max_wait, 0.0, True),
        )
        for fname, value, low, inclusive in checks:
            ok = isinstance(value, int | float) and math.isfinite(value)
            ok = ok and value is not None and (value >= low if inclusive else value > low)
            if not ok:
                rule = f">= {low}" if inclusive else f"> {low}"
                raise InvalidArgument(
                    f"{fname}={value!r}: must be a finite number {rule}",
                    data={"field": fname, "value": repr(value)},
                )
        object.__setattr__(self, "observers", tuple(self.observers))
        assert self.burst is not None
        object.__setattr__(self, "_bucket", _Bucket(float(self.burst), self.clock.monotonic()))
        self._init_runner()

    def available(self) -> float:
        """Tokens available now (negative while waiters hold reservations)."""
        self._refill()
        return self._bucket.tokens

    def statistics(self) -> RateLimiterStatistics:
        """Tokens available, capacity and rejections."""
        assert self.burst is not None
        return RateLimiterStatistics(self.available(), self.burst, self._bucket.rejected)

    def _refill(self) -> None:
        b = self._bucket
        now = self.clock.monotonic()
        if now > b.updated:
            assert self.burst is not None
            b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate / self.period)
        b.updated = now

    def _take(self) -> float:
        """Take a token now and return 0.0, or return the wait until one accrues."""
        self._refill()
        b = self._bucket
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) * self.period / self.rate

    async def _acquire(self, site: CallSite) -> None:
        wait = self._take()
        if wait:
            await self._wait(wait, site)

    async def _wait(self, wait: float, site: CallSite) -> None:
        b = self._bucket
        if wait > self.max_wait:
            b.rejected += 1
            dependency, operation = site.names(self.name)
            if site.observers:
                site.emit(
                    CallRejected(
                        dependency=dependency,
                        operation=operation,
                        policy=self.name,
                        reason=RejectReason.RATE_LIMITED,
                    )
                )
            label = f"rate limiter {self.name!r}" if self.name else "rate limiter"
            raise RateLimited(
                f"{label}: {self.rate} calls per {self.period}s exceeded; "
                f"next permit in {wait:.3f}s",
                policy=self.name,
                retry_after=wait,
                data={"rate": self.rate, "period": self.period},
            )
        b.tokens -= 1.0  # reserve the next token, then wait for it to accrue
        try:
            await self.clock.sleep(wait)
        except BaseException:
            b.tokens += 1.0  # give the reservation back
            raise

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt``: take a token (waiting up to ``max_wait``), then call."""
        take = self._take
        wait_for = self._wait

        async def ratelimit_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            wait = take()
            if wait:
                await wait_for(wait, site)
            return await nxt(fn, args, kwargs)

        return ratelimit_runner

    def guard_at(self, site: CallSite) -> _RateGuard:
        """An ``async with`` guard taking one token on enter."""
        return _RateGuard(self, site)


class _RateGuard:
    __slots__ = ("_limiter", "_site")

    def __init__(self, limiter: RateLimiter, site: CallSite) -> None:
        self._limiter = limiter
        self._site = site

    async def __aenter__(self) -> None:
        await self._limiter._acquire(self._site)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
