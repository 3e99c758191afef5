"""ValkeyTarget: construction, URL parsing and validation (no server needed)."""

from __future__ import annotations

import pytest

from ai.backend.common.clients.valkey import (
    TLSOptions,
    ValkeyConfigError,
    ValkeyMode,
    ValkeyTarget,
)
from ai.backend.common.types import HostPortPair


def test_single_url_with_credentials_and_db() -> None:
    target = ValkeyTarget.from_url("redis://user:s3cret@10.0.0.5:6380/4")
    assert target.mode is ValkeyMode.SINGLE
    assert (target.host, target.port, target.db) == ("10.0.0.5", 6380, 4)
    assert (target.username, target.password) == ("user", "s3cret")
    assert target.tls is None
    assert "s3cret" not in repr(target)
    assert "s3cret" not in target.describe()


def test_tls_url_and_defaults() -> None:
    target = ValkeyTarget.from_url("rediss://cache.internal")
    assert (target.host, target.port, target.db) == ("cache.internal", 6379, 0)
    assert target.tls == TLSOptions()
    assert target.describe().endswith("(tls)")


def test_sentinel_url() -> None:
    target = ValkeyTarget.from_url(
        "redis+sentinel://:masterpw@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=spw"
    )
    assert target.mode is ValkeyMode.SENTINEL
    assert target.sentinels == (
        HostPortPair("s1", 26379),
        HostPortPair("s2", 26379),
        HostPortPair("::1", 26380),
    )
    assert (target.service_name, target.db) == ("mymaster", 2)
    assert (target.password, target.sentinel_password) == ("masterpw", "spw")


def test_cluster_url_and_builder() -> None:
    target = ValkeyTarget.from_url("redis+cluster://n1:7000,n2:7001")
    assert target.mode is ValkeyMode.CLUSTER
    assert target.nodes == (HostPortPair("n1", 7000), HostPortPair("n2", 7001))
    assert ValkeyTarget.cluster([("n1", 7000)]).nodes == (HostPortPair("n1", 7000),)


def test_cluster_target_rejects_db() -> None:
    with pytest.raises(ValkeyConfigError, match="db"):
        ValkeyTarget.cluster(["n1:7000"], db=3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "unknown scheme"),
        ("redis+sentinel://s1,s2", "service name"),
        ("redis://host/notanumber", "notanumber"),
        ("redis://host:99999", "bad address"),
    ],
)
def test_bad_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValkeyConfigError, match=message):
        ValkeyTarget.from_url(url)


def test_sentinel_target_needs_sentinels_and_service() -> None:
    with pytest.raises(ValkeyConfigError, match="sentinels"):
        ValkeyTarget(mode=ValkeyMode.SENTINEL, service_name="m")
    with pytest.raises(ValkeyConfigError, match="service_name"):
        ValkeyTarget.sentinel(["s1"], "")


def test_with_db_keeps_everything_else() -> None:
    target = ValkeyTarget.sentinel([("s1", 26379)], "mymaster", password="pw", db=0)
    events = target.with_db(4)
    assert events.db == 4
    assert (events.sentinels, events.service_name, events.password) == (
        target.sentinels,
        "mymaster",
        "pw",
    )


def test_invalid_numbers() -> None:
    with pytest.raises(ValkeyConfigError, match="request_timeout"):
        ValkeyTarget.single(request_timeout=0)
    with pytest.raises(ValkeyConfigError, match="retries"):
        ValkeyTarget.single(retries=-1)
    with pytest.raises(ValkeyConfigError, match="db"):
        ValkeyTarget.single(db=-1)
