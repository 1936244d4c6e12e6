"""GitHub webhook deliveries to a real node process (`serve --webhook`): what a verified
delivery drops, and what a forged, repeated, oversized, slow or flooding one cannot do.

Deliveries are made as GitHub makes them: POST /webhook with X-GitHub-Event,
X-GitHub-Delivery, X-Hub-Signature-256 (HMAC-SHA256 of the raw body, computed here, not by
the code under test) and GitHub-Hookshot's User-Agent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil
import pytest

from conftest import FLEET_TOKEN, free_port, wait_until

SECRET = "webhook-secret-for-tests-0123456789"
OWNER, REPO = "octo", "hello"
ISSUE = 5
COMMENTS = f"/repos/{OWNER}/{REPO}/issues/{ISSUE}/comments"
ISSUE_PATH = f"/repos/{OWNER}/{REPO}/issues/{ISSUE}"
README = f"/repos/{OWNER}/{REPO}/contents/README.md"
ROOT = f"/repos/{OWNER}/{REPO}"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(event: str, body: bytes, guid: str | None = None,
                     signature: str | None = "sign") -> dict[str, str]:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid or str(uuid.uuid4()),
               "User-Agent": "GitHub-Hookshot/044aadd", "Content-Type": "application/json",
               "X-GitHub-Hook-ID": "292430182"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return headers


def comment_payload(repo_id: int) -> bytes:
    return json.dumps({
        "action": "created",
        "issue": {"number": ISSUE, "title": "Found a bug", "state": "open"},
        "comment": {"id": 1, "body": "Me too"},
        "repository": {"id": repo_id, "name": REPO, "full_name": f"{OWNER}/{REPO}",
                       "owner": {"login": OWNER, "id": 1}},
        "sender": {"login": "octocat"},
    }).encode()


class Hook:
    """The webhook side of one node."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/webhook"
        self.http = httpx.Client(timeout=30)

    def deliver(self, event: str, body: bytes, **kw: object) -> httpx.Response:
        return self.http.post(self.url, content=body,
                              headers=delivery_headers(event, body, **kw))  # type: ignore[arg-type]


def webhook_node(nodes, name: str = "server", secret: str = SECRET):
    port = free_port()
    node = nodes(name, args=["--webhook", f"127.0.0.1:{port}"],
                 env={"P2P_CACHE_WEBHOOK_SECRET": secret})
    return node, Hook(port)


def source(node, path: str) -> str:
    response = node.get(path)
    assert response.status_code == 200, (path, response.text)
    return response.headers["x-p2p-cache"]


# A dropped entry is asked of GitHub again: refetched, or revalidated (a free 304 when it
# did not change: docs/consistency.md), never served as it was.
ASKED_AGAIN = ("miss", "revalidated")


