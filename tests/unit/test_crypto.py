"""Unit tests for p2pcache.crypto: key derivation and AES-256-GCM sealing."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache.crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    PBKDF2_ITERATIONS,
    TAG_BYTES,
    SealError,
    Sealer,
    derive_key,
    key_fingerprint,
    salt_for,
)

FAST = 10  # iterations for tests that do not check the cost itself
KEY = bytes(range(32))
AD = b"p2pcache/gh/1 header"


def test_iterations_meet_owasp_floor():
    assert PBKDF2_ITERATIONS >= 600_000


def test_full_derivation_matches_reference_pbkdf2():
    secret, namespace = "ghp_exampleTOKEN123", "octo/fleet"
    expected = hashlib.pbkdf2_hmac("sha256", secret.encode(), b"p2pcache/v1/octo/fleet",
                                   600_000, 32)
    assert derive_key(secret, namespace) == expected


def test_fast_derivation_matches_reference_pbkdf2():
    expected = hashlib.pbkdf2_hmac("sha256", "sécret".encode("utf-8"),
                                   "p2pcache/v1/ns-ü".encode("utf-8"), FAST, 32)
    assert derive_key("sécret", "ns-ü", iterations=FAST) == expected


def test_salt_names_the_namespace():
    assert salt_for("o/r") == b"p2pcache/v1/o/r"


def test_derive_key_is_deterministic_and_32_bytes():
    a = derive_key("secret", "ns", iterations=FAST)
    b = derive_key("secret", "ns", iterations=FAST)
    assert a == b
    assert len(a) == KEY_BYTES == 32


def test_derive_key_differs_by_namespace_secret_and_iterations():
    base = derive_key("secret", "ns", iterations=FAST)
    assert derive_key("secret", "ns2", iterations=FAST) != base
    assert derive_key("secret2", "ns", iterations=FAST) != base
    assert derive_key("secret", "ns", iterations=FAST + 1) != base


def test_empty_secret_rejected():
    with pytest.raises(ValueError, match="empty"):
        derive_key("", "ns", iterations=FAST)


def test_fingerprint_is_short_stable_and_not_the_key():
    fp = key_fingerprint(KEY)
    assert fp == key_fingerprint(KEY)
    assert len(fp) == 12 and all(c in "0123456789abcdef" for c in fp)
    assert fp not in KEY.hex()
    assert key_fingerprint(bytes(32)) != fp
    assert Sealer(KEY).fingerprint == fp


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_sealer_needs_32_byte_key(size):
    with pytest.raises(ValueError):
        Sealer(bytes(size))


def test_round_trip_and_layout():
    sealer = Sealer(KEY)
    sealed = sealer.seal(AD, b"hello fleet")
    assert len(sealed) == NONCE_BYTES + len(b"hello fleet") + TAG_BYTES
    assert b"hello fleet" not in sealed
    assert sealer.open(AD, sealed) == b"hello fleet"
    # a second Sealer with the same key opens it too
    assert Sealer(bytes(KEY)).open(AD, sealed) == b"hello fleet"


def test_empty_plaintext_round_trip():
    sealer = Sealer(KEY)
    sealed = sealer.seal(b"", b"")
    assert len(sealed) == NONCE_BYTES + TAG_BYTES
    assert sealer.open(b"", sealed) == b""


def test_wrong_key_fails():
    sealed = Sealer(KEY).seal(AD, b"payload")
    other = Sealer(derive_key("other secret", "ns", iterations=FAST))
    with pytest.raises(SealError, match="authentication failed"):
        other.open(AD, sealed)


def test_keys_from_different_namespaces_do_not_interoperate():
    a = Sealer(derive_key("tok", "fleet-a", iterations=FAST))
    b = Sealer(derive_key("tok", "fleet-b", iterations=FAST))
    with pytest.raises(SealError):
        b.open(AD, a.seal(AD, b"x"))


def test_wrong_associated_data_fails():
    sealer = Sealer(KEY)
    sealed = sealer.seal(AD, b"payload")
    for ad in (b"", AD + b"x", AD[:-1], b"P" + AD[1:]):
        with pytest.raises(SealError):
            sealer.open(ad, sealed)


def test_every_bit_flip_fails():
    sealer = Sealer(KEY)
    sealed = sealer.seal(AD, b"sixteen byte msg")
    for i in range(len(sealed)):
        for bit in range(8):
            tampered = bytearray(sealed)
            tampered[i] ^= 1 << bit
            with pytest.raises(SealError):
                sealer.open(AD, bytes(tampered))


def test_truncated_fails():
    sealer = Sealer(KEY)
    sealed = sealer.seal(AD, b"payload")
    for n in range(len(sealed)):
        with pytest.raises(SealError):
            sealer.open(AD, sealed[:n])
    with pytest.raises(SealError, match="too short"):
        sealer.open(AD, sealed[:NONCE_BYTES + TAG_BYTES - 1])


def test_appended_bytes_fail():
    sealer = Sealer(KEY)
    sealed = sealer.seal(AD, b"payload")
    with pytest.raises(SealError):
        sealer.open(AD, sealed + b"\x00")


def test_nonces_differ_between_seals():
    sealer = Sealer(KEY)
    seals = [sealer.seal(AD, b"same plaintext") for _ in range(20)]
    nonces = {s[:NONCE_BYTES] for s in seals}
    assert len(nonces) == 20
    assert len(set(seals)) == 20
    assert all(sealer.open(AD, s) == b"same plaintext" for s in seals)


@settings(deadline=None, max_examples=150)
@given(key=st.binary(min_size=32, max_size=32), ad=st.binary(max_size=300),
       plaintext=st.binary(max_size=2000))
def test_property_round_trip(key, ad, plaintext):
    sealer = Sealer(key)
    assert sealer.open(ad, sealer.seal(ad, plaintext)) == plaintext


@settings(deadline=None, max_examples=150)
@given(plaintext=st.binary(max_size=200), ad=st.binary(max_size=64), data=st.data())
def test_property_single_byte_mutation_fails(plaintext, ad, data):
    sealer = Sealer(KEY)
    sealed = sealer.seal(ad, plaintext)
    index = data.draw(st.integers(0, len(sealed) - 1), label="index")
    delta = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(sealed)
    tampered[index] ^= delta
    with pytest.raises(SealError):
        sealer.open(ad, bytes(tampered))


def test_random_bytes_never_open():
    sealer = Sealer(KEY)
    for _ in range(50):
        with pytest.raises(SealError):
            sealer.open(AD, os.urandom(64))
