"""Publishing the multiaddr (file, stdout, the repository secret) and `p2pcache doctor`."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import FLEET_TOKEN, free_port


def p2pcache(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pcache", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_publish_sets_the_secret_only_when_it_changed(nodes, fake, tmp_path):
    node = nodes("server")
    address = node.multiaddr()
    first = p2pcache("publish", "--github-secret", "octo/fleet", env=node.env)
    assert first.returncode == 0, first.stderr
    assert "MCP_P2P_BOOTSTRAP_PEERS created on octo/fleet" in first.stderr
    assert fake.secrets() == {"octo/fleet/MCP_P2P_BOOTSTRAP_PEERS": address}
    puts = fake.stats()["methods"].get("PUT", 0)

    again = p2pcache("publish", "--github-secret", "octo/fleet", env=node.env)
    assert "already holds this address" in again.stderr
    assert fake.stats()["methods"].get("PUT", 0) == puts, "unchanged: nothing sent"

    forced = p2pcache("publish", "--github-secret", "octo/fleet", "--force", env=node.env)
    assert "updated" in forced.stderr
    assert fake.stats()["methods"]["PUT"] == puts + 1

    out = tmp_path / "published" / "multiaddr.txt"
    to_file = p2pcache("publish", "--file", str(out), "--stdout", env=node.env)
    assert out.read_text().strip() == address == to_file.stdout.strip()
    assert FLEET_TOKEN not in first.stderr + again.stderr + forced.stderr


def test_publish_says_what_is_wrong(nodes, fake):
    node = nodes("server")
    bad = p2pcache("publish", "--github-secret", "octo/fleet",
                   env={**node.env, "GH_TOKEN": "ghp_revoked"})
    assert bad.returncode == 1
    assert "HTTP 401 Bad credentials (the token is invalid or expired)" in bad.stderr
    garbage = p2pcache("publish", "--multiaddr", "/ip4/1.2.3.4/tcp/9100", env=node.env)
    assert garbage.returncode == 2 and "no /p2p/<peer id> part" in garbage.stderr
    assert fake.secrets() == {}


def test_publish_sets_a_fleets_list_once_and_refuses_a_bad_one(fake, tmp_path):
    """Several servers' multiaddrs (as ansible/deploy.yml hands them over) become one
    comma-separated secret, the value MCP_P2P_BOOTSTRAP_PEERS takes; no node needed."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    ids = [str(ID.from_pubkey(create_new_key_pair().public_key)) for _ in range(3)]
    fleet = [f"/ip4/198.51.100.{n}/tcp/9100/p2p/{peer}" for n, peer in enumerate(ids, 1)]
    env = {**os.environ, "GH_TOKEN": FLEET_TOKEN, "GITHUB_API_URL": fake.url,
           "P2P_CACHE_DATA_DIR": str(tmp_path / "data"), "P2P_CACHE_HTTP": "127.0.0.1:9"}
    secret = "octo/fleet/MCP_P2P_BOOTSTRAP_PEERS"

    def puts() -> int:
        return fake.stats()["methods"].get("PUT", 0)

    first = p2pcache("publish", "--github-secret", "octo/fleet",
                     "--multiaddr", f"{fleet[0]}, {fleet[1]}\n", "--multiaddr", fleet[2],
                     env=env)
    assert first.returncode == 0, first.stderr
    assert "MCP_P2P_BOOTSTRAP_PEERS created on octo/fleet (3 addresses)" in first.stderr
    assert fake.secrets() == {secret: ",".join(fleet)} and puts() == 1

    same = p2pcache("publish", "--github-secret", "octo/fleet", "--multiaddr",
                    "\n".join(fleet), env=env)
    assert "already holds these 3 addresses" in same.stderr and puts() == 1

    # Every hostile value is in tests/unit/test_config.py; here: the command's answer to one.
    for bad in (f"{fleet[0]},,{fleet[1]}", f"{fleet[0]}\x1b[2J,{fleet[1]}"):
        refused = p2pcache("publish", "--github-secret", "octo/fleet", "--multiaddr", bad,
                           env=env)
        assert refused.returncode == 2, (bad, refused.stderr)
        line = refused.stderr.strip()
        assert line.startswith("p2pcache: invalid --multiaddr=") and "\n" not in line, line
        assert "\x1b" not in line and len(line) < 1000, line
    assert fake.secrets() == {secret: ",".join(fleet)} and puts() == 1

    out = tmp_path / "peers"
    both = p2pcache("publish", "--multiaddr", " ".join(fleet), "--file", str(out), "--stdout",
                    env=env)
    assert out.read_text() == ",".join(fleet) + "\n" == both.stdout
    assert FLEET_TOKEN not in first.stderr + same.stderr + both.stderr


def test_a_node_keeps_the_secret_current(nodes, fake):
    node = nodes("server", args=["--publish-secret", "octo/fleet"])
    node.wait_for_log("✓ Secret MCP_P2P_BOOTSTRAP_PEERS created on octo/fleet")
    assert fake.secrets()["octo/fleet/MCP_P2P_BOOTSTRAP_PEERS"] == node.multiaddr()
    node.stop()
    node.start()  # same address after a restart: the secret is left alone
    node.wait_for_log("already holds it")
    assert fake.stats()["methods"]["PUT"] == 1


def test_doctor_on_a_healthy_runner(nodes, fake):
    server = nodes("server")
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)
    result = p2pcache("doctor", env=runner.env)
    out = result.stdout
    assert result.returncode == 0, out
    assert "✓ bootstrap peers configured" in out
    assert "✓ node running" in out
    assert f"✓ bootstrap peer {server.stats()['peer_id']} reachable" in out
    assert "sealed ping answered" in out
    assert "✓ reachable from outside" in out  # the server dialled the runner back
    assert "No problems found" in out


def test_doctor_names_each_problem_and_its_fix(nodes, fake):
    server = nodes("server")
    dead = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{server.stats()['peer_id']}"
    env = {**os.environ, "GH_TOKEN": FLEET_TOKEN, "IPFS_ACCELERATE_GITHUB_REPO": "other/ns",
           "MCP_P2P_BOOTSTRAP_PEERS": f"{server.multiaddr()},{dead},garbage",
           "P2P_CACHE_HTTP": f"127.0.0.1:{free_port()}"}
    result = p2pcache("doctor", env=env)
    out = result.stdout
    assert result.returncode == 1
    assert "✗ bootstrap entry unusable: 'garbage'" in out
    assert f"✗ cannot connect to bootstrap peer {dead}" in out
    assert "ufw allow" in out and "--upnp" in out
    assert "does not answer our sealed ping" in out  # another namespace: another key
    assert "IPFS_ACCELERATE_GITHUB_REPO" in out
    assert "no node running here" in out
    assert "problem(s) found" in out


def test_an_ip_echo_service_gives_the_public_address(nodes, fake):
    node = nodes("echoed", env={"P2P_CACHE_IP_ECHO_URL": fake.url + "/_fake/ip?ip=198.51.100.7",
                                "P2P_CACHE_LISTEN_HOST": "0.0.0.0"})
    assert node.multiaddr().startswith("/ip4/198.51.100.7/tcp/")
    assert "Public IP (from " in node.log()
    announced = nodes("announced", env={"P2P_CACHE_ANNOUNCE": "203.0.113.5",
                                        "P2P_CACHE_IP_ECHO_URL": fake.url + "/_fake/ip"})
    assert announced.multiaddr() == \
        f"/ip4/203.0.113.5/tcp/{announced.port}/p2p/{announced.stats()['peer_id']}"
