"""ValkeyClient over TLS to a real redis-server with a throwaway CA (made with openssl)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ai.backend.common.clients.valkey import (
    TLSOptions,
    ValkeyClient,
    ValkeyConnectionError,
    ValkeyTarget,
)
from tests._harness.plugin import RedisServerFactory
from tests._harness.ports import free_port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path, name: str) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name} test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt",
             cwd=directory)  # fmt: skip
    return {name: directory / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


async def test_tls_connection_verifies_the_server(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    good, other = tmp_path / "good", tmp_path / "other"
    good.mkdir()
    other.mkdir()
    certs = make_certificates(good, "good")
    foreign = make_certificates(other, "other")
    tls_port = free_port()
    server = redis_server_factory(
        extra_config=[
            f"tls-port {tls_port}",
            f"tls-cert-file {certs['server.crt']}",
            f"tls-key-file {certs['server.key']}",
            f"tls-ca-cert-file {certs['ca.crt']}",
            "tls-auth-clients no",
        ]
    )
    trusted = ValkeyTarget.single(
        server.host, tls_port, tls=TLSOptions(ca_file=str(certs["ca.crt"])), connect_timeout=2
    )
    async with ValkeyClient(trusted) as client:
        await client.execute("SET", "k", "over tls")
        assert await client.execute("GET", "k") == b"over tls"
    untrusted = ValkeyTarget.single(
        server.host, tls_port, tls=TLSOptions(ca_file=str(foreign["ca.crt"])), connect_timeout=2
    )
    client = ValkeyClient(untrusted)
    with pytest.raises(ValkeyConnectionError, match="certificate"):
        await client.open()
    await client.aclose()
    unverified = ValkeyTarget.single(
        server.host, tls_port, tls=TLSOptions(verify=False), connect_timeout=2
    )
    async with ValkeyClient(unverified) as client:
        assert await client.ping()
