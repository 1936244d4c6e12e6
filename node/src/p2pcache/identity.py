"""The node's persistent Ed25519 key, so its peer ID (and published multiaddr) survive restarts.

Stored as the libp2p protobuf encoding of the private key (the format go-libp2p and
js-libp2p also use), mode 0600, created atomically on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

KEY_FILE = "identity.key"


class IdentityError(Exception):
    pass


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_or_create(data_dir: Path) -> KeyPair:
    path = key_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise IdentityError(f"cannot read the node key {path}: {exc.strerror}") from None
    try:
        private = deserialize_private_key(raw)
    except Exception as exc:  # protobuf and key decoders raise assorted types
        raise IdentityError(f"the node key {path} is not a libp2p private key ({exc}); "
                            "move it away to create a new identity") from None
    return KeyPair(private, private.get_public_key())


def _create(path: Path) -> KeyPair:
    pair = create_new_key_pair()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pair.private_key.serialize())
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the key exists: of two processes starting at once, one key wins
        # and both use it, and nobody ever reads half a key.
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return pair


def peer_id(pair: KeyPair) -> ID:
    return ID.from_pubkey(pair.public_key)


def derived_key(pair: KeyPair, purpose: str) -> bytes:
    """A 32-byte key of this node's own for `purpose`, stable across restarts, that no one
    without the node key can compute (e.g. the keyed hash that names callers, access.py)."""
    import hashlib

    return hashlib.sha256(b"p2pcache/" + purpose.encode() + b"\0"
                          + pair.private_key.serialize()).digest()
