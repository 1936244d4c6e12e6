"""The local HTTP API answers as GitHub would, through the cache, and explains each answer."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import FLEET_TOKEN


def test_answers_as_github_does_and_says_where_from(nodes, fake):
    node = nodes("solo")
    first = node.get("/repos/octo/hello/issues/1")
    second = node.get("/repos/octo/hello/issues/1")
    github = httpx.get(fake.url + "/repos/octo/hello/issues/1",
                       headers={"authorization": f"token {FLEET_TOKEN}"})
    assert first.status_code == second.status_code == 200
    # GitHub names the host its client used in hypermedia URLs; the node names itself.
    as_seen = httpx.get(fake.url + "/repos/octo/hello/issues/1", headers={
        "authorization": f"token {FLEET_TOKEN}", "host": f"127.0.0.1:{node.http_port}"})
    assert first.content == second.content == as_seen.content
    assert first.headers["etag"] == second.headers["etag"] == github.headers["etag"]
    assert first.headers["content-type"] == github.headers["content-type"]
    assert first.headers["x-p2p-cache"] == "miss"
    assert second.headers["x-p2p-cache"] == "hit"
    # A hit still tells the client how much rate limit is left (as last seen).
    assert int(second.headers["x-ratelimit-remaining"]) <= 5000
    assert second.headers["x-ratelimit-limit"] == "5000"

    head = node.http.head("/repos/octo/hello/issues/1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == first.headers["etag"]
    assert head.headers["content-length"] == str(len(first.content))

    # Query order does not split entries.
    node.get("/repos/octo/hello/issues?per_page=10&page=2")
    swapped = node.get("/repos/octo/hello/issues?page=2&per_page=10")
    assert swapped.headers["x-p2p-cache"] == "hit"


def test_link_headers_point_back_at_the_node_so_paging_stays_cached(nodes, fake):
    node = nodes("solo")
    url = "/repos/octo/hello/issues?per_page=30"
    pages, visited = [], []
    while url:
        response = node.get(url)
        assert response.status_code == 200
        pages.append(response.json())
        visited.append(url)
        links = response.links
        assert all(link["url"].startswith(node.url) for link in links.values())
        url = links.get("next", {}).get("url", "").removeprefix(node.url) or None
    assert [len(p) for p in pages] == [30, 30, 30, 5]
    upstream = fake.stats()["requests"]
    # GitHub's Links name later pages as /repositories/<id>/issues?...; following them again hits.
    assert visited[2].startswith("/repositories/")
    assert node.get(visited[2]).headers["x-p2p-cache"] == "hit"
    assert fake.stats()["requests"] == upstream


def test_writes_pass_through_and_drop_what_they_change(nodes, fake):
    node = nodes("solo")
    before = node.get("/repos/octo/hello/issues/1").json()
    assert node.get("/repos/octo/hello/issues/1").headers["x-p2p-cache"] == "hit"
    node.get("/repos/octo/hello/issues")

    auth = {"authorization": f"token {FLEET_TOKEN}"}
    patch = node.http.patch("/repos/octo/hello/issues/1", json={"title": "new"}, headers=auth)
    assert patch.status_code == 200
    assert patch.headers["x-p2p-cache"] == "miss"
    after = node.get("/repos/octo/hello/issues/1")
    assert after.headers["x-p2p-cache"] == "miss", "the write dropped the cached issue"
    assert after.json() != before
    assert node.get("/repos/octo/hello/issues").headers["x-p2p-cache"] == "miss"
    assert node.stats()["invalidated"] >= 2

    graphql = node.http.post("/graphql", json={"query": "{ viewer { login } }"}, headers=auth)
    assert graphql.status_code == 200 and "data" in graphql.json()
    assert fake.stats()["methods"]["POST"] == 1
    assert node.stats()["passthrough"] == 2


def test_writes_and_graphql_carry_only_the_clients_credentials(nodes, fake):
    """Any local process can reach the API: without a token of its own, a write must not
    go out as the node (GitHub answers 401), unless the operator lends the token."""
    node = nodes("solo")
    anonymous = node.http.patch("/repos/octo/hello/issues/1", json={"title": "x"})
    assert anonymous.status_code == 401
    assert node.http.post("/graphql", json={"query": "{ viewer { login } }"}).status_code == 401
    assert node.stats()["invalidated"] == 0, "a refused write changes nothing"

    lent = nodes("lender", args=["--lend-token"])
    lent_patch = lent.http.patch("/repos/octo/hello/issues/1", json={"title": "x"})
    assert lent_patch.status_code == 200 and lent_patch.json()["title"] == "x"


def test_github_errors_are_passed_on_and_never_cached(nodes, fake):
    node = nodes("solo")
    bad = {"authorization": "token ghp_revoked"}
    for _ in range(2):
        response = node.get("/repos/octo/private/issues/1", headers=bad)
        assert response.status_code == 401
        assert response.json()["message"] == "Bad credentials"
    assert fake.stats()["by_path"]["/repos/octo/private/issues/1"] == 2, "401s are not cached"

    healthy = nodes("healthy")
    fake.fail(503, count=1)
    assert healthy.get("/repos/octo/flaky").status_code == 503
    assert healthy.get("/repos/octo/flaky").status_code == 200, "5xx was not cached"
    assert healthy.get("/repos/octo/missing-repo").status_code == 404


def test_stale_entry_answers_when_github_fails_or_limits(nodes, fake):
    # Refresh-ahead off: it would keep this twice-asked entry fresh (test_refresh.py).
    node = nodes("solo", ttl=0.5, env={"P2P_CACHE_REFRESH_AHEAD": "0"})
    fresh = node.get("/repos/octo/stale/commits")
    time.sleep(0.7)
    fake.fail(502, count=1, path="/repos/octo/stale/commits")
    stale = node.get("/repos/octo/stale/commits")
    assert stale.status_code == 200 and stale.content == fresh.content
    assert stale.headers["x-p2p-cache-stale"] == "true"

    # A secondary rate limit with Retry-After: the client sees GitHub's answer once, then
    # the node holds further upstream requests until the time is up.
    time.sleep(0.7)
    fake.fail(429, count=1, retry_after=30, path="/repos/octo/stale/issues")
    limited = node.get("/repos/octo/stale/issues")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "30"
    sent = fake.stats()["requests"]
    held = node.get("/repos/octo/stale/pulls")
    assert held.status_code == 429, "GitHub's answer, repeated without asking again"
    assert node.get("/repos/octo/stale/commits").headers["x-p2p-cache-stale"] == "true"
    assert fake.stats()["requests"] == sent
    assert node.stats()["stale_served"] == 2


def test_own_endpoints(nodes, fake):
    node = nodes("solo")
    node.get("/users/octocat")
    assert node.get("/-/healthz").json()["status"] == "ok"
    text = node.get("/-/multiaddr").text
    first = text.splitlines()[0]
    assert first.startswith("/ip4/127.0.0.1/tcp/") and first.endswith(node.stats()["peer_id"])
    assert (node.data_dir / "multiaddr").read_text().strip() == first
    assert node.get("/-/peers").json() == []
    metrics = {m.name: m for m in text_string_to_metric_families(node.get("/-/metrics").text)}
    assert metrics["p2pcache_misses"].samples[0].value == 1
    assert metrics["p2pcache_p2p_enabled"].samples[0].value == 1
    assert node.get("/-/nope").status_code == 404
    assert node.http.post("/-/stats").status_code == 405


def test_malformed_http_gets_400_and_the_node_serves_on(nodes):
    import socket

    node = nodes("solo")
    with socket.create_connection(("127.0.0.1", node.http_port)) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert node.get("/-/healthz").status_code == 200


def test_a_full_disk_loses_no_answer(nodes, fake, tmp_path):
    """The data dir on a 2 MiB tmpfs, then filled: answers keep coming, uncached."""
    import os
    import subprocess

    from conftest import require

    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)]).returncode == 0
    require(mounted, "needs root and tmpfs mounts to make a small, fillable disk")
    try:
        node = nodes("cramped", start=False)
        node.data_dir = mountpoint / "data"
        node.env["P2P_CACHE_DATA_DIR"] = str(node.data_dir)
        node.start()
        assert node.get("/repos/disk/before").headers["x-p2p-cache"] == "miss"
        with open(mountpoint / "filler", "wb") as filler:  # take every free byte
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        big = [node.get(f"/repos/disk/r{i}/commits?per_page=100") for i in range(30)]
        assert all(r.status_code == 200 for r in big)
        assert node.stats()["store_errors"] > 0
        node.wait_for_log("Cache store write failed, answering uncached")
        assert node.get("/repos/disk/before").headers["x-p2p-cache"] == "hit"
        assert node.get("/-/healthz").status_code == 200
        node.stop()
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)])


def test_web_pages_cannot_spend_the_token(nodes, fake):
    node = nodes("solo")
    cross_site = node.http.post("/repos/o/r/issues", json={"title": "x"},
                                headers={"origin": "https://evil.example"})
    assert cross_site.status_code == 403
    rebound = node.get("/repos/o/r", headers={"host": f"evil.example:{node.http_port}"})
    assert rebound.status_code == 403
    assert node.http.request("OPTIONS", "/repos/o/r").status_code == 405
    assert fake.stats()["requests"] == 0
    assert node.get("/repos/o/r", headers={"host": f"localhost:{node.http_port}"}).status_code == 200
    store = node.data_dir / "cache.sqlite3"
    assert store.stat().st_mode & 0o777 == 0o600


def test_unix_socket_serves_the_same_api_to_the_upstreams_host_name(nodes, fake, tmp_path):
    """gh's `http_unix_socket` sends `Host: api.github.com` over the socket: the node answers
    it as GitHub, pointing URLs at https://api.github.com (what gh believes it talks to)."""
    import stat as stat_mod

    sock = tmp_path / "api.sock"
    node = nodes("socket", args=["--unix-socket", str(sock)])
    assert stat_mod.S_IMODE(sock.stat().st_mode) == 0o600
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                      base_url="http://api.github.com") as gh:  # plain HTTP, as gh speaks
        first = gh.get("/repos/octo/hello/issues?per_page=30")
        again = gh.get("/api/v3/repos/octo/hello/issues?per_page=30")
    assert first.status_code == 200 and first.headers["x-p2p-cache"] == "miss"
    assert again.headers["x-p2p-cache"] == "hit"
    assert all(link["url"].startswith("https://api.github.com/")
               for link in first.links.values()), first.headers["link"]
    assert fake.url.encode() not in first.content
    # Over TCP the same entry points at the node.
    tcp = node.get("/repos/octo/hello/issues?per_page=30")
    assert tcp.headers["x-p2p-cache"] == "hit"
    assert all(link["url"].startswith(node.url) for link in tcp.links.values())
    node.stop()
    assert not sock.exists(), "the socket is removed at exit"


