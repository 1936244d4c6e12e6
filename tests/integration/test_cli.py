"""The `p2pcache` command as users type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def p2pcache(*args: str, env: dict[str, str] | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pcache", *args], env=env or os.environ,
                          capture_output=True, text=True, timeout=timeout)


def test_id_is_created_once_and_stable(tmp_path):
    env = {**os.environ, "P2P_CACHE_DATA_DIR": str(tmp_path / "d")}
    first = p2pcache("id", env=env)
    second = p2pcache("id", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("12D3KooW")
    assert (tmp_path / "d" / "identity.key").stat().st_mode & 0o777 == 0o600


def test_client_commands_talk_to_the_running_node(nodes, fake):
    node = nodes("solo")
    env = node.env

    multi = p2pcache("multiaddr", env=env)
    assert multi.returncode == 0
    assert multi.stdout.strip() == node.multiaddr()

    api = p2pcache("api", "repos/cli/cli", env=env)
    assert api.returncode == 0
    assert json.loads(api.stdout)["full_name"] == "cli/cli"

    paged = p2pcache("api", "/repos/cli/cli/issues", "--paginate", env=env)
    assert sum(len(json.loads(line)) for line in paged.stdout.splitlines()) == 95

    included = p2pcache("api", "-i", "repos/cli/cli", env=env)
    assert "x-p2p-cache: hit" in included.stdout

    missing = p2pcache("api", "repos/cli/missing-one", env=env)
    assert missing.returncode == 1 and "Not Found" in missing.stdout

    stats = json.loads(p2pcache("stats", "--json", env=env).stdout)
    assert stats["local_hits"] == 1 and stats["peer_id"] == node.stats()["peer_id"]
    human = p2pcache("stats", env=env).stdout
    assert "Hit rate:" in human and "API calls saved:" in human


def test_client_commands_say_when_no_node_runs():
    from conftest import free_port

    env = {**os.environ, "P2P_CACHE_HTTP": f"127.0.0.1:{free_port()}"}
    result = p2pcache("stats", env=env)
    assert result.returncode == 1
    assert "no node answers at" in result.stderr and "p2pcache serve" in result.stderr


@pytest.mark.parametrize("args, env, text", [
    (["--port", "70000"], {}, "invalid --port='70000': port must be between 1 and 65535"),
    ([], {"P2P_CACHE_PORT": "abc"}, "invalid P2P_CACHE_PORT='abc': not a number"),
    ([], {"P2P_CACHE_HTTP": "nope"}, "invalid P2P_CACHE_HTTP='nope'"),
    ([], {"P2P_CACHE_TTL": "-1"}, "invalid P2P_CACHE_TTL='-1'"),
    ([], {"GITHUB_API_URL": "ftp://x"}, "invalid GITHUB_API_URL='ftp://x'"),
    ([], {"P2P_CACHE_ANNOUNCE": "not-an-ip"}, "invalid P2P_CACHE_ANNOUNCE='not-an-ip'"),
    ([], {"P2P_CACHE_REFRESH_AHEAD": "maybe"}, "invalid P2P_CACHE_REFRESH_AHEAD='maybe'"),
])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, args, env, text):
    full_env = {**os.environ, "P2P_CACHE_DATA_DIR": str(tmp_path), **env}
    result = p2pcache("serve", *args, env=full_env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"p2pcache: {text}"] or \
        result.stderr.strip().startswith(f"p2pcache: {text}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unusable_data_dir_is_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {**os.environ, "P2P_CACHE_DATA_DIR": str(blocker / "sub")}
    result = p2pcache("serve", env=env)
    assert result.returncode == 2
    assert "P2P_CACHE_DATA_DIR" in result.stderr and str(blocker / "sub") in result.stderr


def test_taken_port_is_one_clear_line(nodes):
    first = nodes("first")
    second = nodes("second", start=False)
    second.env["P2P_CACHE_PORT"] = str(first.port)
    second.start(wait=False)
    assert second.proc.wait(30) == 1
    assert "✗ cannot listen for peers" in second.log()
    assert "is another node running?" in second.log()


def test_help_teaches(tmp_path):
    top = p2pcache("--help").stdout
    assert "MCP_P2P_BOOTSTRAP_PEERS" in top and "p2pcache serve" in top
    serve = p2pcache("serve", "--help").stdout
    for flag, var in [("--port", "P2P_CACHE_PORT"), ("--http", "P2P_CACHE_HTTP"),
                      ("--bootstrap", "MCP_P2P_BOOTSTRAP_PEERS"),
                      ("--data-dir", "P2P_CACHE_DATA_DIR"), ("--upstream", "GITHUB_API_URL"),
                      ("--announce", "P2P_CACHE_ANNOUNCE"), ("--upnp", "P2P_CACHE_UPNP"),
                      ("--ttl", "P2P_CACHE_TTL"),
                      ("--refresh-ahead", "P2P_CACHE_REFRESH_AHEAD")]:
        assert flag in serve and var in serve


def test_no_secret_means_a_local_only_cache(nodes):
    node = nodes("lonely", env={"GH_TOKEN": ""})
    assert node.stats()["p2p_enabled"] is False
    assert "P2P sharing is off" in node.log()
    response = node.get("/repos/o/r")
    assert response.status_code == 200 and response.headers["x-p2p-cache"] == "miss"
    assert response.headers["x-ratelimit-limit"] == "60", "anonymous: GitHub's low limit"
    assert node.get("/repos/o/r").headers["x-p2p-cache"] == "hit"


def test_tokens_never_reach_the_log(nodes, fake):
    from conftest import FLEET_TOKEN

    server = nodes("server", env={"P2P_CACHE_SECRET": "s3cr3t-fleet-value"})
    runner = nodes("runner", bootstrap=server.multiaddr(),
                   env={"P2P_CACHE_SECRET": "s3cr3t-fleet-value", "P2P_CACHE_LOG_LEVEL": "debug"})
    runner.wait_for_peers(1)
    runner.get("/repos/o/r")
    server.stop()
    for log in (server.log(), runner.log()):
        assert FLEET_TOKEN not in log and "s3cr3t-fleet-value" not in log
