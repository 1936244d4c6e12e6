"""ansible/deploy.yml against real hosts: Debian containers booting systemd, over SSH.

The hosts (tests/ansible/target/Dockerfile), each with the firewall a careful admin leaves
before the play, SSH allowed and every other inbound port closed, and a listener on TCP 9999
that must stay closed:
  ufw        ufw active, default deny, 22 allowed; the node as p2pcache.service; asks for
             the GitHub secret MCP_P2P_BOOTSTRAP_PEERS (fake GitHub API)
  firewalld  firewalld with D-Bus, default zone public; p2pcache.service; asks for the same
             secret, and sets it (first by name): once, to every server's multiaddr
  iptables   iptables with INPUT policy DROP and netfilter-persistent; p2pcache.service
  docker     the iptables host plus Docker Engine and Compose v2 (docker-in-docker): the
             node from the image, p2pcache_install: docker, image from an archive
  upnp       the ufw host, also on the LAN of the NAT lab (tests/nat/lab.py: miniupnpd at
             192.0.2.1, WAN 203.0.113.42) with its default route via that router;
             p2pcache_upnp: true
The node comes from a wheelhouse made by ansible/wheelhouse.sh (no package index on the
hosts); the token comes from the controller's environment, the fleet secret from Ansible Vault.

Order of events (the tests run in file order, on one set of hosts):
  - `--check` on the new hosts: runs, and installs nothing;
  - converge (-v), then a second run: changed=0 on every host, then `--check`: changed=0;
  - from outside: TCP 9100 open, 9999 still closed, a new SSH connection works; the rules
    for IPv4 and IPv6 are there and saved; Docker's chains untouched;
  - the multiaddr file on the controller: a runner node dials it and gets peer hits;
  - the fleet's list (every server's multiaddr, comma-separated): in one file, printed once,
    in the secret (written once), and a runner with it as MCP_P2P_BOOTSTRAP_PEERS reaches
    every server on the lab's network;
  - `--tags firewall` alone, with a source restriction, then without;
  - p2pcache_webhook_port set: the node receives a signed delivery through each firewall,
    a second run changes nothing; unset: the rules go and the port is closed;
  - the UPnP host: the router maps 9100 to it, it publishes the router's address, and a
    runner on the WAN side dials that;
  - a reboot of the iptables host: the rule and the node come back.
Timings are printed at the end (pytest -s, or -rA). Containers, the network and the NAT lab
are removed whatever happens. Outside CI a missing engine skips; under CI=true it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ansiblelab import (FLEET_SECRET, NAMESPACE, NODE_IMAGE, TOKEN, AnsibleLab, PlaybookRun,
                        Target, build_node_image, build_target_images, build_wheelhouse,
                        missing_prerequisite, nat_lab_missing)
from conftest import NodeProcess, require  # tests/conftest.py

pytestmark = pytest.mark.timeout(900)

MULTIADDR = re.compile(r"^/ip4/(\d+\.\d+\.\d+\.\d+)/tcp/9100/p2p/(12D3KooW\w+)$")
SECRET_REPO = "p2pcache-tests/secret"
SECRET_PATH = f"/repos/{SECRET_REPO}/actions/secrets/MCP_P2P_BOOTSTRAP_PEERS"
FLEET_LINE = "Bootstrap peers for MCP_P2P_BOOTSTRAP_PEERS"
SYSTEMD_HOSTS = ("ufw", "firewalld", "iptables")
HOSTS = (*SYSTEMD_HOSTS, "docker")
CANARY = 9999
UPNP_LAN_IP = "192.0.2.200"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleLab]:
    reason = missing_prerequisite()
    require(reason is None, reason or "")
    workdir = tmp_path_factory.mktemp("ansible")
    start = time.monotonic()
    images = build_target_images()
    built = time.monotonic()
    wheelhouse = build_wheelhouse(workdir / "wheelhouse")
    archive = build_node_image(workdir / "p2pcache-image.tar")
    prepared = time.monotonic()
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(AnsibleLab(workdir / "lab"))
        lab.add_target("ufw", "ufw", p2pcache_publish_github_secret=SECRET_REPO)
        lab.add_target("firewalld", "firewalld", p2pcache_publish_github_secret=SECRET_REPO)
        lab.add_target("iptables", "iptables")
        lab.add_target("docker", "docker", p2pcache_install="docker",
                       p2pcache_image_archive=str(archive))
        lab.nat_missing = nat_lab_missing()
        lab.nat = None
        if not lab.nat_missing:
            from nat.lab import NatLab

            lab.nat = stack.enter_context(NatLab())
            lab.add_target("upnp", "ufw", p2pcache_upnp=True)
        for t in lab.targets.values():
            lab.prepare(t)
        if lab.nat is not None:
            lab.attach_to_lan(lab.targets["upnp"], lab.nat, UPNP_LAN_IP)
        lab.write_inventory({
            "p2pcache_namespace": NAMESPACE,
            "p2pcache_github_api_url": lab.fake.url,
            "p2pcache_wheelhouse": str(wheelhouse),
            "p2pcache_image": NODE_IMAGE,
            "p2pcache_publish_file": f"{lab.workdir}/multiaddr/{{{{inventory_hostname}}}}",
            "p2pcache_publish_fleet_file": f"{lab.workdir}/multiaddr/MCP_P2P_BOOTSTRAP_PEERS",
        })
        lab.timings.update({
            "target_images_s": round(built - start, 1),
            "wheelhouse_and_node_image_s": round(prepared - built, 1),
            "hosts_booted_s": round(time.monotonic() - prepared, 1)})
        yield lab
        print(f"\nansible timings: {json.dumps(lab.timings)}", file=sys.stderr)


@pytest.fixture(scope="module")
def all_hosts(lab: AnsibleLab) -> set[str]:
    return set(lab.targets)


@pytest.fixture(scope="module")
def deployed(lab: AnsibleLab) -> dict[str, PlaybookRun]:
    """--check on new hosts, converge, a second run, --check again."""
    vault = lab.vault({"p2pcache_fleet_secret": FLEET_SECRET})
    env = {"GH_TOKEN": TOKEN}
    runs: dict[str, PlaybookRun] = {}
    lab.secret_writes = {}  # run -> PUTs of the secret it made

    def playbook(name: str, *args: str) -> PlaybookRun:
        before = lab.fake.stats()["by_path"].get(SECRET_PATH, 0)
        runs[name] = lab.playbook(*args, *vault, env=env)
        lab.secret_writes[name] = lab.fake.stats()["by_path"].get(SECRET_PATH, 0) - before
        return runs[name]

    playbook("check_new", "--check")
    lab.fleet_file_after_check = (lab.workdir / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS").exists()
    lab.installed_by_check = [t.name for t in lab.targets.values() if lab.exec(
        t, "sh", "-c", "ls /etc/systemd/system/p2pcache.service /etc/p2pcache /opt/p2pcache "
        "2>/dev/null || true").strip()]
    assert playbook("converge", "-v").returncode == 0, runs["converge"].explain()
    playbook("again")
    playbook("check", "--check", "--diff")
    lab.secret_args, lab.secret_env = vault, env    # for later full runs
    lab.timings.update({f"playbook_{k}_s": round(v.seconds, 1) for k, v in runs.items()})
    return runs


def target(lab: AnsibleLab, name: str) -> Target:
    return lab.targets[name]


# -- the runs ----------------------------------------------------------------------------------


def test_check_mode_on_new_hosts_runs_and_installs_nothing(lab: AnsibleLab, deployed: dict,
                                                           all_hosts: set[str]) -> None:
    run = deployed["check_new"]
    assert run.returncode == 0, run.explain()
    assert set(run.recap) == all_hosts, run.explain()
    assert lab.installed_by_check == []
    assert "no multiaddr yet (check mode" in run.output
    # No host has an address yet: each is named, none makes an (empty) entry.
    assert f"{FLEET_LINE}: none yet, no host has a multiaddr ({', '.join(sorted(all_hosts))})" \
        in " ".join(run.output.split()), run.explain()  # YAML output folds long lines
    assert not lab.fleet_file_after_check


def test_converge_succeeds_on_every_host(deployed: dict, all_hosts: set[str]) -> None:
    run = deployed["converge"]
    assert set(run.recap) == all_hosts, run.explain()
    for host, counts in run.recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, run.explain()
        assert counts["changed"] > 0, (host, run.explain())


def test_a_second_run_changes_nothing(deployed: dict, all_hosts: set[str]) -> None:
    run = deployed["again"]
    assert run.returncode == 0, run.explain()
    assert {h: c["changed"] for h, c in run.recap.items()} == {h: 0 for h in all_hosts}, \
        run.explain()


def test_check_mode_on_converged_hosts_reports_no_change(deployed: dict,
                                                         all_hosts: set[str]) -> None:
    run = deployed["check"]
    assert run.returncode == 0, run.explain()
    assert {h: c["changed"] for h, c in run.recap.items()} == {h: 0 for h in all_hosts}, \
        run.explain()


def test_the_token_and_the_fleet_secret_never_reach_the_output(lab: AnsibleLab,
                                                               deployed: dict) -> None:
    for name, run in deployed.items():
        assert TOKEN not in run.output and FLEET_SECRET not in run.output, name
    assert "censored" in deployed["converge"].output  # -v shows that no_log hid something
    for t in lab.targets.values():
        # ... yet they reached the node, in a file only root reads.
        env = lab.exec(t, "cat", "/etc/p2pcache/p2pcache.env")
        assert f"GH_TOKEN='{TOKEN}'" in env and f"P2P_CACHE_SECRET='{FLEET_SECRET}'" in env
        assert lab.exec(t, "stat", "-c", "%a %U", "/etc/p2pcache/p2pcache.env").split() == \
            ["600", "root"]


# -- the hosts, from outside ---------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_the_peer_port_is_open_and_other_ports_stay_closed(lab: AnsibleLab, deployed: dict,
                                                           host: str) -> None:
    t = target(lab, host)
    assert lab.can_connect(t.ip, 9100), f"{host}: TCP 9100 closed"
    # The canary listens on every address, yet the firewall keeps it closed from outside.
    lab.exec(t, "python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', "
             f"{CANARY}), timeout=2)")
    assert not lab.can_connect(t.ip, CANARY), f"{host}: TCP {CANARY} open from outside"


def test_a_new_ssh_connection_still_gets_in(lab: AnsibleLab, deployed: dict) -> None:
    """Over each host's firewall, now with the node's rules in it (no multiplexed
    connection of the play's: a new one)."""
    for t in lab.targets.values():
        assert lab.ssh(t, "echo in").stdout.strip() == "in", t.name


def test_the_rules_cover_ipv4_and_ipv6_and_are_saved(lab: AnsibleLab, deployed: dict) -> None:
    ufw = lab.exec(target(lab, "ufw"), "ufw", "status")
    assert re.search(r"^9100/tcp\s+ALLOW\s+Anywhere\s+# p2pcache", ufw, re.M), ufw
    assert re.search(r"^9100/tcp \(v6\)\s+ALLOW\s+Anywhere \(v6\)", ufw, re.M), ufw
    assert "Default: deny (incoming)" in lab.exec(target(lab, "ufw"), "ufw", "status", "verbose")

    fw = target(lab, "firewalld")
    for scope in ([], ["--permanent"]):
        assert "9100/tcp" in lab.exec(fw, "firewall-cmd", *scope, "--list-ports").split()
        assert lab.exec(fw, "firewall-cmd", *scope, "--list-services").split() == \
            ["dhcpv6-client", "ssh"]

    for host in ("iptables", "docker"):
        t = target(lab, host)
        for tool, saved in (("iptables", "/etc/iptables/rules.v4"),
                            ("ip6tables", "/etc/iptables/rules.v6")):
            rules = lab.exec(t, tool, "-S", "INPUT")
            rule = "-A INPUT -p tcp -m tcp --dport 9100 -m comment --comment p2pcache -j ACCEPT"
            assert rule in rules, (host, tool, rules)
            assert "-P INPUT DROP" in rules and "--dport 22 -j ACCEPT" in rules
            assert rule in lab.exec(t, "cat", saved), (host, saved)
    # Docker's own chains on the docker host are still there (nothing was flushed).
    chains = lab.exec(target(lab, "docker"), "iptables", "-S")
    for chain in ("DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"):
        assert f"-N {chain}" in chains, chains


@pytest.mark.parametrize("host", SYSTEMD_HOSTS)
def test_the_node_runs_as_the_systemd_service_of_the_guide(lab: AnsibleLab, deployed: dict,
                                                           host: str) -> None:
    t = target(lab, host)
    assert lab.ssh(t, "systemctl is-active p2pcache").stdout.strip() == "active"
    assert lab.ssh(t, "systemctl is-enabled p2pcache").stdout.strip() == "enabled"
    journal = lab.ssh(t, "journalctl -u p2pcache --no-pager").stdout
    assert "Bootstrap Multiaddr:" in journal and f"/ip4/{t.ip}/tcp/9100/p2p/" in journal
    assert TOKEN not in journal and FLEET_SECRET not in journal
    user = lab.ssh(t, "ps -o user= -C p2pcache; stat -c %U:%a /var/lib/p2pcache").stdout.split()
    assert user == ["p2pcache", "p2pcache:700"], user
    health = lab.ssh(t, "python3 -c \"import urllib.request as u; "
                        "print(u.urlopen('http://127.0.0.1:9180/-/healthz').status)\"")
    assert health.stdout.strip() == "200"


def test_the_node_runs_from_the_image_with_compose_on_the_docker_host(lab: AnsibleLab,
                                                                       deployed: dict) -> None:
    t = target(lab, "docker")
    ps = lab.ssh(t, "docker compose --project-directory /etc/p2pcache ps --format "
                    "'{{.Service}} {{.Image}} {{.Status}}'").stdout
    assert re.search(rf"^node {re.escape(NODE_IMAGE)} Up .*\(healthy\)", ps, re.M), ps
    assert lab.ssh(t, "systemctl is-active p2pcache", check=False).stdout.strip() != "active"
    assert lab.ssh(t, "ls /var/lib/p2pcache").stdout.split() >= ["cache.sqlite3"]


# -- the multiaddr ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_the_multiaddr_file_on_the_controller_is_dialable(lab: AnsibleLab, deployed: dict,
                                                          tmp_path: Path, host: str) -> None:
    """A runner node bootstraps from the file's address and gets a peer hit through it."""
    t = target(lab, host)
    text = (lab.workdir / "multiaddr" / host).read_text()
    assert text.endswith("\n") and text.count("\n") == 1, text
    match = MULTIADDR.match(text.strip())
    assert match and match.group(1) == t.ip, text
    assert text.strip() in deployed["converge"].output  # printed at the end of the play
    runner = NodeProcess("runner", tmp_path / "runner", lab.fake.url, bootstrap=text.strip(),
                         env={"GH_TOKEN": TOKEN, "P2P_CACHE_SECRET": FLEET_SECRET,
                              "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE})
    try:
        runner.start()
        runner.wait_for_peers(1, timeout=30)
        response = runner.get(f"/repos/{NAMESPACE}/issues?per_page=5&host={host}")
        assert response.status_code == 200, response.text
        assert response.headers["x-p2p-cache"] == "peer", runner.log()
    finally:
        runner.stop()
        runner.http.close()


def fleet_list(lab: AnsibleLab) -> str:
    text = (lab.workdir / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS").read_text()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


def test_the_fleets_list_holds_every_server_sorted_and_is_printed_once(
        lab: AnsibleLab, deployed: dict) -> None:
    """One comma-separated line, every deployed host's multiaddr by host name, no empty
    entry: the value of MCP_P2P_BOOTSTRAP_PEERS, printed once at the end of each run."""
    value = fleet_list(lab)
    per_host = [(lab.workdir / "multiaddr" / host).read_text().strip()
                for host in sorted(lab.targets)]
    assert value.split(",") == per_host and all(MULTIADDR.match(a) for a in per_host), value
    assert len(set(per_host)) == len(lab.targets) >= 2
    for name in ("converge", "again", "check"):
        output = deployed[name].output
        assert output.count(FLEET_LINE) == 1, (name, deployed[name].explain())
        assert re.search(rf"{FLEET_LINE} \({len(per_host)} servers\): {re.escape(value)}\s",
                         output), name
    assert "left out, without a multiaddr" not in deployed["converge"].output


def test_the_secret_is_the_fleets_list_written_once(lab: AnsibleLab, deployed: dict) -> None:
    """Two hosts ask for the secret; one (firewalld, first by name) sets it, to the whole
    list, once: the second run and --check find it current and send nothing."""
    secret = lab.fake.secrets()[f"{SECRET_REPO}/MCP_P2P_BOOTSTRAP_PEERS"]
    assert secret == fleet_list(lab)
    task = deployed["converge"].output.split(
        "TASK [publish : Set the repository secret MCP_P2P_BOOTSTRAP_PEERS")[1].split("TASK [")[0]
    assert re.search(r"^changed: \[firewalld\]", task, re.M), task
    assert re.search(r"^skipping: \[ufw\]", task, re.M), task
    assert f"created on {SECRET_REPO} ({len(lab.targets)} addresses)" in " ".join(task.split())
    writes = [r for r in lab.fake.request_log() if r["path"] == SECRET_PATH]
    assert lab.secret_writes == {"check_new": 0, "converge": 1, "again": 0, "check": 0}, \
        (writes, task)


def test_a_runner_with_the_fleets_list_reaches_the_servers(lab: AnsibleLab, deployed: dict,
                                                           tmp_path: Path) -> None:
    """The list, verbatim as MCP_P2P_BOOTSTRAP_PEERS, connects a runner to every server it
    can reach (all on the lab's network; the UPnP host's address is the NAT lab's WAN side),
    and the runner gets a peer hit through them."""
    value = fleet_list(lab)
    ids = {host: MULTIADDR.match((lab.workdir / "multiaddr" / host).read_text().strip())
           .group(2) for host in HOSTS}
    runner = NodeProcess("runner", tmp_path / "runner", lab.fake.url, bootstrap=value,
                         env={"GH_TOKEN": TOKEN, "P2P_CACHE_SECRET": FLEET_SECRET,
                              "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE})
    try:
        runner.start()
        deadline, connected = time.monotonic() + 45, set()
        while time.monotonic() < deadline and not set(ids.values()) <= connected:
            connected = {p["peer_id"] for p in runner.get("/-/peers").json()}
            time.sleep(0.5)
        reached = sorted(host for host, peer in ids.items() if peer in connected)
        assert reached == sorted(HOSTS), (reached, runner.log()[-3000:])
        response = runner.get(f"/repos/{NAMESPACE}/issues?per_page=5&fleet=1")
        assert response.status_code == 200, response.text
        assert response.headers["x-p2p-cache"] == "peer", runner.log()
    finally:
        runner.stop()
        runner.http.close()


# -- UPnP ---------------------------------------------------------------------------------------


def test_upnp_maps_the_port_and_a_wan_runner_dials_the_published_address(
        lab: AnsibleLab, deployed: dict, tmp_path: Path) -> None:
    """The node behind the lab's router maps TCP 9100 on it by UPnP (the firewall role let
    the router's discovery answers in), publishes the router's external address, and a
    runner on the WAN side, which can reach the LAN only through that mapping, connects."""
    require(lab.nat is not None, "; ".join(lab.nat_missing))
    from nat.lab import WAN_IP, Mapping

    nat, t = lab.nat, lab.targets["upnp"]
    text = (lab.workdir / "multiaddr" / "upnp").read_text().strip()
    match = MULTIADDR.match(text)
    assert match and match.group(1) == WAN_IP, text
    assert Mapping("TCP", 9100, UPNP_LAN_IP, 9100) in nat.mappings(), nat.mappings()
    assert f"UPnP: {WAN_IP}:9100 → this host" in deployed["converge"].output
    ufw = lab.exec(t, "ufw", "status")
    assert re.search(r"ALLOW\s+192\.0\.2\.1 1900/udp\s+# p2pcache upnp", ufw), ufw

    outside = nat.add_wan_host("runner")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "GH_TOKEN": TOKEN, "P2P_CACHE_SECRET": FLEET_SECRET,
           "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "MCP_P2P_BOOTSTRAP_PEERS": text,
           "P2P_CACHE_PORT": "9000", "P2P_CACHE_HTTP": "127.0.0.1:9180",
           "P2P_CACHE_DATA_DIR": str(tmp_path / "runner"), "GITHUB_API_URL": "http://127.0.0.1:9"}
    log = (tmp_path / "runner.log").open("wb")
    nat.popen(outside, [sys.executable, "-m", "p2pcache", "serve"], env=env, stdout=log,
              stderr=log)
    api = f"http://127.0.0.1:{nat.forward(outside, 9180)}"
    deadline, peers = time.monotonic() + 45, 0
    while time.monotonic() < deadline and peers < 1:
        with contextlib.suppress(httpx.HTTPError):
            peers = httpx.get(f"{api}/-/stats", timeout=5).json()["connected_peers"]
        time.sleep(0.5)
    assert peers >= 1, (tmp_path / "runner.log").read_text()[-3000:]

    # The discovery rule is the role's own: it goes when UPnP is off, and comes back.
    off = lab.playbook("--tags", "firewall", "--limit", "upnp", "--extra-vars",
                       '{"p2pcache_upnp": false}')
    assert off.recap["upnp"]["changed"] > 0, off.explain()
    assert "1900/udp" not in lab.exec(t, "ufw", "status")
    on = lab.playbook("--tags", "firewall", "--limit", "upnp")
    assert on.recap["upnp"]["changed"] > 0, on.explain()
    assert "192.0.2.1 1900/udp" in lab.exec(t, "ufw", "status")


def test_upnp_map_method_maps_once_and_tells_the_node_the_router_address(
        lab: AnsibleLab, deployed: dict) -> None:
    """p2pcache_upnp_method: map: the node stops talking UPnP (and removes its own leased
    mapping as it restarts), the role makes a lasting mapping with `p2pcache upnp map` and
    gives the node the router's address, which the multiaddr then carries. Idempotent."""
    require(lab.nat is not None, "; ".join(lab.nat_missing))
    from nat.lab import WAN_IP

    t = lab.targets["upnp"]
    args = ("--limit", "upnp", "--extra-vars", '{"p2pcache_upnp_method": "map"}',
            *lab.secret_args)
    mapped = lab.playbook(*args, env=lab.secret_env)
    assert mapped.returncode == 0 and mapped.recap["upnp"]["changed"] > 0, mapped.explain()
    assert "P2P_CACHE_UPNP=" not in lab.exec(t, "cat", "/etc/p2pcache/p2pcache.env")
    assert lab.exec(t, "grep", "^P2P_CACHE_ANNOUNCE", "/etc/p2pcache/upnp.env").strip() == \
        f"P2P_CACHE_ANNOUNCE='/ip4/{WAN_IP}/tcp/9100'"
    ours = [m for m in lab.nat.upnp_mappings()
            if m["external_port"] == 9100 and m["internal_ip"] == UPNP_LAN_IP]
    # Asked for without a lease (miniupnpd, as IGDv2, caps that at 7 days), where the node's
    # own mapping had 3600 s.
    assert ours and ours[0]["lease"] > 86400, lab.nat.upnp_mappings()
    text = (lab.workdir / "multiaddr" / "upnp").read_text().strip()
    assert text.startswith(f"/ip4/{WAN_IP}/tcp/9100/p2p/"), text
    assert lab.can_connect_from(lab.targets["docker"], t.ip, 9100)
    again = lab.playbook(*args, env=lab.secret_env)
    assert again.recap["upnp"]["changed"] == 0, again.explain()


# -- one role alone, sources, reboot ---------------------------------------------------------------


def test_tags_firewall_alone_restricts_and_reopens_the_port(lab: AnsibleLab,
                                                            deployed: dict) -> None:
    """--tags firewall runs only that role. With p2pcache_firewall_sources the rules that
    allowed anyone go (they are the role's own), this machine (the network's gateway) still
    gets in, another host does not; without, anyone again. SSH works throughout."""
    hosts = ",".join(SYSTEMD_HOSTS)
    other = target(lab, "docker")   # another source address on the same network
    restricted = lab.playbook("--tags", "firewall", "--limit", hosts, "--extra-vars",
                              f'{{"p2pcache_firewall_sources": ["{lab.gateway}/32"]}}')
    assert restricted.returncode == 0, restricted.explain()
    tasks = set(re.findall(r"^TASK \[(\w+) : ", restricted.output, re.M))
    assert tasks == {"firewall"}, tasks
    for host in SYSTEMD_HOSTS:
        t = target(lab, host)
        assert restricted.recap[host]["changed"] > 0, restricted.explain()
        assert lab.can_connect(t.ip, 9100), host
        assert not lab.can_connect_from(other, t.ip, 9100), f"{host}: open to another host"
        assert lab.ssh(t, "true").returncode == 0
    ufw = lab.exec(target(lab, "ufw"), "ufw", "status")
    assert re.search(rf"^9100/tcp\s+ALLOW\s+{re.escape(lab.gateway)}\s", ufw, re.M), ufw
    assert not re.search(r"^9100/tcp.*Anywhere", ufw, re.M), ufw
    rich = lab.exec(target(lab, "firewalld"), "firewall-cmd", "--list-rich-rules")
    assert f'source address="{lab.gateway}/32" port port="9100" protocol="tcp" accept' in rich
    assert "9100/tcp" not in lab.exec(target(lab, "firewalld"), "firewall-cmd", "--list-ports")
    saved = lab.exec(target(lab, "iptables"), "cat", "/etc/iptables/rules.v4")
    assert f"-A INPUT -s {lab.gateway}/32 -p tcp -m tcp --dport 9100" in saved, saved
    assert "--dport 9100 -m comment --comment p2pcache" not in lab.exec(
        target(lab, "iptables"), "ip6tables", "-S", "INPUT")

    reopened = lab.playbook("--tags", "firewall", "--limit", hosts)
    assert reopened.returncode == 0, reopened.explain()
    for host in SYSTEMD_HOSTS:
        assert lab.can_connect_from(other, target(lab, host).ip, 9100), host
    again = lab.playbook("--tags", "firewall", "--limit", hosts)
    assert {h: c["changed"] for h, c in again.recap.items()} == \
        {h: 0 for h in SYSTEMD_HOSTS}, again.explain()


WEBHOOK_PORT = 9443
WEBHOOK_SECRET = "webhook-secret-of-the-ansible-tests"


def test_the_webhook_port_is_opened_only_while_it_is_set(lab: AnsibleLab, deployed: dict) -> None:
    """Without p2pcache_webhook_port nothing listening on that port is reachable. With it
    (and the secret from the controller's environment), the node receives GitHub's
    deliveries there, through each firewall: a signed ping from outside is answered, and a
    second run changes nothing. Unset again, the rules go and the port is closed, even to a
    listener; the peer port stays open throughout."""
    hosts = ",".join(SYSTEMD_HOSTS)
    listener = (f"setsid python3 -m http.server {WEBHOOK_PORT} --bind 0.0.0.0 "
                "--directory /var/empty </dev/null >/dev/null 2>&1 &")

    def with_listener(check) -> None:
        for host in SYSTEMD_HOSTS:
            lab.exec(target(lab, host), "sh", "-c", listener)
        try:
            time.sleep(1)
            check()
        finally:
            for host in SYSTEMD_HOSTS:
                lab.exec(target(lab, host), "sh", "-c",
                         f"pkill -f 'http[.]server {WEBHOOK_PORT}' || true")

    def closed() -> None:
        for host in SYSTEMD_HOSTS:
            t = target(lab, host)
            lab.exec(t, "python3", "-c", f"import socket; socket.create_connection(("
                     f"'127.0.0.1', {WEBHOOK_PORT}), timeout=2)")  # it does listen...
            assert not lab.can_connect(t.ip, WEBHOOK_PORT), f"{host}: {WEBHOOK_PORT} open"

    with_listener(closed)
    env = {**lab.secret_env, "P2P_CACHE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    on = lab.playbook("--limit", hosts, "--extra-vars",
                      f'{{"p2pcache_webhook_port": {WEBHOOK_PORT}}}', *lab.secret_args, env=env)
    assert on.returncode == 0, on.explain()
    assert WEBHOOK_SECRET not in on.output
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    for host in SYSTEMD_HOSTS:
        t = target(lab, host)
        assert lab.can_connect(t.ip, 9100), host
        deadline = time.monotonic() + 30
        while not lab.can_connect(t.ip, WEBHOOK_PORT) and time.monotonic() < deadline:
            time.sleep(0.5)
        ping = httpx.post(f"http://{t.ip}:{WEBHOOK_PORT}/webhook", content=body, timeout=10,
                          headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "1-2-3",
                                   "X-Hub-Signature-256": signature,
                                   "Content-Type": "application/json"})
        assert ping.status_code == 200 and ping.json()["outcome"] == "ping", (host, ping.text)
        env_file = lab.exec(t, "cat", "/etc/p2pcache/p2pcache.env")
        assert f"P2P_CACHE_WEBHOOK='0.0.0.0:{WEBHOOK_PORT}'" in env_file
    ufw = lab.exec(target(lab, "ufw"), "ufw", "status")
    assert re.search(rf"^{WEBHOOK_PORT}/tcp\s+ALLOW\s+Anywhere\s+# p2pcache", ufw, re.M), ufw
    assert f"{WEBHOOK_PORT}/tcp" in lab.exec(target(lab, "firewalld"), "firewall-cmd",
                                             "--permanent", "--list-ports").split()
    rule = f"--dport {WEBHOOK_PORT} -m comment --comment p2pcache -j ACCEPT"
    assert rule in lab.exec(target(lab, "iptables"), "ip6tables", "-S", "INPUT")
    assert rule in lab.exec(target(lab, "iptables"), "cat", "/etc/iptables/rules.v4")
    again = lab.playbook("--limit", hosts, "--extra-vars",
                         f'{{"p2pcache_webhook_port": {WEBHOOK_PORT}}}', *lab.secret_args, env=env)
    assert {h: c["changed"] for h, c in again.recap.items()} == \
        {h: 0 for h in SYSTEMD_HOSTS}, again.explain()

    off = lab.playbook("--limit", hosts, *lab.secret_args, env=lab.secret_env)
    assert off.returncode == 0, off.explain()
    assert not re.search(rf"^{WEBHOOK_PORT}/tcp", lab.exec(target(lab, "ufw"), "ufw", "status"),
                         re.M)
    assert f"{WEBHOOK_PORT}/tcp" not in lab.exec(target(lab, "firewalld"), "firewall-cmd",
                                                 "--permanent", "--list-ports")
    assert f"--dport {WEBHOOK_PORT}" not in lab.exec(target(lab, "iptables"), "cat",
                                                     "/etc/iptables/rules.v4")
    with_listener(closed)
    for host in SYSTEMD_HOSTS:
        assert lab.can_connect(target(lab, host).ip, 9100), host
        assert "P2P_CACHE_WEBHOOK" not in lab.exec(target(lab, host), "cat",
                                                   "/etc/p2pcache/p2pcache.env")


def test_after_a_reboot_the_rule_and_the_node_are_back(lab: AnsibleLab, deployed: dict) -> None:
    t = target(lab, "iptables")
    before = (lab.workdir / "multiaddr" / "iptables").read_text().strip()
    started = time.monotonic()
    lab.restart(t)
    deadline = time.monotonic() + 60
    while not lab.can_connect(t.ip, 9100) and time.monotonic() < deadline:
        time.sleep(0.5)
    lab.timings["reboot_to_peer_port_open_s"] = round(time.monotonic() - started, 1)
    assert lab.can_connect(t.ip, 9100)
    assert not lab.can_connect(t.ip, CANARY)
    deadline = time.monotonic() + 60
    while (multiaddr := lab.ssh(t, "/opt/p2pcache/bin/p2pcache multiaddr", check=False)
           ).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert multiaddr.stdout.strip() == before  # the same peer ID: identity.key survived
    assert lab.ssh(t, "systemctl is-active p2pcache").stdout.strip() == "active"