def test_a_signed_issue_comment_drops_the_issue_and_its_comments_and_nothing_else(nodes, fake):
    node, hook = webhook_node(nodes)
    repo_id = node.get(ROOT).json()["id"]
    alias = f"/repositories/{repo_id}/issues/{ISSUE}/comments"
    for path in (COMMENTS, ISSUE_PATH, README, alias):
        assert source(node, path) == "miss"
        assert source(node, path) == "hit"
    # The change the delivery announces: a comment, made straight on GitHub.
    made = httpx.post(fake.url + COMMENTS, json={"body": "from the web"},
                      headers={"authorization": f"token {FLEET_TOKEN}"})
    assert made.status_code == 201
    body = comment_payload(repo_id)

    # Forged: signed under another secret, signed over another body, unsigned. Nothing goes.
    for forged in (hook.deliver("issue_comment", body, signature=sign(body, "guess")),
                   hook.deliver("issue_comment", body, signature=sign(body + b" ")),
                   hook.deliver("issue_comment", body, signature=None)):
        assert forged.status_code == 401, forged.text
    assert all(source(node, p) == "hit" for p in (COMMENTS, ISSUE_PATH, README, alias))
    assert node.stats()["webhook_bad_signature"] == 3

    guid = str(uuid.uuid4())
    began = time.monotonic()
    applied = hook.deliver("issue_comment", body, guid=guid)
    answered_in = time.monotonic() - began
    assert applied.status_code == 200, applied.text
    assert applied.json()["outcome"] == "applied"
    wait_until(lambda: node.stats()["webhook_dropped"] >= 3, what="the drop applied")
    dropped = node.stats()["webhook_dropped"]
    asked = len(fake.request_log())
    assert source(node, COMMENTS) == "miss"  # the next GET reaches the fake...
    assert source(node, ISSUE_PATH) == "miss"
    assert source(node, alias) == "miss"  # ...under the repository-id spelling too
    assert len(fake.request_log()) == asked + 3
    assert node.get(COMMENTS).json()[-1]["body"] == "from the web"  # the new state
    # A comment moves no count of the repository: its other entries stay hits.
    assert source(node, README) == "hit"
    assert source(node, ROOT) == "hit"

    # The same delivery again (a redelivery, or a replay): 2xx, no second drop.
    again = hook.deliver("issue_comment", body, guid=guid)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    time.sleep(0.3)
    assert source(node, COMMENTS) == "hit"
    assert node.stats()["webhook_dropped"] == dropped

    ping = hook.deliver("ping", json.dumps({"zen": "Design for failure.",
                                            "hook_id": 292430182}).encode())
    assert ping.status_code == 200 and ping.json()["outcome"] == "ping"
    unknown = hook.deliver("gollum", body)
    assert unknown.status_code == 202 and unknown.json()["outcome"] == "ignored"
    stats = node.stats()
    assert {k: stats[k] for k in ("webhook_applied", "webhook_duplicate", "webhook_ping",
                                  "webhook_ignored", "webhook_bad_signature")} == {
        "webhook_applied": 1, "webhook_duplicate": 1, "webhook_ping": 1,
        "webhook_ignored": 1, "webhook_bad_signature": 3}
    metrics = node.get("/-/metrics").text
    assert "p2pcache_webhook_applied_total 1.0" in metrics
    assert stats["webhook"] == f"127.0.0.1:{hook.port}"
    shown = subprocess.run([sys.executable, "-m", "p2pcache", "stats", "--http",
                            f"127.0.0.1:{node.http_port}"], capture_output=True, text=True,
                           timeout=30)
    assert "Webhooks:           1 applied, 1 duplicate, 1 ignored, 3 bad signature (" \
        in shown.stdout, shown.stdout + shown.stderr
    print(f"a signed delivery answered in {answered_in * 1000:.1f} ms")
    assert SECRET not in node.log()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1


