"""Unit tests for p2pcache.addresses: ranking and the bootstrap multiaddr."""

from __future__ import annotations

import pytest

from p2pcache.addresses import best_ip, bootstrap_multiaddr, ip_multiaddr, is_public, rank

PID = "12D3KooWGydSUPdqqdm31KafpNojLPqKipTPN16SSugg2QVVaTvo"

GLOBAL_V4 = "8.8.8.8"
GLOBAL_V6 = "2606:4700:4700::1111"
PRIVATE_V4 = "192.168.1.20"
PRIVATE_V6 = "fd12:3456::1"
LINK_LOCAL = "169.254.10.1"
LOOPBACK = "127.0.0.1"


@pytest.mark.parametrize("ip,expected", [
    (GLOBAL_V4, 0), ("1.1.1.1", 0),
    (GLOBAL_V6, 1),
    (PRIVATE_V4, 2), ("10.1.2.3", 2), ("172.16.0.9", 2),
    (PRIVATE_V6, 3),
    (LINK_LOCAL, 8), ("fe80::1", 8),
    (LOOPBACK, 9), ("127.9.9.9", 9), ("::1", 9), ("0.0.0.0", 9), ("::", 9),
])
def test_rank(ip, expected):
    assert rank(ip) == expected


def test_rank_order():
    ips = [LOOPBACK, LINK_LOCAL, PRIVATE_V6, PRIVATE_V4, GLOBAL_V6, GLOBAL_V4]
    assert sorted(ips, key=rank) == list(reversed(ips))


@pytest.mark.parametrize("candidates,expected", [
    ([LOOPBACK, PRIVATE_V4, GLOBAL_V4], GLOBAL_V4),
    ([GLOBAL_V6, GLOBAL_V4], GLOBAL_V4),
    ([GLOBAL_V6, PRIVATE_V4], GLOBAL_V6),
    ([LOOPBACK, PRIVATE_V4], PRIVATE_V4),
    ([LOOPBACK, LINK_LOCAL, PRIVATE_V6], PRIVATE_V6),
    (["::1", LOOPBACK], "::1"),
    ([LOOPBACK], LOOPBACK),
    (["not-an-ip", "", LOOPBACK, "example.com"], LOOPBACK),
    ([], None),
    (["nope"], None),
])
def test_best_ip(candidates, expected):
    assert best_ip(candidates) == expected


def test_is_public():
    assert is_public(GLOBAL_V4) and is_public(GLOBAL_V6)
    assert not is_public(PRIVATE_V4) and not is_public(LOOPBACK)
    assert not is_public("garbage")


def test_ip_multiaddr():
    assert ip_multiaddr("198.51.100.4", 9100, PID) == f"/ip4/198.51.100.4/tcp/9100/p2p/{PID}"
    assert ip_multiaddr("2001:db8::7", 4001, PID) == f"/ip6/2001:db8::7/tcp/4001/p2p/{PID}"


