"""Webhook deliveries to a real server node: how fast GitHub gets its answer, how soon the
dropped entry is gone, and both under a flood.

Starts the fake GitHub API and a server node with --webhook (real processes on loopback),
then measures:
  answer, kept-alive  - signed issue_comment deliveries on one connection (a TLS terminator's)
  answer, fresh conn  - the same, one new connection each (GitHub straight to the node)
  drop to miss        - from sending a delivery to the first GET of the dropped entry that
                        reaches the fake (the entry cached again before each round)
  25 MB delivery      - a signed push payload of GitHub's maximum size: read, verified, parsed
  answer under flood  - kept-alive deliveries while 200 slow-loris connections (three times
                        the listener's cap) and 4 senders of unsigned 25 MB bodies run

Prints a table and writes bench/results/webhooks.json. Run: python bench/webhooks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import NodeProcess, free_port  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SECRET = "bench-webhook-secret"
TOKEN = "ghp_fleettoken0000000000000000000000000"
N = 300
DROP_ROUNDS = 50
FLOOD_N = 100
COMMENTS = "/repos/octo/hello/issues/5/comments"


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"n": len(samples), "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(max(samples) * 1000, 2)}


def delivery(event: str, payload: bytes) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), payload,
                                                        hashlib.sha256).hexdigest(),
            "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/bench"}


def comment(repo_id: int) -> bytes:
    return json.dumps({"action": "created", "issue": {"number": 5}, "comment": {"id": 1},
                       "repository": {"id": repo_id, "name": "hello", "full_name": "octo/hello",
                                      "owner": {"login": "octo"}}}).encode()


def timed_posts(url: str, body: bytes, n: int, fresh: bool) -> list[float]:
    samples = []
    client = httpx.Client(timeout=30)
    for _ in range(n):
        if fresh:
            client.close()
            client = httpx.Client(timeout=30)
        start = time.perf_counter()
        answer = client.post(url, content=body, headers=delivery("issue_comment", body))
        samples.append(time.perf_counter() - start)
        if answer.status_code != 200:
            raise SystemExit(f"delivery answered {answer.status_code}: {answer.text}")
    client.close()
    return samples


def main() -> None:
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=0, tokens=[TOKEN], rate_limit=10**9).start()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess("server", Path(tmp) / "server", fake.url,
                           args=["--webhook", f"127.0.0.1:{port}"],
                           env={"P2P_CACHE_WEBHOOK_SECRET": SECRET, "GH_TOKEN": TOKEN})
        node.start()
        url = f"http://127.0.0.1:{port}/webhook"
        try:
            repo_id = node.get("/repos/octo/hello").json()["id"]
            body = comment(repo_id)
            results: dict[str, object] = {}
            results["answer_kept_alive"] = percentiles(timed_posts(url, body, N, fresh=False))
            results["answer_fresh_connection"] = percentiles(timed_posts(url, body, N, fresh=True))

            drops = []
            with httpx.Client(timeout=30) as client:
                for _ in range(DROP_ROUNDS):
                    node.get(COMMENTS)
                    assert node.get(COMMENTS).headers["x-p2p-cache"] == "hit"
                    start = time.perf_counter()
                    client.post(url, content=body, headers=delivery("issue_comment", body))
                    while node.get(COMMENTS).headers["x-p2p-cache"] == "hit":
                        pass
                    drops.append(time.perf_counter() - start)
            results["delivery_to_miss"] = percentiles(drops)

            big = json.dumps({"ref": "refs/heads/main", "repository": {
                "id": repo_id, "name": "hello", "full_name": "octo/hello",
                "owner": {"login": "octo"}}, "padding": "x" * (25 * 1024 * 1024 - 400)}).encode()
            assert len(big) <= 25 * 1024 * 1024
            start = time.perf_counter()
            answer = httpx.post(url, content=big, headers=delivery("push", big), timeout=30)
            results["delivery_25mb"] = {"bytes": len(big), "status": answer.status_code,
                                        "answer_ms": round((time.perf_counter() - start) * 1000, 1)}

            results["answer_under_flood"] = flood(port, url, body)
            stats = node.stats()
            results["counters"] = {k: v for k, v in stats.items() if k.startswith("webhook_")}
        finally:
            node.stop()
            fake.stop()
    results["machine"] = {"python": platform.python_version(), "cpus": _cpus()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "webhooks.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, value in results.items():
        print(f"{name:26s} {value}")


def flood(port: int, url: str, body: bytes) -> dict[str, object]:
    stop = threading.Event()
    refused = {"n": 0}

    def big_unsigned() -> None:
        head = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
                b"Content-Length: 26214400\r\n\r\n")
        chunk = b"x" * (1024 * 1024)
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(head)
                    for _ in range(25):
                        sock.sendall(chunk)
                    sock.recv(4096)
            except OSError:
                refused["n"] += 1

    senders = [threading.Thread(target=big_unsigned) for _ in range(4)]
    for t in senders:
        t.start()
    loris = []
    for _ in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
            loris.append(s)
        except OSError:
            pass
    try:
        time.sleep(0.5)
        samples = timed_posts(url, body, FLOOD_N, fresh=True)
    finally:
        stop.set()
        for s in loris:
            s.close()
        for t in senders:
            t.join(30)
    return {**percentiles(samples), "slow_loris": len(loris), "big_body_senders": len(senders),
            "big_bodies_cut_off": refused["n"]}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