def signed_ping() -> bytes:
    body = b'{"zen": "Half measures are as bad as nothing at all.", "hook_id": 1}'
    return (b"POST /webhook HTTP/1.1\r\nHost: hooks.example\r\nX-GitHub-Event: ping\r\n"
            b"X-GitHub-Delivery: " + str(uuid.uuid4()).encode() + b"\r\n"
            b"X-Hub-Signature-256: " + sign(body).encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """One request and its whole answer (Content-Length framed) on a kept-alive socket."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            return data  # closed by the node: no (whole) answer
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def test_size_method_path_and_body_are_checked_before_anything_is_dropped(nodes, fake):
    node, hook = webhook_node(nodes)
    assert source(node, README) == "miss"
    # A terminator's kept-alive connection: one delivery now, the next after 10 s idle.
    kept = socket.create_connection(("127.0.0.1", hook.port), timeout=10)
    assert status_of(exchange(kept, signed_ping())) == 200
    # A connection that never finishes its request is closed after GitHub's 10 s.
    loris = socket.create_connection(("127.0.0.1", hook.port))
    loris.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\n"
                  b"Content-Length: 100\r\n\r\n{")
    opened = time.monotonic()

    # 26 MiB declared: 413 before the body is sent at all.
    began = time.monotonic()
    reply = raw(hook.port, b"POST /webhook HTTP/1.1\r\nHost: hooks.example\r\n"
                           b"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00\r\n"
                           b"Content-Length: 27262976\r\n\r\n")
    assert status_of(reply) == 413, reply
    assert time.monotonic() - began < 5
    # Chunked, so no length to judge: refused once it passes 25 MiB, not read to the end.
    with socket.create_connection(("127.0.0.1", hook.port), timeout=30) as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: hooks.example\r\nX-GitHub-Event: push\r\n"
                     b"X-Hub-Signature-256: sha256=00\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        sent = 0
        try:
            for _ in range(40):
                sock.sendall(chunk)
                sent += 1
        except OSError:
            pass  # the node answered and closed while we still sent
        reply = sock.recv(65536)
    assert status_of(reply) == 413, reply
    assert sent < 40
    assert node.stats()["webhook_too_large"] == 2

    assert status_of(raw(hook.port, b"GET /webhook HTTP/1.1\r\nHost: x\r\n\r\n")) == 405
    assert status_of(raw(hook.port, b"POST /other HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n")) == 404
    assert status_of(raw(hook.port, b"POST /webhook/../webhook HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n")) == 404
    assert status_of(raw(hook.port, b"NOT HTTP\r\n\r\n")) == 400

    not_json = hook.deliver("push", b"{not json")
    assert not_json.status_code == 400 and not_json.json()["outcome"] == "malformed"
    hostile = json.dumps({"repository": {"name": "..", "full_name": "x/..",
                                         "owner": {"login": "x"}}}).encode()
    assert hook.deliver("push", hostile).status_code == 400
    evil_name = json.dumps({"repository": {"name": REPO, "owner": {"login": "../../x"}}}).encode()
    assert hook.deliver("push", evil_name).status_code == 400
    assert node.stats()["webhook_malformed"] == 3
    assert source(node, README) == "hit"  # nothing was dropped by any of it

    # GitHub's other content type: the JSON in a `payload` form field, signed as sent.
    push = json.dumps({"ref": "refs/heads/main", "repository": {
        "id": 1, "name": REPO, "full_name": f"{OWNER}/{REPO}", "owner": {"login": OWNER}}})
    form = urlencode({"payload": push}).encode()
    headers = delivery_headers("push", form)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert hook.http.post(hook.url, content=form, headers=headers).status_code == 200
    wait_until(lambda: node.stats()["webhook_dropped"] >= 1, what="the push's drop")
    assert source(node, README) in ASKED_AGAIN

    loris.settimeout(max(0.5, opened + 13 - time.monotonic()))
    try:
        assert loris.recv(4096) == b"", "a request unfinished after 10 s got an answer"
    except ConnectionResetError:
        pass
    finally:
        loris.close()
    assert time.monotonic() - opened >= 9
    with kept:  # idle longer than a request may take, yet still open for the next one
        assert status_of(exchange(kept, signed_ping())) == 200
    assert "Traceback" not in node.log()


def test_a_flood_of_slow_and_large_connections_does_not_stop_a_good_delivery(nodes, fake):
    """Unsigned 25 MB bodies trickled in (read before they can be judged): memory stays
    bounded. Then slow-loris connections, three times the listener's cap, and a good
    delivery among them: answered within GitHub's 10 s, and applied."""
    node, hook = webhook_node(nodes)
    repo_id = node.get(ROOT).json()["id"]
    assert source(node, COMMENTS) == "miss"
    proc = psutil.Process(node.proc.pid)
    before = proc.memory_info().rss

    def slow_body(results: list[int]) -> None:
        try:
            with socket.create_connection(("127.0.0.1", hook.port), timeout=30) as sock:
                sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                             b"X-GitHub-Delivery: 1\r\nX-Hub-Signature-256: sha256=" + b"0" * 64
                             + b"\r\nContent-Length: 26214400\r\n\r\n")
                chunk = b"x" * (256 * 1024)
                for _ in range(100):
                    sock.sendall(chunk)
                    time.sleep(0.01)
                results.append(status_of(sock.recv(4096)))
        except OSError:
            results.append(-1)  # cut off by the node while we still sent: its limits at work

    results: list[int] = []
    bodies = [threading.Thread(target=slow_body, args=(results,)) for _ in range(12)]
    for t in bodies:
        t.start()
    peak = before
    while any(t.is_alive() for t in bodies):
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.02)
    growth = (peak - before) / 2**20
    assert len(results) == 12 and all(status in (401, 503, -1) for status in results), results
    assert 401 in results  # some were read whole, and judged
    assert growth < 200, f"bodies pinned {growth:.0f} MiB"

    loris = []
    for _ in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", hook.port), timeout=5)
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            loris.append(s)
        except OSError:
            pass
    try:
        time.sleep(0.5)
        body = comment_payload(repo_id)
        began = time.monotonic()
        good = httpx.post(hook.url, content=body, headers=delivery_headers("issue_comment", body),
                          timeout=10)
        answered_in = time.monotonic() - began
        assert good.status_code == 200, good.text
        assert answered_in < 10
        wait_until(lambda: node.stats()["webhook_dropped"] >= 1, what="the good drop")
    finally:
        for s in loris:
            s.close()
    print(f"12 trickled 25 MB unsigned bodies: {sorted(results)}, RSS growth {growth:.0f} MiB; "
          f"a good delivery among {len(loris)} slow-loris connections answered in "
          f"{answered_in * 1000:.0f} ms")
    assert source(node, COMMENTS) in ASKED_AGAIN
    assert node.get("/-/healthz").status_code == 200
    assert "Traceback" not in node.log()


