"""StorageProxyClient against a real aiohttp server implementing upstream's manager API paths."""

from __future__ import annotations

import pytest

from ai.backend.common.clients.http import (
    AUTH_HEADER,
    HTTPSessionPool,
    StorageProxyAuthFailed,
    StorageProxyClient,
    StorageProxyConflict,
    StorageProxyNotFound,
    StorageProxyServerError,
)

from .conftest import SECRET, FakeStorageProxy


async def test_volumes_folders_quotas_files(
    proxy: tuple[FakeStorageProxy, str], pool: HTTPSessionPool
) -> None:
    fake, endpoint = proxy
    client = StorageProxyClient(pool, endpoint, SECRET)
    assert (await client.get_status()).storage_proxy == "1"
    volumes = await client.get_volumes()
    assert [(v.name, v.backend, v.capabilities) for v in volumes] == [
        ("local", "vfs", ["vfolder", "quota"])
    ]
    assert (await client.get_hwinfo("local"))["volume"] == "local"
    qsid = "user:3f6c0e7a-5d55-4a4e-b5c4-3f1c1b2a1a11"
    await client.create_quota_scope("local", qsid, limit_bytes=1024)
    assert (await client.get_quota_scope("local", qsid)).limit_bytes == 1024
    await client.update_quota_scope("local", qsid, limit_bytes=2048)
    assert (await client.get_quota_scope("local", qsid)).limit_bytes == 2048
    await client.unset_quota("local", qsid)
    assert (await client.get_quota_scope("local", qsid)).limit_bytes is None
    vfid = f"{qsid}/0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    await client.create_folder("local", vfid)
    await client.mkdir("local", vfid, "data")
    entries = await client.list_files("local", vfid)
    assert [(e.name, e.type) for e in entries] == [("data", "DIRECTORY")]
    assert (await client.get_usage("local", vfid)).file_count == 1
    assert await client.create_download_session("local", vfid, "data") == "tok-1"
    await client.delete_folder("local", vfid)
    assert all(h.get(AUTH_HEADER) == SECRET for h in fake.seen_headers[1:])
    assert pool.statistics().sessions == 1


async def test_errors_carry_upstream_code(
    proxy: tuple[FakeStorageProxy, str], pool: HTTPSessionPool
) -> None:
    fake, endpoint = proxy
    client = StorageProxyClient(pool, endpoint, SECRET)
    with pytest.raises(StorageProxyNotFound) as info:
        await client.get_quota_scope("local", "user:none")
    assert isinstance(info.value, LookupError)
    assert info.value.status == 404
    assert info.value.upstream_error_code == "storage-proxy_read_not-found"
    assert "no such quota scope" in str(info.value)
    await client.create_quota_scope("local", "user:a")
    with pytest.raises(StorageProxyConflict) as conflict:
        await client.create_quota_scope("local", "user:a")
    assert conflict.value.upstream_error_code is None
    with pytest.raises(StorageProxyNotFound):  # 410 Gone
        await client.delete_folder("local", "user:a/00")
    with pytest.raises(StorageProxyAuthFailed):
        await StorageProxyClient(pool, endpoint, "wrong").get_volumes()
    fake.fail_next.append(500)
    with pytest.raises(StorageProxyServerError) as server_error:
        await client.get_volumes()
    assert server_error.value.upstream_error_code == "storage_x_y"
    # two credentials, one endpoint: two sessions
    assert pool.statistics().sessions == 2
