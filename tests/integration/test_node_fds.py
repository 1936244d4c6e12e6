"""File descriptors: the node takes the limit the system allows and lives through running
out of them (issue 10, item 3)."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import NodeProcess

ROOT = Path(__file__).resolve().parents[2]


class LimitedNode(NodeProcess):
    """A node started under a given RLIMIT_NOFILE (soft, hard), as systemd or a shell would."""

    def __init__(self, *args: object, nofile: tuple[int, int], **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.nofile = nofile
        self.env["P2P_CACHE_LOG_LEVEL"] = "debug"

    def start(self, wait: bool = True) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pcache", "serve", *self.args], env=self.env,
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile))
        if wait:
            self.wait_ready()
        return self


def nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_the_node_raises_its_soft_fd_limit_to_the_hard_one(tmp_path, fake):
    node = LimitedNode("server", tmp_path / "server", fake.url, nofile=(256, 4096)).start()
    try:
        assert nofile(node.proc.pid) == (4096, 4096)
        node.wait_for_log("open file limit: 4096 (hard 4096)")
    finally:
        node.stop()


def test_running_out_of_descriptors_does_not_end_the_node(tmp_path, fake):
    """Local clients take every descriptor the node has. Before: the next address check
    (every 30 s) raised EMFILE listing interfaces and the node exited. Now it says so once
    and serves again as soon as descriptors are free."""
    node = LimitedNode("server", tmp_path / "server", fake.url, nofile=(64, 64)).start()
    hogs = []
    try:
        for _ in range(80):  # more than the node can accept
            hog = socket.create_connection(("127.0.0.1", node.http_port))
            # A silent connection is closed after 10 s; one kept alive between requests
            # stays (120 s), so these hold their descriptors past the next address check.
            hog.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            hogs.append(hog)
        node.wait_for_log("Could not check the node's address", timeout=45)
        assert node.proc.poll() is None, node.log()
        assert "Too many open files" in node.log()
    finally:
        for hog in hogs:
            hog.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if node.get("/repos/after/emfile").status_code == 200:
                break
        except Exception:
            time.sleep(0.5)
    assert node.get("/-/healthz").status_code == 200
    assert node.proc.poll() is None
    node.stop()


def test_the_systemd_unit_gives_the_node_enough_descriptors():
    unit = (ROOT / "ansible/roles/node/templates/p2pcache.service.j2").read_text()
    limits = [line for line in unit.splitlines() if line.startswith("LimitNOFILE=")]
    assert limits and int(limits[0].split("=")[1]) >= 65536, limits