def serve_once(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {"PATH": "/usr/bin:/bin", "GH_TOKEN": FLEET_TOKEN,
                "P2P_CACHE_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([sys.executable, "-m", "p2pcache", "serve", *args], env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_webhook_without_its_secret_is_one_line_and_exit_2(tmp_path: Path, how: str) -> None:
    args = ["--webhook", "127.0.0.1:9",] if how == "flag" else []
    env = {"P2P_CACHE_WEBHOOK": "127.0.0.1:9"} if how == "env" else {}
    result = serve_once(tmp_path, *args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "P2P_CACHE_WEBHOOK_SECRET" in lines[0], result.stderr
    bad = serve_once(tmp_path, env={"P2P_CACHE_WEBHOOK": "nowhere",
                                    "P2P_CACHE_WEBHOOK_SECRET": "s"})
    assert bad.returncode == 2 and "P2P_CACHE_WEBHOOK" in bad.stderr
    assert "Traceback" not in result.stderr + bad.stderr


def test_a_webhook_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once(tmp_path, "--webhook", f"127.0.0.1:{port}", env={
            "P2P_CACHE_WEBHOOK_SECRET": SECRET, "P2P_CACHE_PORT": str(free_port()),
            "P2P_CACHE_HTTP": f"127.0.0.1:{free_port()}", "P2P_CACHE_LISTEN_HOST": "127.0.0.1"})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"✗ cannot receive webhooks on 127.0.0.1:{port}: Address already in use" in output
    assert "Traceback" not in output and SECRET not in output


READER = "ghp_readertoken0000000000000000000000000"


def repository_payload(full: str, repo_id: int, **fields: object) -> bytes:
    owner, name = full.split("/")
    return json.dumps({**fields, "repository": {
        "id": repo_id, "name": name, "full_name": full, "owner": {"login": owner},
        "private": True}, "sender": {"login": "octocat"}}).encode()


def test_who_may_read_is_asked_again_after_github_says_it_changed(nodes, fake):
    """A collaborator removed (`member`), a repository made private (`repository`): the
    node's word on who may read it held for a freshness window; after the delivery each
    caller is checked again, and gets GitHub's own answer."""
    fake.add_token(READER, "reader")
    fake.make_private("octo/secret", readers=[FLEET_TOKEN, READER])
    node, hook = webhook_node(nodes)
    reader = {"authorization": f"Bearer {READER}"}
    private_path = "/repos/octo/secret/issues/1"
    assert node.get(private_path, headers=reader).status_code == 200
    fleet = {"authorization": f"Bearer {FLEET_TOKEN}"}
    secret_id = httpx.get(fake.url + "/repos/octo/secret", headers=fleet).json()["id"]
    public_path = "/repos/octo/open/issues/1"
    assert node.get(public_path).status_code == 200  # anonymous: the repository is public
    open_id = httpx.get(fake.url + "/repos/octo/open").json()["id"]

    fake.make_private("octo/secret", readers=[FLEET_TOKEN])  # the reader is removed
    fake.make_private("octo/open", readers=[FLEET_TOKEN])  # and this one goes private
    # Until GitHub says so, the node's last word holds (a freshness window at most).
    assert node.get(private_path, headers=reader).status_code == 200
    assert node.get(public_path).status_code == 200

    dropped = node.stats()["webhook_dropped"]
    removed = hook.deliver("member", repository_payload(
        "octo/secret", secret_id, action="removed", member={"login": "reader"}))
    privatized = hook.deliver("repository", repository_payload(
        "octo/open", open_id, action="privatized"))
    assert removed.status_code == privatized.status_code == 200, (removed.text, privatized.text)
    wait_until(lambda: node.stats()["webhook_dropped"] >= dropped + 2, what="both drops")
    assert node.get(private_path, headers=reader).status_code == 404
    assert node.get(public_path).status_code == 404
    # The fleet's own token still reads both, for the callers GitHub lets in.
    assert node.get(private_path, headers=fleet).status_code == 200