def test_answers_keep_the_headers_clients_use(nodes, fake):
    node = nodes("solo")
    # This client sends no token: GitHub's answer is the anonymous one (Cache-Control
    # `public`), though the node fetched it with its own (`private`).
    direct = httpx.get(fake.url + "/repos/octo/headers/commits")
    fetched = httpx.get(fake.url + "/repos/octo/headers/commits",
                        headers={"authorization": f"token {FLEET_TOKEN}"})
    assert fetched.headers["cache-control"].startswith("private")
    miss = node.get("/repos/octo/headers/commits")
    hit = node.get("/repos/octo/headers/commits")
    for name in ("cache-control", "vary", "server", "x-github-media-type", "last-modified",
                 "content-type"):
        assert name in direct.headers
        assert miss.headers[name] == hit.headers[name] == direct.headers[name], name
    # GitHub's ETags are the asking token's: a shared entry's is the fleet token's, a
    # validator the node answers itself (a client's If-None-Match is matched against it).
    assert miss.headers["etag"] == hit.headers["etag"] == fetched.headers["etag"]
    assert node.get("/repos/octo/headers/commits",
                    headers={"if-none-match": hit.headers["etag"]}).status_code == 304
    assert "x-oauth-scopes" in fetched.headers and "x-oauth-scopes" not in hit.headers
    assert miss.headers["x-github-request-id"] and "date" in hit.headers
    assert hit.headers["x-github-request-id"] == miss.headers["x-github-request-id"]
    assert miss.headers["x-github-request-id"] != direct.headers["x-github-request-id"]
    # Errors are GitHub's own answer, request id included.
    missing = node.get("/repos/octo/missing-repo")
    assert missing.status_code == 404 and missing.headers["x-github-request-id"]


