"""The fleet's sealing: a key derived once from the fleet secret, AES-256-GCM envelopes.

Only holders of the fleet secret can read or write peer messages. The key is derived with
PBKDF2-HMAC-SHA256 (slow on purpose: a captured frame must not make the secret cheap to
guess) with a salt that names the namespace, so two fleets sharing a token stay apart.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ITERATIONS = 600_000  # OWASP 2023 floor for PBKDF2-HMAC-SHA256
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce, random per message
TAG_BYTES = 16


class SealError(Exception):
    """A message that did not authenticate under the fleet key."""


def salt_for(namespace: str) -> bytes:
    return b"p2pcache/v1/" + namespace.encode("utf-8")


def derive_key(secret: str, namespace: str, iterations: int = PBKDF2_ITERATIONS) -> bytes:
    if not secret:
        raise ValueError("the fleet secret is empty")
    kdf = PBKDF2HMAC(algorithm=SHA256(), length=KEY_BYTES, salt=salt_for(namespace),
                     iterations=iterations)
    return kdf.derive(secret.encode("utf-8"))


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible name for a key, safe to log (it is a hash of a hash)."""
    return hashlib.sha256(b"p2pcache/fingerprint/" + key).hexdigest()[:12]


class Sealer:
    """AES-256-GCM with a random nonce: seal(ad, plaintext) -> nonce || ciphertext || tag."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256 needs a 32-byte key")
        self._aead = AESGCM(key)
        self.fingerprint = key_fingerprint(key)

    def seal(self, associated_data: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, associated_data: bytes, sealed: bytes) -> bytes:
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise SealError("sealed payload too short")
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise SealError("authentication failed (wrong fleet secret or tampered)") from None
