"""Servers that are not there, for tests and benchmarks: one that refuses (nothing
listens: just a free port), one that is silent (accepts TCP, never says a word), one that
is blackholed (a firewall drops every packet to it), and a node inside such a hole."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import threading

from conftest import NodeProcess


def blackhole_missing() -> str | None:
    """Why a Blackhole cannot be built here, or None."""
    if os.geteuid() != 0:
        return "a blackholed server needs root (a network namespace and its firewall)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    return f"a blackholed server needs {', '.join(missing)}" if missing else None


class SilentListener:
    """Accepts TCP and never says a word: a libp2p dial to it hangs in the handshake."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for conn in self.held:
            conn.close()


class Blackhole:
    """A network namespace behind a veth pair (a /30 of TEST-NET-2), whose firewall can
    drop every TCP packet to one port: a dial there hangs, as to a server behind a
    blackholing firewall. The machine's own rules are untouched."""

    def __init__(self) -> None:
        tag = os.urandom(3).hex()
        self.ns, self.outer, self.inner = f"p2pc-bh-{tag}", f"bh{tag}o", f"bh{tag}i"
        used = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
        while True:
            base = random.randrange(32, 63) * 4
            if f"198.51.100.{base + 1}/" not in used:
                break
        self.outside, self.inside = f"198.51.100.{base + 1}", f"198.51.100.{base + 2}"
        self._ip("netns", "add", self.ns)
        self._ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner,
                 "netns", self.ns)
        self._ip("addr", "add", f"{self.outside}/30", "dev", self.outer)
        self._ip("link", "set", self.outer, "up")
        self._ip("-n", self.ns, "addr", "add", f"{self.inside}/30", "dev", self.inner)
        self._ip("-n", self.ns, "link", "set", self.inner, "up")
        self._ip("-n", self.ns, "link", "set", "lo", "up")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def drop(self, port: int) -> None:
        rules = ("table inet p2pcache_blackhole {\n chain input {\n"
                 "  type filter hook input priority 0; policy accept;\n"
                 f"  tcp dport {port} drop\n }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], input=rules,
                       text=True, check=True, capture_output=True, timeout=30)

    def open(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet",
                        "p2pcache_blackhole"], check=True, capture_output=True, timeout=30)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True, timeout=30)


class NodeInNamespace(NodeProcess):
    """A server node inside the blackhole's namespace; its API on the namespace's address."""

    def __init__(self, hole: Blackhole, *args, **kw) -> None:
        self.hole = hole
        super().__init__(*args, **kw)
        self.env.update({"P2P_CACHE_LISTEN_HOST": hole.inside,
                         "P2P_CACHE_HTTP": f"{hole.inside}:{self.http_port}"})

    @property
    def url(self) -> str:
        return f"http://{self.hole.inside}:{self.http_port}"

    def start(self, wait: bool = True) -> NodeInNamespace:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # `ip netns exec` execs the command: the PID is the node's own.
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.hole.ns, sys.executable,
                                      "-m", "p2pcache", "serve"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self
