"""Dial-back decisions: the rate limits and the address dialled (dialback.py)."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pcache.dialback import GLOBAL_BURST, GLOBAL_INTERVAL, PER_PEER_INTERVAL, Limiter, target


def new_id() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


ASKER, OTHER = new_id(), new_id()


def test_one_dialback_per_peer_per_interval():
    limiter = Limiter()
    assert limiter.admit("a", 100.0) == 0
    assert limiter.admit("a", 101.0) == pytest.approx(PER_PEER_INTERVAL - 1)
    assert limiter.admit("b", 101.0) == 0  # another peer is not held up by the first
    assert limiter.admit("a", 100.0 + PER_PEER_INTERVAL) == 0


def test_all_peers_together_get_a_burst_then_one_per_interval():
    limiter = Limiter()
    for i in range(GLOBAL_BURST):
        assert limiter.admit(f"peer{i}", 0.0) == 0
    wait = limiter.admit("one-more", 0.0)
    assert wait == pytest.approx(GLOBAL_INTERVAL)
    assert limiter.admit("one-more", GLOBAL_INTERVAL / 2) > 0
    assert limiter.admit("one-more", GLOBAL_INTERVAL) == 0
    assert limiter.admit("yet-another", GLOBAL_INTERVAL) > 0
    # A minute of fresh peer IDs every second: no more than the burst plus one per interval.
    admitted = sum(limiter.admit(f"fresh{t}", float(t)) == 0 for t in range(11, 71))
    assert admitted <= 60 / GLOBAL_INTERVAL + 1


def test_the_peer_table_stays_small():
    limiter = Limiter(burst=10_000, interval=0.001)
    for t in range(5000):
        limiter.admit(f"p{t}", float(t))
    assert len(limiter._last) <= PER_PEER_INTERVAL + 1


def test_the_askers_ip_is_dialled_with_the_port_it_names():
    where = target(("198.51.100.7", 40000), f"/ip4/203.0.113.9/tcp/9100/p2p/{ASKER}", ASKER)
    assert str(where) == f"/ip4/198.51.100.7/tcp/9100/p2p/{ASKER}"
    named = target(("2001:db8::7", 1), f"/dns4/evil.example/tcp/4001/p2p/{ASKER}", ASKER)
    assert str(named) == f"/ip6/2001:db8::7/tcp/4001/p2p/{ASKER}"
    mapped = target(("::ffff:198.51.100.7", 1), f"/ip4/1.2.3.4/tcp/9100/p2p/{ASKER}", ASKER)
    assert str(mapped).startswith("/ip4/198.51.100.7/tcp/9100/")


@pytest.mark.parametrize("requested, observed, reason", [
    (f"/ip4/1.2.3.4/tcp/9100/p2p/{OTHER}", ("1.2.3.4", 1), "itself"),
    (f"/ip4/1.2.3.4/p2p/{ASKER}", ("1.2.3.4", 1), "not a dialable multiaddr"),
    ("/ip4/1.2.3.4/tcp/9100", ("1.2.3.4", 1), "not a dialable multiaddr"),
    ("garbage", ("1.2.3.4", 1), "not a dialable multiaddr"),
    (f"/ip4/1.2.3.4/tcp/0/p2p/{ASKER}", ("1.2.3.4", 1), "out of range"),
    (f"/ip4/1.2.3.4/tcp/9100/p2p/{ASKER}", None, "no IP address"),
])
def test_requests_that_cannot_be_honoured(requested, observed, reason):
    with pytest.raises(ValueError, match=reason):
        target(observed, requested, ASKER)
