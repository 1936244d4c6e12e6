"""Transparent mode's two network edges on loopback, without root: the node's HTTPS
listener for the intercepted host (tls.py), and its pinned way to the real upstream
(pinned.py). The root side (trust store, /etc/hosts, guardian) runs in the runner
container of tests/transparent/.

The upstream is the fake GitHub API over HTTPS as api.github.com, its certificate from a
test "public root"; clients reach the node with curl --resolve and the per-job CA.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import pytest

from conftest import FLEET_TOKEN, free_port
from evilupstream import raw_request
from fakegithub import FakeGitHub

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transparent"))
from upstream_tls import make_public_root, wrap  # noqa: E402

from p2pcache import intercept  # noqa: E402

HOST = "api.github.com"


@pytest.fixture
def tls_fake(tmp_path):
    root, cert, key = make_public_root(tmp_path, HOST)
    fake = wrap(FakeGitHub("127.0.0.1", 0, tokens=[FLEET_TOKEN]), cert, key)
    fake.start()
    yield fake, root
    fake.stop()


@pytest.fixture
def job_ca(tmp_path):
    creds = intercept.make_credentials(HOST)
    paths = {}
    for name, data in (("ca.pem", creds.ca_pem), ("leaf.pem", creds.leaf_pem),
                       ("leaf.key", creds.leaf_key_pem)):
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


def curl(port: int, ca: Path, path: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--include", "--resolve", f"{HOST}:{port}:127.0.0.1",
         "--cacert", str(ca), f"https://{HOST}:{port}{path}"],
        capture_output=True, timeout=30)


def headers_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    return {k.strip().lower(): v.strip() for k, _, v in
            (line.partition(":") for line in head.splitlines()[1:])}


def test_https_for_the_host_answers_through_the_cache_with_githubs_bytes(
        nodes, tls_fake, job_ca):
    fake, root = tls_fake
    https = free_port()
    node = nodes("runner", upstream=f"https://{HOST}:{fake.port}", env={
        "P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.1", "P2P_CACHE_UPSTREAM_CA_BUNDLE": str(root),
        "P2P_CACHE_HTTPS": f"127.0.0.1:{https}", "P2P_CACHE_TLS_CERT": str(job_ca["leaf.pem"]),
        "P2P_CACHE_TLS_KEY": str(job_ca["leaf.key"])})
    node.wait_for_log("HTTPS for api.github.com on")
    first = curl(https, job_ca["ca.pem"], "/repos/octo/hello/commits")
    assert first.returncode == 0, first.stderr.decode() + node.log()
    second = curl(https, job_ca["ca.pem"], "/repos/octo/hello/commits")
    assert headers_of(first.stdout)["x-p2p-cache"] == "miss"
    assert headers_of(second.stdout)["x-p2p-cache"] == "hit"
    # GitHub's bytes for a client that named the host it reached: here the listener's port
    # differs from the upstream's (on a runner both are 443, and nothing is rewritten).
    direct = httpx.get(f"https://127.0.0.1:{fake.port}/repos/octo/hello/commits",
                       headers={"host": f"{HOST}:{https}",
                                "authorization": f"Bearer {FLEET_TOKEN}"}, verify=False)
    body = second.stdout.split(b"\r\n\r\n", 1)[1]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(direct.content).hexdigest()
    assert fake.stats()["by_path"]["/repos/octo/hello/commits"] == 2  # node once, direct once


def test_a_client_that_does_not_trust_the_job_ca_is_refused_and_the_node_goes_on(
        nodes, tls_fake, job_ca, tmp_path):
    fake, root = tls_fake
    https = free_port()
    node = nodes("runner", upstream=f"https://{HOST}:{fake.port}", env={
        "P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.1", "P2P_CACHE_UPSTREAM_CA_BUNDLE": str(root),
        "P2P_CACHE_HTTPS": f"127.0.0.1:{https}", "P2P_CACHE_TLS_CERT": str(job_ca["leaf.pem"]),
        "P2P_CACHE_TLS_KEY": str(job_ca["leaf.key"])})
    node.wait_for_log("HTTPS for api.github.com on")
    refused = curl(https, root, "/repos/octo/hello")  # some other CA
    assert refused.returncode != 0
    garbage = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{https}/repos/octo/hello"],
                             capture_output=True, text=True, timeout=30)  # plain HTTP on 443
    assert garbage.returncode != 0 or "200 OK" not in garbage.stdout
    assert curl(https, job_ca["ca.pem"], "/repos/octo/hello").returncode == 0


def test_the_node_never_trusts_its_own_ca_for_the_upstream(nodes, job_ca, tmp_path):
    """An upstream presenting a leaf of the per-job CA (what the node itself serves) is
    refused: the pinned transport verifies against the public roots only."""
    impostor = wrap(FakeGitHub("127.0.0.1", 0, tokens=[FLEET_TOKEN]), job_ca["leaf.pem"],
                    job_ca["leaf.key"]).start()
    try:
        node = nodes("runner", upstream=f"https://{HOST}:{impostor.port}",
                     env={"P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.1",
                          "SSL_CERT_FILE": str(job_ca["ca.pem"]),
                          "REQUESTS_CA_BUNDLE": str(job_ca["ca.pem"])})
        answer = node.get("/repos/octo/hello")
        assert answer.status_code in (502, 503, 504), answer.text
        assert impostor.stats()["requests"] == 0
    finally:
        impostor.stop()


def test_pinned_addresses_are_tried_in_order(nodes, tls_fake):
    """The first address refuses connections; the node goes on to the next."""
    fake, root = tls_fake
    dead = free_port()  # nothing listens on 127.0.0.3:<fake port> either
    node = nodes("runner", upstream=f"https://{HOST}:{fake.port}", env={
        "P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.3,127.0.0.1",
        "P2P_CACHE_UPSTREAM_CA_BUNDLE": str(root)})
    assert dead
    answer = node.get("/repos/octo/hello")
    assert answer.status_code == 200, answer.text
    assert answer.json()["full_name"] == "octo/hello"


@pytest.mark.parametrize("env, var", [
    ({"P2P_CACHE_UPSTREAM_ADDRESSES": "api.github.com"}, "P2P_CACHE_UPSTREAM_ADDRESSES"),
    ({"P2P_CACHE_HTTPS": "127.0.0.1:8443"}, "P2P_CACHE_TLS_CERT"),
    ({"P2P_CACHE_HTTPS": "fd:x"}, "P2P_CACHE_HTTPS"),
    ({"P2P_CACHE_UPSTREAM_CA_BUNDLE": "/nonexistent.pem"}, "P2P_CACHE_UPSTREAM_CA_BUNDLE"),
])
def test_bad_transparent_settings_are_one_line_and_exit_2(nodes, env, var):
    node = nodes("bad", start=False, env=env)
    node.start(wait=False)
    assert node.proc.wait(30) == 2
    assert var in node.log() and "Traceback" not in node.log()


# -- issue 21, finding 4: one listener's flood starves neither listener ----------------------


def status_line(response: bytes) -> str:
    return response.split(b"\r\n", 1)[0].decode(errors="replace")


def served_within(ask: Callable[[], str], seconds: float) -> tuple[str, float]:
    """Ask until a 200 comes (a flood may cost a retry or two), at most for `seconds`."""
    began = time.monotonic()
    answer = ""
    while time.monotonic() - began < seconds:
        answer = ask()
        if " 200 " in answer + " ":
            break
        time.sleep(0.2)
    return answer, time.monotonic() - began


def idle_tls(port: int, ca: Path) -> ssl.SSLSocket:
    """A client that completes the handshake, then says nothing."""
    context = ssl.create_default_context(cafile=str(ca))
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return context.wrap_socket(sock, server_hostname=HOST)


def test_an_idle_flood_of_one_listener_starves_neither(nodes, tls_fake, job_ca):
    """Before: one cap of 256 connections was shared by the local API and the HTTPS listener,
    so 300 silent connections to the local API (any local process can open them) made every
    HTTPS call to api.github.com 503 for 120 s per socket, renewable. Now each listener has
    its own cap, a new connection must send its request (or finish its handshake) within
    10 s, and a listener at its cap closes its longest-idle connection to admit a new one:
    the flood costs the flooder, and clients of both listeners get 200s throughout."""
    fake, root = tls_fake
    https = free_port()
    node = nodes("runner", upstream=f"https://{HOST}:{fake.port}", env={
        "P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.1", "P2P_CACHE_UPSTREAM_CA_BUNDLE": str(root),
        "P2P_CACHE_HTTPS": f"127.0.0.1:{https}", "P2P_CACHE_TLS_CERT": str(job_ca["leaf.pem"]),
        "P2P_CACHE_TLS_KEY": str(job_ca["leaf.key"])})
    node.wait_for_log("HTTPS for api.github.com on")

    def over_https() -> str:
        return status_line(curl(https, job_ca["ca.pem"], "/repos/octo/hello").stdout)

    def over_tcp() -> str:
        return status_line(raw_request(node.http_port, b"GET /repos/octo/hello HTTP/1.1\r\n"
                                       b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"))

    assert " 200 " in over_https() and " 200 " in over_tcp()
    floods = {
        "the local API": lambda: [socket.create_connection(("127.0.0.1", node.http_port))
                                  for _ in range(300)],
        # Half never begin TLS, half finish the handshake and then say nothing.
        "the HTTPS listener": lambda: [socket.create_connection(("127.0.0.1", https))
                                       for _ in range(150)]
                                      + [idle_tls(https, job_ca["ca.pem"]) for _ in range(150)],
    }
    rss = psutil.Process(node.proc.pid).memory_info().rss
    for flooded, open_flood in floods.items():
        flood = open_flood()
        try:
            time.sleep(0.5)
            for ask, where in ((over_https, "HTTPS"), (over_tcp, "the local API")):
                answer, took = served_within(ask, 10)
                print(f"300 idle connections to {flooded}: {where} answered "
                      f"{answer!r} in {took:.2f} s")
                assert " 200 " in answer + " ", (flooded, where, answer)
                assert took < 5, (flooded, where, took)
        finally:
            for sock in flood:
                sock.close()
    grown = psutil.Process(node.proc.pid).memory_info().rss - rss
    print(f"node RSS grew {grown / 2**20:.1f} MiB over both floods")
    assert grown < 64 * 2**20

    # Bodies too: a local process that keeps the local API's 64 MiB of request bodies in
    # flight (7 slow writes of 9.58 MB) leaves the HTTPS listener's writes their own budget.
    slow_bodies = []
    try:
        for _ in range(7):
            sock = socket.create_connection(("127.0.0.1", node.http_port))
            sock.sendall(b"POST /repos/octo/hello/issues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 10000000\r\n\r\n" + b"x" * 9_580_000)
            slow_bodies.append(sock)
        time.sleep(1)
        write = subprocess.run(
            ["curl", "-sS", "--include", "--resolve", f"{HOST}:{https}:127.0.0.1", "--cacert",
             str(job_ca["ca.pem"]), "--data-binary", "@-", f"https://{HOST}:{https}/repos/octo/"
             "hello/issues"], input=b'{"title": "' + b"t" * 100_000 + b'"}',
            capture_output=True, timeout=30)
        answer = status_line(write.stdout)
        print(f"a write over HTTPS while the local API's bodies are full: {answer!r}")
        assert answer.startswith("HTTP/1.1 ") and " 503 " not in answer, write.stdout[:300]
    finally:
        for sock in slow_bodies:
            sock.close()
    assert node.stats()["connections_evicted"] >= 2
    assert node.proc.poll() is None and node.get("/-/healthz").status_code == 200