class TestBootstrapMultiaddr:
    def test_announce_ip(self):
        got = bootstrap_multiaddr(PID, 9100, "198.51.100.4", "0.0.0.0", [GLOBAL_V4])
        assert got == f"/ip4/198.51.100.4/tcp/9100/p2p/{PID}"

    def test_announce_ipv6(self):
        got = bootstrap_multiaddr(PID, 9100, "2001:db8::7", "0.0.0.0", [])
        assert got == f"/ip6/2001:db8::7/tcp/9100/p2p/{PID}"

    def test_announce_multiaddr_without_tcp(self):
        got = bootstrap_multiaddr(PID, 9100, "/ip4/198.51.100.4", "0.0.0.0", [GLOBAL_V4])
        assert got == f"/ip4/198.51.100.4/tcp/9100/p2p/{PID}"
        got = bootstrap_multiaddr(PID, 9100, "/dns4/node.example/", "0.0.0.0", [])
        assert got == f"/dns4/node.example/tcp/9100/p2p/{PID}"

    def test_announce_multiaddr_with_tcp_keeps_its_port(self):
        got = bootstrap_multiaddr(PID, 9100, "/ip4/198.51.100.4/tcp/4001", "0.0.0.0", [])
        assert got == f"/ip4/198.51.100.4/tcp/4001/p2p/{PID}"

    def test_announce_multiaddr_with_p2p_gets_our_peer_id(self):
        other = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        got = bootstrap_multiaddr(PID, 9100, f"/ip4/198.51.100.4/tcp/4001/p2p/{other}",
                                  "0.0.0.0", [])
        assert got == f"/ip4/198.51.100.4/tcp/4001/p2p/{PID}"
        got = bootstrap_multiaddr(PID, 9100, f"/ip4/198.51.100.4/p2p/{other}", "0.0.0.0", [])
        assert got == f"/ip4/198.51.100.4/tcp/9100/p2p/{PID}"

    def test_announce_ipv6_multiaddr(self):
        got = bootstrap_multiaddr(PID, 9100, "/ip6/2001:db8::7", "::", [])
        assert got == f"/ip6/2001:db8::7/tcp/9100/p2p/{PID}"

    def test_specific_listen_host_beats_candidates(self):
        got = bootstrap_multiaddr(PID, 9200, None, "10.0.0.5", [GLOBAL_V4])
        assert got == f"/ip4/10.0.0.5/tcp/9200/p2p/{PID}"
        got = bootstrap_multiaddr(PID, 9200, None, "2001:db8::9", [GLOBAL_V4])
        assert got == f"/ip6/2001:db8::9/tcp/9200/p2p/{PID}"

    @pytest.mark.parametrize("listen", ["0.0.0.0", "::", ""])
    def test_wildcard_listen_uses_best_candidate(self, listen):
        got = bootstrap_multiaddr(PID, 9100, None, listen, [LOOPBACK, PRIVATE_V4, GLOBAL_V6])
        assert got == f"/ip6/{GLOBAL_V6}/tcp/9100/p2p/{PID}"
        got = bootstrap_multiaddr(PID, 9100, None, listen, [LOOPBACK, PRIVATE_V4])
        assert got == f"/ip4/{PRIVATE_V4}/tcp/9100/p2p/{PID}"

    def test_empty_announce_is_ignored(self):
        got = bootstrap_multiaddr(PID, 9100, "", "0.0.0.0", [GLOBAL_V4])
        assert got == f"/ip4/{GLOBAL_V4}/tcp/9100/p2p/{PID}"

    @pytest.mark.parametrize("candidates", [[], ["junk"]])
    def test_none_without_candidates(self, candidates):
        assert bootstrap_multiaddr(PID, 9100, None, "0.0.0.0", candidates) is None


class TestSourcesInOrderOfTrust:
    """announce > UPnP > observed public > IP echo > listen host > interfaces."""

    PEER = "12D3KooWexample"

    def choose(self, **kw):
        defaults = dict(announce=None, listen_host="0.0.0.0", candidates=["192.168.1.5"])
        defaults.update({k: kw.pop(k) for k in list(kw) if k in defaults})
        return bootstrap_multiaddr(self.PEER, 9100, defaults["announce"],
                                   defaults["listen_host"], defaults["candidates"],
                                   **kw)

    def test_upnp_beats_everything_but_announce(self):
        kw = dict(upnp=("203.0.113.42", 9101), observed=["8.8.4.4", "8.8.8.8"], echo="1.1.1.1")
        assert self.choose(**kw) == f"/ip4/203.0.113.42/tcp/9101/p2p/{self.PEER}"
        assert self.choose(announce="9.9.9.9", **kw) == f"/ip4/9.9.9.9/tcp/9100/p2p/{self.PEER}"

    def test_observed_public_beats_echo_and_interfaces_but_private_is_ignored(self):
        assert self.choose(observed=["8.8.8.8"], echo="1.1.1.1") == \
            f"/ip4/8.8.8.8/tcp/9100/p2p/{self.PEER}"
        assert self.choose(observed=["10.0.0.7"], echo="1.1.1.1") == \
            f"/ip4/1.1.1.1/tcp/9100/p2p/{self.PEER}"

    def test_echo_beats_interfaces(self):
        assert self.choose(echo="1.1.1.1") == f"/ip4/1.1.1.1/tcp/9100/p2p/{self.PEER}"
        assert self.choose() == f"/ip4/192.168.1.5/tcp/9100/p2p/{self.PEER}"
