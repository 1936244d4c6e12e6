"""The GitHub Actions integration, driven with a simulated Actions environment: temporary
GITHUB_ENV / GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files and a real server node."""

from __future__ import annotations

import json
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
    server.get("/repos/ci/r/contents/earlier")  # what an earlier job asked the fleet for
    env["MCP_P2P_BOOTSTRAP_PEERS"] = server.multiaddr()
    port, http = free_port(), f"127.0.0.1:{free_port()}"

    started = run("start", env, "--port", str(port), "--http", http, "--wait", "30")
    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    assert lines[0] == "🚀 Initializing P2P cache for runner communication..."
    assert lines[1] == f"✓ P2P bootstrap peers configured: {server.multiaddr()}"
    assert "✓ Connected to bootstrap peer" in lines
    # start waited for the warm start: the job's first call is already a local hit
    # (the path, and the repository's own view that says it is public)
    assert "✓ Warm start: took 2 fresh entries of the fleet's answers" in lines
    assert lines[-1].startswith("✓ P2P cache initialized")

    outputs = parse_env_file(files["GITHUB_OUTPUT"].read_text())
    assert outputs["api-url"] == f"http://{http}"
    assert outputs["connected"] == "true"
    assert outputs["peer-id"].startswith("12D3KooW")
    exported = parse_env_file(files["GITHUB_ENV"].read_text())
    api = exported["P2P_CACHE_API_URL"]

    assert httpx.get(api + "/repos/ci/r/contents/earlier").headers["x-p2p-cache"] == "hit"
    server.get("/repos/ci/r/contents/shared")  # the server already holds what the job needs
    for _ in range(3):
        assert httpx.get(api + "/repos/ci/r/contents/shared").status_code == 200
    assert httpx.get(api + "/repos/ci/r/contents/shared").headers["x-p2p-cache"] == "hit"

    done = run("summary", env, "--port", str(port), "--http", http)
    assert done.returncode == 0
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert f"### P2P cache (runner node on port {port})" in summary
    assert "| Peer hits | 1 |" in summary
    assert "| Local hits | 4 |" in summary
    assert "| Entries taken at warm start | 2 |" in summary
    assert "| Hit rate | 100.0% |" in summary
    assert "| API calls saved | 5 |" in summary
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


# -- the step's private directory and the PID it signals (issue 10, item 7) -------------


def test_without_runner_temp_the_state_is_not_in_a_shared_tmp(tmp_path):
    from p2pcache.actions import state_dir

    env = {"HOME": str(tmp_path / "home"), "TMPDIR": "/tmp",
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    path = state_dir(env)
    assert path == tmp_path / "run" / "p2pcache"
    assert path.stat().st_mode & 0o777 == 0o700
    del env["XDG_RUNTIME_DIR"]
    assert not str(state_dir(env, create=False)).startswith("/tmp/")


@pytest.mark.parametrize("prepare", ["symlink", "open to others"])
def test_a_prepared_state_dir_is_refused(fake, actions_env, tmp_path, prepare):
    env, _ = actions_env
    temp = Path(env["RUNNER_TEMP"])
    temp.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if prepare == "symlink":
        (temp / "p2pcache").symlink_to(elsewhere)
    else:
        (temp / "p2pcache").mkdir()
        (temp / "p2pcache").chmod(0o755)
    started = run("start", env, "--port", str(free_port()), "--http",
                  f"127.0.0.1:{free_port()}")
    assert started.returncode == 1
    assert "is not a private directory" in started.stderr
    assert not list(elsewhere.iterdir())  # nothing written through the symlink


@pytest.mark.parametrize("content", ["{pid}", "{pid} {start}"])
def test_summary_signals_only_the_node_it_started(actions_env, content):
    """A PID file naming another process (here a sleep, whose start time may even match)
    must not get that process killed."""
    from p2pcache.intercept import start_time

    env, _ = actions_env
    victim = subprocess.Popen(["sleep", "60"])
    try:
        state = Path(env["RUNNER_TEMP"]) / "p2pcache"
        state.mkdir(parents=True, mode=0o700)
        (state / "p2pcache-node.pid").write_text(
            content.format(pid=victim.pid, start=start_time(victim.pid)))
        done = run("summary", env, "--http", f"127.0.0.1:{free_port()}")
        assert done.returncode == 0, done.stderr
        assert victim.poll() is None, "summary killed a process that is not its node"
    finally:
        victim.kill()
        victim.wait()


def test_transparent_mode_is_the_actions_default_and_the_examples_leave_steps_unchanged():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["inputs"]["transparent"]["default"] == "true"
    start = next(s["run"] for s in action["runs"]["steps"] if s.get("id") == "start")
    assert "--transparent --intercept" in start and "inputs.transparent == 'true'" in start
    for name in ("amd64", "arm64", "multiarch"):
        workflow = yaml.safe_load((ROOT / "examples" / "workflows" / f"{name}-ci.yml").read_text())
        steps = workflow["jobs"]["build"]["steps"]
        join = next(i for i, s in enumerate(steps) if s.get("id") == "p2p")
        assert steps[join]["with"]["transparent"] == "true"
        after = steps[join + 1:]
        uses = [s.get("uses", "") for s in after]
        assert any(u.startswith("actions/setup-node@") for u in uses)
        assert any(u.startswith("actions/github-script@") for u in uses)
        gh = next(s for s in after if s.get("run", "").startswith("gh api"))
        script = next(s for s in after if s.get("uses", "").startswith("actions/github-script"))
        # unchanged steps: nothing in them points at the node
        for step in (gh, script):
            assert "P2P_CACHE" not in json.dumps(step)



def test_root_summary_for_a_job_signals_no_pid_the_job_wrote(tmp_path):
    """Issue 21, finding 9: root's summary for another user goes by the identity root
    recorded in its own directory; a PID file of the job's naming a process that looks like
    a node (here a root process with p2pcache in its command line) gets nothing."""
    from conftest import require
    from p2pcache.intercept import start_time

    require(os.geteuid() == 0, "root's summary for a job needs root")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "p2pcache", "serve"])
    try:
        nobody = 65534
        temp = tmp_path / "runner-temp"
        state = temp / "p2pcache"
        state.mkdir(parents=True, mode=0o700)
        for path in (temp, state):
            os.chown(path, nobody, nobody)
        (state / "p2pcache-node.pid").write_text(f"{victim.pid} {start_time(victim.pid)}")
        env = {"PATH": os.environ["PATH"], "SUDO_UID": str(nobody), "SUDO_GID": str(nobody),
               "SUDO_USER": "nobody", "RUNNER_TEMP": str(temp), "HOME": "/root"}
        done = run("summary", env, "--http", f"127.0.0.1:{free_port()}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert victim.poll() is None, "root's summary killed a process the job named"
    finally:
        victim.kill()
        victim.wait()
