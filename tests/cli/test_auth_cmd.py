"""``auth sign`` against the upstream hmac vectors; ``auth jwt`` round trip."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from ai.backend.common.cli.main import cli

from .._vectors import load_vectors
from ._cli import json_lines, run_cli

KEYS = (
    "--access-key", "AKIAIOSFODNN7EXAMPLE",
    "--secret-key", "wJalrXUtnFEMI/K7MDENGbPxRfiCYEXAMPLEKEY0",
)  # fmt: skip


def _sign_args(vector: dict[str, Any]) -> list[str]:
    return [
        "auth", "sign",
        "--method", vector["method"],
        "--url", vector["endpoint"] + vector["rel_url"],
        "--access-key", vector["access_key"],
        "--secret-key", vector["secret_key"],
        "--date", vector["date"],
        "--content-type", vector["content_type"],
        "--api-version", vector["version"],
        "--hash-type", vector["hash_type"],
    ]  # fmt: skip


def test_sign_matches_every_vector() -> None:
    vectors = load_vectors()["hmac"]
    assert vectors
    runner = CliRunner()
    for vector in vectors:
        result = runner.invoke(cli, ["--json", *_sign_args(vector)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (headers,) = json_lines(result.stdout)
        assert headers["Authorization"] == vector["authorization"], vector
        assert headers["Date"] == vector["date"]
        assert headers["X-BackendAI-Date"] == vector["date"]
        assert headers["X-BackendAI-Version"] == vector["version"]
        assert headers["Content-Type"] == vector["content_type"]


def test_sign_subprocess_matches_a_vector() -> None:
    vector = next(v for v in load_vectors()["hmac"] if "%" in v["rel_url"] or "?" in v["rel_url"])
    proc = run_cli(*_sign_args(vector))
    assert proc.returncode == 0, proc.stderr
    assert f"Authorization: {vector['authorization']}" in proc.stdout.splitlines()
    assert f"Date: {vector['date']}" in proc.stdout.splitlines()


def test_sign_needs_keys_and_a_good_date() -> None:
    proc = run_cli("auth", "sign", "--method", "GET", "--url", "http://h/", "--access-key", "AK")
    assert proc.returncode == 1
    assert "--secret-key is required" in proc.stderr
    bad = run_cli("auth", "sign", "--method", "GET", "--url", "http://h/", *KEYS, "--date", "x")
    assert bad.returncode == 1
    assert "--date 'x'" in bad.stderr
    relative = run_cli("auth", "sign", "--method", "GET", "--url", "/folders", *KEYS)
    assert relative.returncode == 1
    assert "not an absolute URL" in relative.stderr


def test_jwt_round_trip() -> None:
    encoded = run_cli("auth", "jwt", "encode", *KEYS, "--role", "admin", "--lifetime", "60")
    assert encoded.returncode == 0, encoded.stderr
    token = encoded.stdout.strip()
    decoded = run_cli("--json", "auth", "jwt", "decode", token, "--secret-key", KEYS[3])
    assert decoded.returncode == 0, decoded.stderr
    (shown,) = json_lines(decoded.stdout)
    assert shown["verified"] is True
    assert shown["header"]["alg"] == "HS256"
    claims = shown["claims"]
    assert claims["access_key"] == KEYS[1]
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 60
    unverified = run_cli("auth", "jwt", "decode", token)
    assert unverified.returncode == 0
    assert "NOT verified" in unverified.stdout
    other = "another-secret-of-forty-characters-000000"
    wrong = run_cli("auth", "jwt", "decode", token, "--secret-key", other)
    assert wrong.returncode == 1
    assert "does not verify" in wrong.stderr
    assert wrong.stderr.count("\n") == 1


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
def test_jwt_decode_garbage_is_one_line(token: str) -> None:
    proc = run_cli("auth", "jwt", "decode", token)
    assert proc.returncode == 1
    assert "JWT cannot be decoded" in proc.stderr
    assert "Traceback" not in proc.stderr
