"""Shared test harness: the fake GitHub API, and real node processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakegithub import FakeGitHub  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
FLEET_TOKEN = "ghp_fleettoken0000000000000000000000000"
NAMESPACE = "p2pcache-tests/fleet"


def require(condition: bool, reason: str) -> None:
    """A missing prerequisite fails in CI (CI=true) and skips with its reason elsewhere."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    server = FakeGitHub("127.0.0.1", 0, latency_ms=20, tokens=[FLEET_TOKEN], rate_limit=5000)
    server.start()
    yield server
    server.stop()


class NodeProcess:
    """One `p2pcache serve` in its own process, driven through its HTTP API."""

    def __init__(self, name: str, data_dir: Path, upstream: str, *, bootstrap: str = "",
                 ttl: float = 60, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = free_port()
        self.http_port = free_port()
        self.log_path = data_dir.parent / f"{name}.log"
        self.env = {
            **os.environ,
            "GH_TOKEN": FLEET_TOKEN,
            "GITHUB_API_URL": upstream,
            "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE,
            "P2P_CACHE_LISTEN_HOST": "127.0.0.1",
            "P2P_CACHE_PORT": str(self.port),
            "P2P_CACHE_HTTP": f"127.0.0.1:{self.http_port}",
            "P2P_CACHE_DATA_DIR": str(data_dir),
            "P2P_CACHE_TTL": str(ttl),
            "MCP_P2P_BOOTSTRAP_PEERS": bootstrap,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("GITHUB_TOKEN", None)
        self.env.pop("P2P_CACHE_SECRET", None)
        self.env.update(env or {})
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "p2pcache", "serve", *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.http.get("/-/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready in {timeout} s:\n{self.log()}")

    def wait_for_peers(self, count: int = 1, timeout: float = 20) -> None:
        """Until `count` peers are connected; for a node with bootstrap peers, until `count`
        servers answer its fleet key (connected is not yet joined: mesh/peers.py)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            joined = stats["fleet_servers"] if stats["bootstrap_peers"] \
                else stats["connected_peers"]
            if joined >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} has no {count} peer(s) after {timeout} s:\n"
                             f"{self.log()}")

    def wait_for_log(self, text: str, timeout: float = 20, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never logged {text!r} x{count}:\n{self.log()}")

    def multiaddr(self) -> str:
        return self.http.get("/-/multiaddr").text.splitlines()[0]

    def stats(self) -> dict:
        return self.http.get("/-/stats").json()

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(path, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def nodes(tmp_path: Path, fake: FakeGitHub) -> Iterator[callable]:
    """Factory: nodes(name, **kw) starts a node against the fake; all stop at the end."""
    started: list[NodeProcess] = []

    def make(name: str, start: bool = True, **kw: object) -> NodeProcess:
        kw.setdefault("upstream", fake.url)
        node = NodeProcess(name, tmp_path / name, **kw)  # type: ignore[arg-type]
        started.append(node)
        return node.start() if start else node

    yield make
    for node in started:
        try:
            node.stop()
        except AssertionError:
            pass
        node.http.close()


def wait_until(check: Callable[[], object], timeout: float = 15, what: str = "") -> object:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")
