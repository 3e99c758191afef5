"""QueueConfig validation and the wire names of the message queue."""

from __future__ import annotations

import pytest

from ai.backend.common.message_queue import (
    ANYCAST_STREAM,
    BROADCAST_CACHE_TTL,
    BROADCAST_CHANNEL,
    QueueConfig,
    QueueConfigError,
)


def test_upstream_wire_names() -> None:
    assert (ANYCAST_STREAM, BROADCAST_CHANNEL, BROADCAST_CACHE_TTL) == ("events", "events_all", 300)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_in_flight", 0),
        ("max_deliveries", 0),
        ("batch_size", -1),
        ("heartbeat_ttl", 0),
        ("retry_delay", -0.1),
        ("wait_replicas", -1),
        ("anycast_trim_max_age", 0),
        ("group", ""),
    ],
)
def test_invalid_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(QueueConfigError, match=f"QueueConfig.{field} .*got {value!r}") as caught:
        QueueConfig(**{field: value})  # type: ignore[arg-type]
    assert caught.value.data == {"field": field}
    assert isinstance(caught.value, ValueError)


def test_defaults_are_valid() -> None:
    config = QueueConfig()
    assert (config.max_deliveries, config.block_seconds) == (5, 1.0)
    QueueConfig(block_seconds=0, retry_delay=0, wait_replicas=0)
