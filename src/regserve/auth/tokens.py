"""Token values, ids and hashes.

A token is 32 random bytes (256 bits) from ``secrets``. Only its SHA-256 is stored: a fast,
unsalted hash is enough because a 256-bit random value cannot be guessed or brute-forced from
its hash (salts and slow hashes protect low-entropy passwords, which tokens are not), and a
deterministic hash lets the gateway find a token by an indexed lookup instead of scanning.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "new_token", "new_token_id"]

TOKEN_PREFIX = "rsp_"
"""Marks regserve tokens so that secret scanners and people recognise them."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return secrets.token_hex(16)


def hash_token(value: str) -> str:
    """The hex SHA-256 of a token value: what is stored and looked up."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
