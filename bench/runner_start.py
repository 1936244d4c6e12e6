#!/usr/bin/env python3
"""What `actions start` adds to a CI job: install + start + connected to a server node.

From an empty virtual environment on this machine, each way of installing the runner node:

  before     the old action step: `python3 -m venv V && V/bin/pip install ./node`
             (py-libp2p's whole dependency tree, resolved by pip, fastecdsa compiled)
  runner     runner/install.sh, what action.yml runs now: runner/requirements.txt pinned,
             --no-deps, with uv (fetched with pip when not on PATH), then node/

each cold (empty pip and uv caches: a hosted runner with no cache) and warm (caches filled
by the cold run, a fresh venv: a self-hosted runner). Then `restored`: the action's
actions/cache hit, simulated as extracting a zstd tarball of the venv saved after the warm
run (the node has run in it, so its bytecode is there; on GitHub the download of the
tarball comes on top), and runner/install.sh finding the venv working.

After each install, `V/bin/p2pcache actions start` (simulated Actions job: GITHUB_ENV,
GITHUB_OUTPUT, RUNNER_TEMP) with MCP_P2P_BOOTSTRAP_PEERS set to a server node already
running; it returns once the runner node is connected. Then a few GETs through the runner
node (answered by the server node), the runner node's RSS, and `actions summary` stops it.

pip and uv see no machine configuration (PIP_CONFIG_FILE=/dev/null, no PIP_FIND_LINKS,
no PYTHONDONTWRITEBYTECODE): as on a GitHub runner, packages come from PyPI.

Writes bench/results/runner_start.json. Run: python bench/runner_start.py [--only runner]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NAMESPACE, NodeProcess, free_port  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"
METHODS = ("before", "runner")
PATHS = ["/repos/acme/api", "/users/octocat", "/repos/acme/api/issues?page=1", "/orgs/acme"]


def clean_env(caches: Path) -> dict[str, str]:
    """The environment of a job step on a fresh runner: no machine pip configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV", "P2P_CACHE_",
                                "MCP_P2P", "GITHUB_", "GH_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_CACHE_DIR": str(caches / "pip"), "UV_CACHE_DIR": str(caches / "uv"),
                "XDG_CACHE_HOME": str(caches / "xdg")})
    return env


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the machine is shared: wall time
    moves with the load, CPU time much less)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def install(method: str, action: Path, venv: Path, env: dict[str, str]) -> tuple[float, float]:
    """Install into an empty `venv`; (wall seconds, CPU seconds)."""
    t0, cpu0 = time.perf_counter(), children_cpu()
    if method == "before":
        script = (f'python3 -m venv "{venv}" && "{venv}/bin/pip" install --quiet '
                  f'--disable-pip-version-check "{action}/node"')
    else:
        script = f'bash "{action}/runner/install.sh" "{venv}"'
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    took, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"{method} install failed:\n{done.stdout}{done.stderr}")
    return took, cpu


def start_and_use(venv: Path, job: Path, env: dict[str, str], server: NodeProcess) -> dict:
    """`actions start` in a simulated job; GETs through the runner node; its RSS; summary."""
    job.mkdir(parents=True)
    http = f"127.0.0.1:{free_port()}"
    env = {**env, "RUNNER_TEMP": str(job), "GITHUB_ENV": str(job / "env"),
           "GITHUB_OUTPUT": str(job / "output"), "GITHUB_STEP_SUMMARY": str(job / "summary"),
           "MCP_P2P_BOOTSTRAP_PEERS": server.multiaddr(), "GH_TOKEN": FLEET_TOKEN,
           "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "GITHUB_API_URL": server.env["GITHUB_API_URL"],
           "P2P_CACHE_LISTEN_HOST": "127.0.0.1"}
    p2pcache = str(venv / "bin" / "p2pcache")
    t0 = time.perf_counter()
    started = subprocess.run([p2pcache, "actions", "start", "--port", str(free_port()),
                              "--http", http, "--wait", "60"], env=env, capture_output=True,
                             text=True, timeout=120)
    start_s = time.perf_counter() - t0
    if started.returncode != 0 or "Connected to bootstrap peer" not in started.stdout:
        raise SystemExit(f"actions start failed:\n{started.stdout}{started.stderr}")
    pid = int((job / "p2pcache" / "p2pcache-node.pid").read_text().split()[0])  # "PID START"
    node = psutil.Process(pid)
    answers = []
    with httpx.Client(base_url=f"http://{http}", timeout=30) as client:
        for path in PATHS:
            response = client.get(path)
            response.raise_for_status()
            answers.append(response.headers.get("x-p2p-cache"))
    rss = node.memory_info().rss
    node_cpu = node.cpu_times().user + node.cpu_times().system
    subprocess.run([p2pcache, "actions", "summary", "--http", http], env=env,
                   capture_output=True, timeout=60, check=True)
    return {"start_s": round(start_s, 2), "runner_rss_mb": round(rss / 2**20, 1),
            "runner_node_cpu_s": round(node_cpu, 2),
            "answers": answers}