def test_a_client_with_its_own_token_is_not_held_to_the_fleets_view(nodes, fake):
    """The node's token sees nothing here (GitHub says 401): a client that brought its own
    credentials gets what they see, and an anonymous one GitHub's anonymous answer; the
    fleet is not asked again while it is known to be refused."""
    node = nodes("weak", env={"GH_TOKEN": "ghp_revoked"})
    mine = {"authorization": f"token {FLEET_TOKEN}"}
    for _ in range(2):
        answer = node.get("/repos/octo/mine/commits", headers=mine)
        assert answer.status_code == 200 and len(answer.json()) == 30
    assert node.get("/repos/octo/mine/commits").status_code == 200, "anonymous: public data"
    stats = node.stats()
    assert stats["fleet_blind_requests"] == 2  # the first: its own answer, then a local hit
    assert stats["peer_hits"] == 0 and stats["api_calls_saved"] == 1
    log = [(e["path"], e["login"]) for e in fake.request_log()]
    assert log.count(("/repos/octo/mine", "bad credentials")) == 1, "asked once a window"
    assert ("/repos/octo/mine/commits", "anonymous") in log


def test_a_second_node_on_a_live_unix_socket_refuses_and_leaves_it_alone(nodes, tmp_path):
    """Issue 21, finding 10: a node does not unlink a live node's socket; only a dead one
    (its node killed) is replaced."""
    sock = tmp_path / "api.sock"
    first = nodes("first", args=["--unix-socket", str(sock)])
    second = nodes("second", start=False, args=["--unix-socket", str(sock)])
    second.start(wait=False)
    assert second.proc.wait(60) == 2
    said = second.log().strip()
    assert said.count("\n") == 0 and "a live node already answers there" in said, said

    def answers() -> int:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                          base_url="http://localhost") as client:
            return client.get("/-/healthz").status_code

    assert answers() == 200
    assert first.stats()["peer_id"] and first.proc.poll() is None
    first.kill()  # kill -9 leaves its socket behind: dead, so in nobody's way
    assert sock.is_socket()
    nodes("third", args=["--unix-socket", str(sock)])
    assert answers() == 200


def test_serve_unix_binds_over_a_dead_socket_only(tmp_path):
    """The listener itself never unlinks a live socket, even when a second node got past
    the start-up check (two nodes starting at once): it binds first, and replaces only a
    socket that refuses connections."""
    import socket as socket_mod

    import pytest
    import trio

    from p2pcache import http_api

    path = tmp_path / "api.sock"
    live = socket_mod.socket(socket_mod.AF_UNIX)
    live.bind(str(path))
    live.listen(1)

    async def serve_once() -> None:
        with trio.fail_after(10):
            await http_api.serve_unix(path, None, None, http_api.Limits())  # type: ignore

    with pytest.raises(OSError):
        trio.run(serve_once)
    assert path.is_socket() and live.getsockname() == str(path)
    probe = socket_mod.socket(socket_mod.AF_UNIX)
    probe.connect(str(path))  # still the live listener's
    probe.close()
    live.close()  # now dead: the next listener replaces it

    async def serve_and_stop() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(http_api.serve_unix, path, None, None, http_api.Limits())
            nursery.cancel_scope.cancel()

    trio.run(serve_and_stop)
