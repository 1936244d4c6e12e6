"""The NAT lab is a real router: miniupnpd maps ports, the firewall forwards only those, and
the lab leaves nothing behind. Every UPnP call here is miniupnpc run inside a namespace."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .lab import (CHROOT, IGD_URL, LAN_GATEWAY, STATE_DIR, WAN_IP, LabError, Mapping, NatLab,
                  _alive, _netns_list)

PORT = 9100


def ours(lab: NatLab) -> set[str]:
    return {ns for ns in _netns_list() if ns.startswith(f"p2pc{lab.id}-")}


def mounts_under(path: Path) -> list[str]:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True,
                         check=True).stdout.split()
    return [m for m in out if m == str(path) or m.startswith(f"{path}/")]


def test_lan_host_discovers_the_igd_and_its_external_address(nat_lab: NatLab) -> None:
    server = nat_lab.add_lan_host("server")
    assert server.ip == "192.0.2.10"
    found = nat_lab.upnp(server, "return [u.lanaddr, u.externalipaddress(), u.statusinfo()[0]]",
                         discover=True)
    assert found == [server.ip, WAN_IP, "Connected"]
    assert f"LOCATION: {IGD_URL}" in nat_lab.logs()
    assert nat_lab.mappings() == [] and nat_lab.upnp_mappings() == []


def test_a_mapping_opens_the_lan_server_to_the_wan_and_deleting_closes_it(
        nat_lab: NatLab) -> None:
    server = nat_lab.add_lan_host("server")
    outside = nat_lab.add_wan_host("outside")
    nat_lab.tcp_server(server, PORT)
    # The WAN has no route to the LAN, and nothing forwards the router's port yet.
    assert nat_lab.connect(outside, server.ip, PORT) is None
    assert nat_lab.connect(outside, WAN_IP, PORT) is None
    assert nat_lab.connect(server, server.ip, PORT) == f"{server.ip}\n".encode()

    added = nat_lab.upnp(server, f"return u.addportmapping({PORT}, 'TCP', '{server.ip}', "
                                 f"{PORT}, 'test', '')")
    assert added is True
    assert nat_lab.mappings() == [Mapping("TCP", PORT, server.ip, PORT)]
    # DNAT only: the server sees the WAN host's own address.
    assert nat_lab.connect(outside, WAN_IP, PORT) == f"{outside.ip}\n".encode()

    assert nat_lab.upnp(server, f"return u.deleteportmapping({PORT}, 'TCP')") is True
    assert nat_lab.mappings() == []
    assert nat_lab.connect(outside, WAN_IP, PORT) is None


def test_an_external_port_has_one_owner_and_clients_map_only_to_themselves(
        nat_lab: NatLab) -> None:
    first = nat_lab.add_lan_host("first")
    second = nat_lab.add_lan_host("second")
    outside = nat_lab.add_wan_host("outside")
    assert nat_lab.upnp(first, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                               "'first', '')") is True
    taken = nat_lab.upnp(second, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                                 "'second', '')")
    assert taken == {"error": "ConflictInMappingEntry"}
    # secure_mode: no mapping to another host's address, no deleting another host's mapping.
    assert nat_lab.upnp(second, f"return u.addportmapping({PORT + 2}, 'TCP', '{first.ip}', "
                                f"{PORT}, 'x', '')") == {"error": "Action not authorized"}
    assert nat_lab.upnp(second, f"return u.deleteportmapping({PORT}, 'TCP')") == {
        "error": "Action not authorized"}
    # Ports below 1024 are outside the allow rule.
    assert nat_lab.upnp(second, "return u.addportmapping(80, 'TCP', u.lanaddr, 80, 'x', '')"
                        ) == {"error": "Action not authorized"}
    assert nat_lab.upnp(second, f"return u.addportmapping({PORT + 1}, 'TCP', u.lanaddr, "
                                f"{PORT}, 'second', '')") is True
    assert nat_lab.mappings() == [Mapping("TCP", PORT, first.ip, PORT),
                                  Mapping("TCP", PORT + 1, second.ip, PORT)]
    nat_lab.tcp_server(first, PORT)
    nat_lab.tcp_server(second, PORT)
    assert nat_lab.connect(outside, WAN_IP, PORT) == f"{outside.ip}\n".encode()
    assert nat_lab.connect(outside, WAN_IP, PORT + 1) == f"{outside.ip}\n".encode()
    owners = {m["external_port"]: (m["internal_ip"], m["description"])
              for m in nat_lab.upnp_mappings()}
    assert owners == {PORT: (first.ip, "first"), PORT + 1: (second.ip, "second")}


def test_leases_and_specific_lookups(nat_lab: NatLab) -> None:
    """What a client sees of leases: IGDv2 caps them at a week and turns 0 into a week."""
    host = nat_lab.add_lan_host("host")
    got = nat_lab.upnp(host, f"""
        u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, 'short', '', 120)
        u.addportmapping({PORT + 1}, 'TCP', u.lanaddr, {PORT + 1}, 'zero', '', 0)
        u.addportmapping({PORT + 2}, 'UDP', u.lanaddr, {PORT + 2}, 'huge', '', 10**7)
        return [u.getspecificportmapping({PORT}, 'TCP'),
                u.getspecificportmapping({PORT + 1}, 'TCP'),
                u.getspecificportmapping({PORT + 2}, 'UDP'),
                u.getspecificportmapping({PORT + 3}, 'TCP')]
    """)
    short, zero, huge, absent = got
    assert short[:4] == [host.ip, PORT, "short", True] and 110 <= short[4] <= 120
    assert 604790 <= zero[4] <= 604800 and 604790 <= huge[4] <= 604800
    assert absent is None
    leases = {m["external_port"]: m["lease"] for m in nat_lab.upnp_mappings()}
    assert 110 <= leases[PORT] <= 120


def test_lan_hosts_reach_the_wan_through_the_masquerade(nat_lab: NatLab) -> None:
    server = nat_lab.add_lan_host("server")
    outside = nat_lab.add_wan_host("outside")
    nat_lab.tcp_server(outside, 8080)
    assert nat_lab.connect(server, outside.ip, 8080) == f"{WAN_IP}\n".encode()
    unreachable = nat_lab.run(outside, ["ip", "route", "get", server.ip])
    assert unreachable.returncode != 0 and "unreachable" in unreachable.stderr
    gateway = nat_lab.run(server, ["ip", "route", "show", "default"], check=True).stdout
    assert f"via {LAN_GATEWAY}" in gateway


def test_restarting_miniupnpd_drops_every_mapping(nat_lab: NatLab) -> None:
    server = nat_lab.add_lan_host("server")
    outside = nat_lab.add_wan_host("outside")
    nat_lab.tcp_server(server, PORT)
    assert nat_lab.upnp(server, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                                "'test', '')") is True
    assert nat_lab.connect(outside, WAN_IP, PORT) is not None
    first_pid = nat_lab.miniupnpd_pid

    nat_lab.restart_miniupnpd()

    assert nat_lab.miniupnpd_pid not in (None, first_pid)
    assert nat_lab.mappings() == [] and nat_lab.upnp_mappings() == []
    assert nat_lab.upnp(server, f"return u.getspecificportmapping({PORT}, 'TCP')") is None
    assert nat_lab.connect(outside, WAN_IP, PORT) is None
    assert nat_lab.logs().count("version 2.3.9 starting") == 2
    # and the router works again
    assert nat_lab.upnp(server, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                                "'again', '')") is True
    assert nat_lab.connect(outside, WAN_IP, PORT) == f"{outside.ip}\n".encode()


def test_a_bare_miniupnpd_restart_keeps_rules_as_permanent_mappings(nat_lab: NatLab) -> None:
    """Without the flush a reboot does, miniupnpd 2.3.9 re-reads its nft rules at start:
    the mapping survives, but its lease is forgotten (reported as 0, i.e. never expires)."""
    server = nat_lab.add_lan_host("server")
    assert nat_lab.upnp(server, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                                "'kept', '', 600)") is True
    nat_lab.stop_miniupnpd()
    assert nat_lab.mappings() == [Mapping("TCP", PORT, server.ip, PORT)]
    nat_lab.start_miniupnpd()
    [kept] = nat_lab.upnp_mappings()
    assert (kept["external_port"], kept["internal_ip"], kept["lease"]) == (PORT, server.ip, 0)


def test_teardown_leaves_no_namespace_process_or_mount() -> None:
    from .conftest import nat_lab_missing
    from conftest import require
    missing = nat_lab_missing()
    require(not missing, "; ".join(missing))
    with NatLab() as lab:
        lab.add_lan_host("a")
        lab.add_lan_host("b")
        lab.add_wan_host("c")
        proc = lab.popen("a", ["sleep", "600"])
        pid = lab.miniupnpd_pid
        assert pid is not None
        assert len(ours(lab)) == 5     # router, switch, three hosts
        # miniupnpd's proc and bind mounts live in its own mount namespace only.
        assert mounts_under(CHROOT) == []
        assert (STATE_DIR / f"{lab.id}.json").exists()
    assert ours(lab) == set()
    assert not _alive(pid)
    assert proc.poll() is not None
    assert mounts_under(CHROOT) == []
    assert lab.workdir is not None and not lab.workdir.exists()
    assert not (STATE_DIR / f"{lab.id}.json").exists()


def test_teardown_runs_after_an_exception_and_after_a_killed_owner() -> None:
    from .conftest import nat_lab_missing
    from conftest import require
    missing = nat_lab_missing()
    require(not missing, "; ".join(missing))
    with pytest.raises(RuntimeError, match="boom"):
        with NatLab() as lab:
            lab.add_lan_host("a")
            raise RuntimeError("boom")
    assert ours(lab) == set()

    # A Python process that dies (SIGKILL) with a lab up leaves its namespaces and an
    # orphaned miniupnpd; the next lab to start sweeps them away.
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); from nat.lab import NatLab\n"
              "lab = NatLab().start(); lab.add_lan_host('a')\n"
              "print(lab.id, lab.miniupnpd_pid, flush=True); time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parents[1])],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline().split() if owner.stdout else []
        assert len(line) == 2, f"lab owner printed {line!r}"
        dead_id, orphan = line[0], int(line[1])
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    stale = {ns for ns in _netns_list() if ns.startswith(f"p2pc{dead_id}-")}
    assert len(stale) == 3 and _alive(orphan)
    with NatLab() as lab:
        assert {ns for ns in _netns_list() if ns.startswith(f"p2pc{dead_id}-")} == set()
        assert not _alive(orphan)
        assert not (STATE_DIR / f"{dead_id}.json").exists()


def test_the_lab_refuses_names_twice_and_hosts_after_close(nat_lab: NatLab) -> None:
    nat_lab.add_lan_host("a")
    with pytest.raises(LabError, match="taken"):
        nat_lab.add_wan_host("a")
    assert nat_lab.add_wan_host("b").ip == "203.0.113.10"
    assert all(len(ns) <= 15 for ns in ours(nat_lab))


def test_the_test_process_reaches_into_namespaces(nat_lab: NatLab) -> None:
    """lab.forward() relays a namespace's loopback port (a node's HTTP API) to this
    process; lab.socket() is a socket inside a namespace (a WAN peer of our own)."""
    server = nat_lab.add_lan_host("server")
    outside = nat_lab.add_wan_host("outside")
    nat_lab.tcp_server(server, PORT)
    local = nat_lab.forward(server, PORT)
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", local), timeout=5) as conn:
            assert conn.makefile("rb").read() == b"127.0.0.1\n"

    assert nat_lab.upnp(server, f"return u.addportmapping({PORT}, 'TCP', u.lanaddr, {PORT}, "
                                "'test', '')") is True
    with nat_lab.socket(outside) as conn:
        conn.settimeout(5)
        conn.connect((WAN_IP, PORT))
        assert conn.makefile("rb").read() == f"{outside.ip}\n".encode()
    with nat_lab.socket(server) as conn:   # no hairpin NAT: the LAN can't use the WAN port
        conn.settimeout(2)
        with pytest.raises(OSError):
            conn.connect((WAN_IP, PORT))
