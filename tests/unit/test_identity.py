"""Unit tests for p2pcache.identity: the persistent node key."""

from __future__ import annotations

import os
import stat

import pytest
from libp2p.crypto.serialization import deserialize_private_key

from p2pcache.identity import KEY_FILE, IdentityError, key_path, load_or_create, peer_id


def test_key_created_with_mode_0600(tmp_path):
    old = os.umask(0o022)
    try:
        pair = load_or_create(tmp_path)
    finally:
        os.umask(old)
    path = tmp_path / KEY_FILE
    assert key_path(tmp_path) == path
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the libp2p protobuf encoding of an Ed25519 private key
    raw = path.read_bytes()
    assert raw == pair.private_key.serialize()
    assert deserialize_private_key(raw).get_public_key().serialize() == \
        pair.public_key.serialize()
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]


def test_mode_0600_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_same_peer_id_on_reload(tmp_path):
    first = peer_id(load_or_create(tmp_path))
    second = peer_id(load_or_create(tmp_path))
    assert first == second
    assert str(first).startswith("12D3KooW")  # Ed25519 identity multihash


def test_different_dirs_different_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert peer_id(load_or_create(tmp_path / "a")) != peer_id(load_or_create(tmp_path / "b"))


def test_existing_key_is_not_rewritten(tmp_path):
    load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    before = (path.read_bytes(), path.stat().st_ino)
    load_or_create(tmp_path)
    assert (path.read_bytes(), path.stat().st_ino) == before


@pytest.mark.parametrize("garbage", [b"", b"not a key at all\n", b"\x08\x01\x12\x05abc",
                                     bytes(range(256))])
def test_garbage_key_file(tmp_path, garbage):
    path = tmp_path / KEY_FILE
    path.write_bytes(garbage)
    with pytest.raises(IdentityError) as info:
        load_or_create(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "not a libp2p private key" in message
    assert "move it away" in message
    assert path.read_bytes() == garbage  # never overwritten


def test_unreadable_key_path(tmp_path):
    (tmp_path / KEY_FILE).mkdir()  # a directory where the key should be
    with pytest.raises(IdentityError, match="cannot read the node key"):
        load_or_create(tmp_path)
