"""Access and secret key generation."""

from __future__ import annotations

import base64
import re

from ai.backend.common.auth import (
    generate_access_key,
    generate_keypair,
    generate_secret_key,
    is_access_key,
)


def test_access_key_shape_and_uniqueness() -> None:
    keys = {generate_access_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"AKIA[A-Z0-9]{16}", key)
        assert is_access_key(key)
    assert not is_access_key("AKIAabc")
    assert not is_access_key("AKIAT4WN6ISIGQ8JTGEVX")
    assert is_access_key("AKIAT4WN6ISIGQ8JTGEV")  # an upstream vector key


def test_secret_key_shape() -> None:
    secrets = {generate_secret_key() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert len(secret) == 40
        assert len(base64.b64decode(secret, validate=True)) == 30
    ak, sk = generate_keypair()
    assert is_access_key(ak)
    assert len(sk) == 40
