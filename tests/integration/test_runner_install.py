"""runner/install.sh, the action's install step, for real: into an empty venv from the
package index (uv, or pip when uv cannot be had), from a copy of the action's checkout. The
runner node it installs, without the py-libp2p dependencies no node loads, joins a real
server node and serves the fleet's answers; a working venv (an actions/cache hit) is kept,
a broken one is replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import FLEET_TOKEN, NAMESPACE, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def action(tmp_path_factory) -> Path:
    """The action's checkout, as GitHub places it: node/ and runner/ (builds stay there)."""
    path = tmp_path_factory.mktemp("action")
    shutil.copytree(ROOT / "node", path / "node",
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    shutil.copytree(ROOT / "runner", path / "runner")
    return path


def step_env() -> dict[str, str]:
    # A job step's environment: nothing from this test run's Python leaks into the venv.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV", "P2P_CACHE_", "MCP_P2P"))}


def install(action: Path, venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(action / "runner" / "install.sh"), *args, str(venv)],
                          env=step_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def venv(action: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runner-temp") / "p2pcache-venv"
    done = install(action, path)
    assert done.returncode == 0, done.stdout + done.stderr
    return path


def installed(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "from importlib import metadata\n"
                          "for d in metadata.distributions(): print(d.metadata['Name'])"],
                         env=step_env(), capture_output=True, text=True, check=True).stdout
    return {line.strip().lower().replace("_", "-") for line in out.splitlines() if line.strip()}


def test_the_runner_node_joins_the_fleet_without_the_unused_dependencies(venv, nodes, fake,
                                                                          tmp_path):
    dists = installed(venv)
    assert {"p2pcache", "libp2p", "trio", "cryptography"} <= dists
    assert not {"grpcio", "rpcudp", "lru-dict", "mypy-protobuf"} & dists

    server = nodes("server")
    http = f"127.0.0.1:{free_port()}"
    env = {**step_env(), "RUNNER_TEMP": str(tmp_path / "job"), "GH_TOKEN": FLEET_TOKEN,
           "GITHUB_API_URL": fake.url, "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE,
           "P2P_CACHE_LISTEN_HOST": "127.0.0.1", "MCP_P2P_BOOTSTRAP_PEERS": server.multiaddr(),
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_ENV": str(tmp_path / "env")}
    p2pcache = str(venv / "bin" / "p2pcache")
    started = subprocess.run([p2pcache, "actions", "start", "--port", str(free_port()),
                              "--http", http, "--wait", "60"], env=env, capture_output=True,
                             text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "✓ Connected to bootstrap peer" in started.stdout
        # Through the minimal install's Noise, Yamux and AES-GCM: the server node fetched it.
        answer = httpx.get(f"http://{http}/repos/ci/minimal/commits", timeout=30)
        assert answer.status_code == 200 and answer.headers["x-p2p-cache"] == "peer"
        assert server.stats()["peer_requests_served"] >= 1
    finally:
        subprocess.run([p2pcache, "actions", "summary", "--http", http], env=env,
                       capture_output=True, timeout=60)


def test_a_working_venv_is_kept_and_a_broken_one_replaced(action, venv):
    kept = install(action, venv)
    assert kept.returncode == 0 and "✓ Reusing the cached runner environment" in kept.stdout

    # A cache restored half, or from another machine: the node cannot import.
    for cli in venv.glob("lib/python*/site-packages/p2pcache/cli.py"):
        cli.unlink()
    redone = install(action, venv)
    assert redone.returncode == 0, redone.stdout + redone.stderr
    assert "Reusing" not in redone.stdout
    version = subprocess.run([str(venv / "bin" / "p2pcache"), "--version"], env=step_env(),
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr


def test_every_install_has_the_root_entry_of_transparent_mode(venv, tmp_path):
    """bin/p2pcache-root: what README's sudoers rule names in a root-owned install. Its
    interpreter runs isolated: a PYTHONPATH with a sitecustomize.py and a working directory
    holding p2pcache/ (both run by the plain interpreter) are ignored."""
    entry = venv / "bin" / "p2pcache-root"
    assert entry.read_text().splitlines()[0] == f"#!{venv.resolve()}/bin/python -I"
    assert entry.stat().st_mode & 0o777 == 0o755
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "sitecustomize.py").write_text("raise SystemExit('sitecustomize ran')")
    (tmp_path / "p2pcache").mkdir()
    (tmp_path / "p2pcache" / "__init__.py").write_text("raise SystemExit('workspace ran')")
    env = {**step_env(), "PYTHONPATH": str(tmp_path / "evil")}
    plain = subprocess.run([str(venv / "bin" / "python"), "-m", "p2pcache", "--version"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0 and "ran" in plain.stderr  # the payloads are live
    isolated = subprocess.run([str(entry), "--version"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert isolated.returncode == 0 and isolated.stdout.startswith("p2pcache "), \
        isolated.stdout + isolated.stderr


def test_the_cache_key_follows_the_environment_and_the_sources(action, tmp_path):
    def key(venv: Path) -> str:
        done = install(action, venv, "--cache-key")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = key(tmp_path / "a" / "p2pcache-venv")
    assert first == key(tmp_path / "a" / "p2pcache-venv")
    assert first.startswith("p2pcache-runner-Linux-")
    assert key(tmp_path / "b" / "p2pcache-venv") != first  # scripts hold the venv's path
    source = action / "node" / "src" / "p2pcache" / "__init__.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# changed\n")
        assert key(tmp_path / "a" / "p2pcache-venv") != first  # a new release of the action
    finally:
        source.write_text(original)


def test_pip_alone_installs_the_same_runner(action, tmp_path):
    """Where uv cannot be had: the pip path, pinned setuptools, no build isolation."""
    venv = tmp_path / "p2pcache-venv"
    done = subprocess.run(["bash", str(action / "runner" / "install.sh"), str(venv)],
                          env={**step_env(), "P2P_CACHE_INSTALLER": "pip"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing with pip" in done.stdout
    dists = installed(venv)
    assert {"p2pcache", "libp2p", "fastecdsa", "pip"} <= dists and "grpcio" not in dists
    node = subprocess.run([str(venv / "bin" / "python"), "-c", "import p2pcache.node"],
                          env=step_env(), capture_output=True, text=True, timeout=120)
    assert node.returncode == 0, node.stderr