def venv_facts(venv: Path) -> dict:
    listed = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "from importlib import metadata\n"
                             "print(len(list(metadata.distributions())))"],
                            capture_output=True, text=True, check=True)
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    return {"distributions": int(listed.stdout), "venv_mb": round(size / 2**20, 1)}


def run_method(method: str, action: Path, tmp: Path, server: NodeProcess) -> list[dict]:
    caches = tmp / f"{method}-caches"
    env = clean_env(caches)
    rows = []
    for kind in ("cold", "warm"):
        venv = tmp / f"{method}-{kind}" / "p2pcache-venv"
        load = os.getloadavg()[0]
        install_s, install_cpu = install(method, action, venv, env)
        used = start_and_use(venv, tmp / f"{method}-{kind}-job", env, server)
        rows.append({"method": method, "cache": kind, "install_s": round(install_s, 2),
                     "install_cpu_s": round(install_cpu, 2),
                     **used, "total_s": round(install_s + used["start_s"], 2),
                     **venv_facts(venv), "loadavg_1m_before": round(load, 2)})
        print(f"  {method:<7} {kind:<8} install {install_s:6.2f} s  start+connected "
              f"{used['start_s']:5.2f} s  total {rows[-1]['total_s']:6.2f} s  "
              f"(install CPU {install_cpu:.1f} s)  "
              f"RSS {used['runner_rss_mb']} MB  {rows[-1]['distributions']} dists, "
              f"{rows[-1]['venv_mb']} MB  (load {load:.1f})", flush=True)
    if method == "runner":
        # actions/cache: saved at the end of the warm job, restored into a new job.
        warm = tmp / "runner-warm"
        tarball = tmp / "venv.tar.zst"
        subprocess.run(["tar", "--zstd", "-cf", str(tarball), "-C", str(warm),
                        "p2pcache-venv"], check=True)
        # Restored at the same path it was saved from (the cache key holds the path).
        shutil.rmtree(warm / "p2pcache-venv")
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", str(warm)], check=True)
        restore_s = time.perf_counter() - t0
        install_s, _ = install(method, action, warm / "p2pcache-venv", env)
        used = start_and_use(warm / "p2pcache-venv", tmp / "runner-restored-job", env, server)
        rows.append({"method": method, "cache": "restored", "restore_s": round(restore_s, 2),
                     "tarball_mb": round(tarball.stat().st_size / 2**20, 1),
                     "install_s": round(install_s, 2), **used,
                     "total_s": round(restore_s + install_s + used["start_s"], 2),
                     **venv_facts(warm / "p2pcache-venv"), "loadavg_1m_before": round(load, 2)})
        print(f"  {method:<7} restored restore {restore_s:5.2f} s + check {install_s:5.2f} s  "
              f"start+connected {used['start_s']:5.2f} s  total {rows[-1]['total_s']:6.2f} s  "
              f"RSS {used['runner_rss_mb']} MB  tarball {rows[-1]['tarball_mb']} MB", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=METHODS, help="measure one install method")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="p2pcache-runner-start-"))
    # The action's checkout: node/ and runner/ only, so builds never touch this tree.
    action = tmp / "action"
    shutil.copytree(ROOT / "node", action / "node",
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    shutil.copytree(ROOT / "runner", action / "runner")
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=20, tokens=[FLEET_TOKEN]).start()
    server = NodeProcess("server", tmp / "server", fake.url)
    rows: list[dict] = []
    try:
        server.start()
        print(f"runner start: install + `actions start` until connected, from an empty venv "
              f"(Python {platform.python_version()}, {os.cpu_count()} CPUs)", flush=True)
        for method in ([args.only] if args.only else METHODS):
            rows += run_method(method, action, tmp, server)
    finally:
        try:
            server.stop()
        except AssertionError:
            pass
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "platform": platform.platform()}
    for row in rows:
        row.update(machine_cpus=machine["cpus"], python=machine["python"])
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "runner_start.json"
    if args.only and out.exists():  # the other methods' rows stay, from their own run
        rows = [r for r in json.loads(out.read_text()) if r.get("method") != args.only] + rows
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
