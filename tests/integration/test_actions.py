"""The GitHub Actions integration, driven with a simulated Actions environment: temporary
GITHUB_ENV / GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files and a real server node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import FLEET_TOKEN, NAMESPACE, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def actions_env(tmp_path, fake):
    files = {name: tmp_path / name.lower() for name in
             ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for path in files.values():
        path.write_text("")
    env = {**os.environ, **{k: str(v) for k, v in files.items()},
           "RUNNER_TEMP": str(tmp_path / "runner-temp"), "GITHUB_ACTIONS": "true",
           "GH_TOKEN": FLEET_TOKEN, "GITHUB_API_URL": fake.url,
           "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "P2P_CACHE_LISTEN_HOST": "127.0.0.1"}
    env.pop("MCP_P2P_BOOTSTRAP_PEERS", None)
    return env, files


def run(step: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pcache", "actions", step, *args], env=env,
                          capture_output=True, text=True, timeout=90)


def parse_env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_runner_joins_the_server_and_reports_its_savings(nodes, fake, actions_env):
    env, files = actions_env
    server = nodes("server")
    env["MCP_P2P_BOOTSTRAP_PEERS"] = server.multiaddr()
    port, http = free_port(), f"127.0.0.1:{free_port()}"

    started = run("start", env, "--port", str(port), "--http", http, "--wait", "30")
    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    assert lines[0] == "🚀 Initializing P2P cache for runner communication..."
    assert lines[1] == f"✓ P2P bootstrap peers configured: {server.multiaddr()}"
    assert "✓ Connected to bootstrap peer" in lines
    assert lines[-1].startswith("✓ P2P cache initialized")

    outputs = parse_env_file(files["GITHUB_OUTPUT"].read_text())
    assert outputs["api-url"] == f"http://{http}"
    assert outputs["connected"] == "true"
    assert outputs["peer-id"].startswith("12D3KooW")
    exported = parse_env_file(files["GITHUB_ENV"].read_text())
    api = exported["P2P_CACHE_API_URL"]

    server.get("/repos/ci/shared")  # the server already holds what the job needs
    for _ in range(3):
        assert httpx.get(api + "/repos/ci/shared").status_code == 200
    assert httpx.get(api + "/repos/ci/shared").headers["x-p2p-cache"] == "hit"

    done = run("summary", env, "--port", str(port), "--http", http)
    assert done.returncode == 0
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert f"### P2P cache (runner node on port {port})" in summary
    assert "| Peer hits | 1 |" in summary
    assert "| Local hits | 3 |" in summary
    assert "| Hit rate | 100.0% |" in summary
    assert "| API calls saved | 4 |" in summary
    with pytest.raises(httpx.TransportError):
        httpx.get(api + "/-/healthz", timeout=2)  # summary stopped the node
    assert FLEET_TOKEN not in started.stdout + done.stdout


def test_without_the_secret_the_runner_says_so_and_still_works(fake, actions_env):
    env, files = actions_env
    port, http = free_port(), f"127.0.0.1:{free_port()}"
    started = run("start", env, "--port", str(port), "--http", http)
    assert started.returncode == 0, started.stderr
    assert "⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS secret)" \
        in started.stdout
    assert "   Runners will not connect to MCP server for P2P cache sharing" in started.stdout
    assert parse_env_file(files["GITHUB_OUTPUT"].read_text())["connected"] == "false"
    assert httpx.get(f"http://{http}/repos/ci/alone").status_code == 200
    run("summary", env, "--port", str(port), "--http", http)
    assert "No bootstrap peers configured" in files["GITHUB_STEP_SUMMARY"].read_text()


def test_a_dead_server_does_not_fail_the_job(fake, actions_env):
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    env, files = actions_env
    ghost = ID.from_pubkey(create_new_key_pair().public_key)
    env["MCP_P2P_BOOTSTRAP_PEERS"] = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{ghost}"
    http = f"127.0.0.1:{free_port()}"
    started = run("start", env, "--port", str(free_port()), "--http", http, "--wait", "2")
    assert started.returncode == 0
    assert "Not connected to a bootstrap peer after 2 s" in started.stdout
    assert httpx.get(f"http://{http}/repos/ci/dead").status_code == 200
    run("summary", env, "--http", http)
    assert "never connected to the server node" in files["GITHUB_STEP_SUMMARY"].read_text()


def test_the_action_and_examples_are_wired_to_the_commands():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "📦 Installing P2P cache dependencies..." in script
    # The install step is runner/install.sh, its venv cached under the key it computes.
    assert 'runner/install.sh" "$RUNNER_TEMP/p2pcache-venv"' in script
    cache = next(step for step in steps if step.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["key"] == "${{ steps.p2pcache-env.outputs.key }}"
    assert cache["with"]["path"] == "${{ steps.p2pcache-env.outputs.path }}"
    assert 'install.sh" --cache-key "$RUNNER_TEMP/p2pcache-venv"' in script
    assert "p2pcache\" actions start" in script and "inputs.port" in script
    assert action["inputs"]["port"]["default"] == "9000"
    summary = yaml.safe_load((ROOT / "summary" / "action.yml").read_text())
    assert "actions summary" in summary["runs"]["steps"][0]["run"]
    for name, port in (("amd64", "9000"), ("arm64", "9001"), ("multiarch", "9002")):
        workflow = yaml.safe_load((ROOT / "examples" / "workflows" / f"{name}-ci.yml").read_text())
        steps = workflow["jobs"]["build"]["steps"]
        join = next(s for s in steps if s.get("id") == "p2p")
        assert join["with"]["port"] == port
        assert join["with"]["bootstrap-peers"] == "${{ secrets.MCP_P2P_BOOTSTRAP_PEERS }}"
        assert steps[-1]["if"] == "always()" and steps[-1]["with"]["port"] == port
