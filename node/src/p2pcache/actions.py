"""GitHub Actions glue: start a runner node for the job, and report its counters at the end.

The composite action (action.yml) only installs the package and calls these commands, so
the logic is here, tested with a simulated Actions environment (temporary GITHUB_ENV,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

PID_FILE = "p2pcache-node.pid"
LOG_FILE = "p2pcache-node.log"


# -- pure formatting --------------------------------------------------------------------


def env_file_lines(values: Mapping[str, str]) -> str:
    """GITHUB_ENV / GITHUB_OUTPUT syntax; multi-line values use a random heredoc marker."""
    out = []
    for name, value in values.items():
        if "\n" in value:
            marker = f"ghadelimiter_{uuid.uuid4().hex}"
            out.append(f"{name}<<{marker}\n{value}\n{marker}\n")
        else:
            out.append(f"{name}={value}\n")
    return "".join(out)


def summary_markdown(stats: Mapping[str, Any], port: int) -> str:
    """The job summary: did the runner share the fleet's cache, and what did it save?"""
    connected = stats.get("connected_peers", 0)
    rows = [
        ("Hit rate", f"{stats.get('hit_rate', 0):.1%}"),
        ("API calls saved", stats.get("api_calls_saved", 0)),
        ("Peer hits", stats.get("peer_hits", 0)),
        ("Local hits", stats.get("local_hits", 0)),
        ("Coalesced", stats.get("coalesced", 0)),
        ("Misses (asked GitHub)", stats.get("misses", 0)),
        ("Requests to GitHub", stats.get("upstream_requests", 0)),
        ("Free 304 revalidations", stats.get("not_modified", 0)),
        ("Rate limit left", stats.get("rate_limit_remaining", "unknown")),
        ("Connected peers", connected),
    ]
    lines = ["### P2P cache (runner node on port %d)" % port, "",
             "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if not stats.get("bootstrap_peers"):
        lines += ["", "⚠️ No bootstrap peers configured: set the `MCP_P2P_BOOTSTRAP_PEERS` "
                  "secret so runners share the server node's cache."]
    elif not connected:
        lines += ["", "⚠️ The runner never connected to the server node: run "
                  "`p2pcache doctor` on the server, and check that TCP port of the "
                  "multiaddr is open."]
    return "\n".join(lines) + "\n"


# -- I/O ---------------------------------------------------------------------------------


def append(path_var: str, text: str, env: Mapping[str, str]) -> None:
    path = env.get(path_var)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("RUNNER_TEMP") or env.get("TMPDIR") or "/tmp"
    return Path(base) / "p2pcache"


def start(port: int, http: str, wait: float, env: Mapping[str, str] | None = None) -> int:
    """Start a runner node in the background and wait (bounded) until it is useful."""
    from . import config
    from .client import NodeClient, NodeUnavailable

    env = dict(os.environ if env is None else env)
    print("🚀 Initializing P2P cache for runner communication...", flush=True)
    state = state_dir(env)
    env.setdefault("P2P_CACHE_DATA_DIR", str(state / "data"))
    env["P2P_CACHE_PORT"] = str(port)
    env["P2P_CACHE_HTTP"] = http
    settings = config.load({}, env)
    for rejected in settings.bootstrap_rejected:
        print(f"⚠️  Ignoring bootstrap peer {rejected}")
    if settings.bootstrap:
        print("✓ P2P bootstrap peers configured: "
              + ", ".join(p.multiaddr for p in settings.bootstrap), flush=True)
    else:
        print("⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS secret)")
        print("   Runners will not connect to MCP server for P2P cache sharing", flush=True)

    state.mkdir(parents=True, exist_ok=True)
    log_path = state / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "p2pcache", "serve"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # outlives this step
    (state / PID_FILE).write_text(str(proc.pid))

    client = NodeClient(settings.http_base)
    deadline = time.monotonic() + wait
    stats: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"✗ The P2P cache node exited ({proc.returncode}); its log:\n"
                  + log_path.read_text(errors="replace"), file=sys.stderr)
            return 1
        try:
            stats = client.stats()
        except (NodeUnavailable, Exception):
            stats = None
        if stats and (not settings.bootstrap or stats.get("connected_peers")):
            break
        time.sleep(0.25)
    if stats is None:
        print(f"✗ The P2P cache node did not answer within {wait:.0f} s; see {log_path}",
              file=sys.stderr)
        return 1
    connected = bool(stats.get("connected_peers"))
    if settings.bootstrap:
        print("✓ Connected to bootstrap peer" if connected else
              f"⚠️  Not connected to a bootstrap peer after {wait:.0f} s: the node keeps "
              "trying, and meanwhile asks GitHub itself (see `p2pcache doctor`)")
    outputs = {"api-url": settings.http_base, "peer-id": str(stats.get("peer_id")),
               "connected": "true" if connected else "false", "log": str(log_path)}
    append("GITHUB_OUTPUT", env_file_lines(outputs), env)
    append("GITHUB_ENV", env_file_lines({"P2P_CACHE_API_URL": settings.http_base,
                                         "P2P_CACHE_HTTP": http}), env)
    print(f"✓ P2P cache initialized (local API {settings.http_base}, "
          f"peer ID {stats.get('peer_id')})", flush=True)
    return 0


def summary(port: int, http: str, stop: bool, env: Mapping[str, str] | None = None) -> int:
    """Write the counters to the job summary, then stop the node."""
    from .client import NodeClient, NodeUnavailable
    from .config import load

    env = dict(os.environ if env is None else env)
    env["P2P_CACHE_HTTP"] = http
    settings = load({}, env, need_data_dir=False)
    try:
        stats = NodeClient(settings.http_base).stats()
    except NodeUnavailable as exc:
        print(f"⚠️  No P2P cache node to report on: {exc}")
        append("GITHUB_STEP_SUMMARY", "### P2P cache\n\n⚠️ The runner node was not running "
               "at the end of the job.\n", env)
        return 0
    text = summary_markdown(stats, port)
    append("GITHUB_STEP_SUMMARY", text, env)
    print(text)
    if stop:
        stop_node(env)
    return 0


def stop_node(env: Mapping[str, str]) -> None:
    pid_file = state_dir(env) / PID_FILE
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(100):  # up to 10 s for a clean stop (UPnP unmapped, store closed)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
