"""Pydantic configs that build each policy, so TOML/YAML files can tune them.

Durations are seconds (a number) or duration text (``"500ms"``, ``"1.5s"``, ``"2m"``). Every
model forbids unknown keys. :func:`parse_config` turns a validation failure into a
:class:`~ai.backend.common.exception.ConfigurationError` that names each failing field; each
model's ``build()`` returns the policy, taking the things a file cannot hold (exception types,
a shared budget or store, clock, observers) as arguments.

Guarantees:
- a config builds the policy with exactly its values
  [tests/resilience/test_config.py::test_build_each_policy];
- an invalid value fails naming the field, e.g. ``retry.backoff.max_delay``
  [tests/resilience/test_config.py::test_errors_name_the_field];
- ``PipelineConfig.build()`` orders the policies deadline, retry, breaker, rate limit,
  bulkhead, per-attempt timeout [tests/resilience/test_config.py::test_pipeline_order].
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..exception import ConfigurationError, format_validation_errors
from ..utils import parse_duration
from .abc import Policy
from .breaker import CircuitBreaker, WindowKind
from .bulkhead import Bulkhead
from .clock import SYSTEM_CLOCK, Clock
from .events import Observer
from .pipeline import Pipeline
from .ratelimit import RateLimiter
from .retry import Backoff, BackoffKind, Retry, RetryBudget
from .store import BreakerStateStore
from .timeout import Timeout

__all__ = (
    "BackoffConfig",
    "BreakerConfig",
    "BulkheadConfig",
    "PipelineConfig",
    "RateLimiterConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "TimeoutConfig",
    "parse_config",
)

M = TypeVar("M", bound=BaseModel)


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value).total_seconds()
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0, allow_inf_nan=False)]
"""A duration in seconds (>= 0): a number or duration text."""
PositiveSeconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, allow_inf_nan=False)]
"""A duration in seconds (> 0): a number or duration text."""
Rate = Annotated[float, Field(gt=0, le=1)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_config(model: type[M], data: Mapping[str, Any], *, source: str | None = None) -> M:
    """Validate ``data`` as ``model``; failures raise ConfigurationError naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = format_validation_errors(exc.errors(include_url=False))
        where = f" in {source}" if source else ""
        detail = "; ".join(f"{e['loc'] or '<root>'}: {e['msg']}" for e in errors)
        raise ConfigurationError(
            f"invalid {model.__name__}{where}: {detail}",
            data={"errors": errors, **({"source": source} if source else {})},
        ) from exc


