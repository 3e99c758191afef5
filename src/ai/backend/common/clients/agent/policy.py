"""The default resilience policy of an agent: retry unreachable connects, then a breaker.

Retry (outermost) re-runs only :class:`~.exceptions.AgentUnreachable` failures that never sent
the request (refused, handshake timeout); never a lost connection, a timeout, a remote error or
an open breaker. The circuit breaker counts unreachable agents, lost connections, timeouts and
protocol errors; a remote handler error says the agent is alive and is not counted.
"""

from __future__ import annotations

from ...resilience import (
    SYSTEM_CLOCK,
    Backoff,
    BackoffKind,
    CallNotPermitted,
    CircuitBreaker,
    Clock,
    Observer,
    Pipeline,
    Retry,
)
from .exceptions import (
    AgentCallTimeout,
    AgentCircuitOpen,
    AgentConnectionLost,
    AgentProtocolError,
    AgentUnreachable,
)

__all__ = ("agent_policy",)


def agent_policy(
    address: str,
    *,
    max_attempts: int = 3,
    retry_initial_delay: float = 0.05,
    retry_max_delay: float = 1.0,
    failure_rate_threshold: float = 0.5,
    window_size: int = 20,
    minimum_calls: int = 5,
    wait_in_open: float = 10.0,
    clock: Clock = SYSTEM_CLOCK,
    observers: tuple[Observer, ...] = (),
) -> Pipeline:
    """Build the retry + circuit breaker pipeline guarding calls to the agent at ``address``."""
    name = f"agent:{address}"
    return Pipeline(
        [
            Retry(
                name=name,
                max_attempts=max_attempts,
                backoff=Backoff(
                    kind=BackoffKind.FULL_JITTER,
                    initial=retry_initial_delay,
                    max_delay=retry_max_delay,
                ),
                retry_on=(AgentUnreachable,),
                never_retry_on=(AgentConnectionLost, AgentCircuitOpen, CallNotPermitted),
                clock=clock,
            ),
            CircuitBreaker(
                name=name,
                failure_rate_threshold=failure_rate_threshold,
                window_size=window_size,
                minimum_calls=minimum_calls,
                wait_in_open=wait_in_open,
                record_on=(AgentUnreachable, AgentCallTimeout, AgentProtocolError),
                clock=clock,
            ),
        ],
        dependency=name,
        observers=observers,
    )