class BackoffConfig(_Config):
    """Settings of :class:`Backoff`."""

    kind: BackoffKind = BackoffKind.FULL_JITTER
    initial: Seconds = 0.1
    max_delay: Seconds = 10.0
    multiplier: float = Field(2.0, ge=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _cap_covers_initial(self) -> BackoffConfig:
        if self.max_delay < self.initial:
            raise ValueError(f"max_delay ({self.max_delay}) must be >= initial ({self.initial})")
        return self

    def build(self, *, uniform: Callable[[float, float], float] = random.uniform) -> Backoff:
        """The backoff schedule."""
        return Backoff(
            kind=self.kind,
            initial=self.initial,
            max_delay=self.max_delay,
            multiplier=self.multiplier,
            uniform=uniform,
        )


class RetryBudgetConfig(_Config):
    """Settings of :class:`RetryBudget`."""

    capacity: float = Field(10.0, ge=1, allow_inf_nan=False)
    refill_per_second: float = Field(1.0, ge=0, allow_inf_nan=False)

    def build(self, *, name: str = "", clock: Clock = SYSTEM_CLOCK) -> RetryBudget:
        """A new budget (build it once per dependency and share it)."""
        return RetryBudget(
            capacity=self.capacity,
            refill_per_second=self.refill_per_second,
            name=name,
            clock=clock,
        )


class RetryConfig(_Config):
    """Settings of :class:`Retry`."""

    max_attempts: int = Field(3, ge=1)
    backoff: BackoffConfig = BackoffConfig()
    max_retry_after: Seconds | None = None
    max_elapsed: Seconds | None = None
    budget: RetryBudgetConfig | None = None

    def build(
        self,
        *,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        never_retry_on: tuple[type[BaseException], ...] = (),
        retry_if: Callable[[BaseException], bool] | None = None,
        budget: RetryBudget | None = None,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "",
        observers: Sequence[Observer] = (),
    ) -> Retry:
        """The retry policy; ``budget`` (shared) wins over a budget built from this config."""
        if budget is None and self.budget is not None:
            budget = self.budget.build(name=name, clock=clock)
        return Retry(
            max_attempts=self.max_attempts,
            backoff=self.backoff.build(),
            retry_on=retry_on,
            never_retry_on=never_retry_on,
            retry_if=retry_if,
            max_retry_after=self.max_retry_after,
            max_elapsed=self.max_elapsed,
            budget=budget,
            clock=clock,
            name=name,
            observers=tuple(observers),
        )


class TimeoutConfig(_Config):
    """Settings of :class:`Timeout`."""

    seconds: PositiveSeconds

    def build(
        self, *, clock: Clock = SYSTEM_CLOCK, name: str = "", observers: Sequence[Observer] = ()
    ) -> Timeout:
        """The timeout policy."""
        return Timeout(seconds=self.seconds, clock=clock, name=name, observers=tuple(observers))


class BreakerConfig(_Config):
    """Settings of :class:`CircuitBreaker`."""

    failure_rate_threshold: Rate = 0.5
    slow_call_rate_threshold: Rate = 1.0
    slow_call_duration: PositiveSeconds | None = None
    window: WindowKind = WindowKind.COUNT
    window_size: float = Field(100, gt=0, allow_inf_nan=False)
    window_buckets: int = Field(10, ge=1)
    minimum_calls: int = Field(10, ge=1)
    wait_in_open: Seconds = 30.0
    half_open_calls: int = Field(1, ge=1)
    sync_interval: Seconds = 1.0

    @model_validator(mode="after")
    def _count_window_is_whole(self) -> BreakerConfig:
        if self.window is WindowKind.COUNT and self.window_size != int(self.window_size):
            raise ValueError(f"window_size ({self.window_size}) must be a whole number of calls")
        return self

    def build(
        self,
        name: str,
        *,
        record_on: tuple[type[BaseException], ...] = (Exception,),
        ignore_on: tuple[type[BaseException], ...] = (),
        store: BreakerStateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        observers: Sequence[Observer] = (),
    ) -> CircuitBreaker:
        """The circuit breaker named ``name``."""
        size: float = self.window_size
        if self.window is WindowKind.COUNT:
            size = int(size)
        return CircuitBreaker(
            name=name,
            failure_rate_threshold=self.failure_rate_threshold,
            slow_call_rate_threshold=self.slow_call_rate_threshold,
            slow_call_duration=self.slow_call_duration,
            window=self.window,
            window_size=size,
            window_buckets=self.window_buckets,
            minimum_calls=self.minimum_calls,
            wait_in_open=self.wait_in_open,
            half_open_calls=self.half_open_calls,
            record_on=record_on,
            ignore_on=ignore_on,
            store=store,
            sync_interval=self.sync_interval,
            clock=clock,
            observers=tuple(observers),
        )


class BulkheadConfig(_Config):
    """Settings of :class:`Bulkhead`."""

    max_concurrent: int = Field(ge=1)
    max_queue: int = Field(0, ge=0)
    queue_timeout: Seconds | None = None

    def build(
        self, *, clock: Clock = SYSTEM_CLOCK, name: str = "", observers: Sequence[Observer] = ()
    ) -> Bulkhead:
        """The bulkhead."""
        return Bulkhead(
            max_concurrent=self.max_concurrent,
            max_queue=self.max_queue,
            queue_timeout=self.queue_timeout,
            clock=clock,
            name=name,
            observers=tuple(observers),
        )


class RateLimiterConfig(_Config):
    """Settings of :class:`RateLimiter`."""

    rate: float = Field(gt=0, allow_inf_nan=False)
    period: PositiveSeconds = 1.0
    burst: float | None = Field(None, ge=1, allow_inf_nan=False)
    max_wait: Seconds = 0.0

    def build(
        self, *, clock: Clock = SYSTEM_CLOCK, name: str = "", observers: Sequence[Observer] = ()
    ) -> RateLimiter:
        """The rate limiter."""
        return RateLimiter(
            rate=self.rate,
            period=self.period,
            burst=self.burst,
            max_wait=self.max_wait,
            clock=clock,
            name=name,
            observers=tuple(observers),
        )


class PipelineConfig(_Config):
    """A whole pipeline for one dependency; every section is optional."""

    deadline: PositiveSeconds | None = None
    """Overall time limit of a call, retries included (outermost)."""
    retry: RetryConfig | None = None
    breaker: BreakerConfig | None = None
    rate_limit: RateLimiterConfig | None = None
    bulkhead: BulkheadConfig | None = None
    timeout: PositiveSeconds | None = None
    """Time limit of each attempt (innermost)."""

    def build(
        self,
        dependency: str,
        *,
        operation: str | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        never_retry_on: tuple[type[BaseException], ...] = (),
        budget: RetryBudget | None = None,
        store: BreakerStateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        observers: Sequence[Observer] = (),
    ) -> Pipeline:
        """Deadline, retry, breaker (named ``dependency``), rate limit, bulkhead, timeout."""
        policies: list[Policy] = []
        if self.deadline is not None:
            policies.append(Timeout(seconds=self.deadline, clock=clock, name="deadline"))
        if self.retry is not None:
            policies.append(
                self.retry.build(
                    retry_on=retry_on, never_retry_on=never_retry_on, budget=budget, clock=clock
                )
            )
        if self.breaker is not None:
            policies.append(self.breaker.build(dependency, store=store, clock=clock))
        if self.rate_limit is not None:
            policies.append(self.rate_limit.build(clock=clock))
        if self.bulkhead is not None:
            policies.append(self.bulkhead.build(clock=clock))
        if self.timeout is not None:
            policies.append(Timeout(seconds=self.timeout, clock=clock, name="attempt"))
        return Pipeline(
            policies, dependency=dependency, operation=operation, observers=tuple(observers)
        )
