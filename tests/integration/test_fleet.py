"""A fleet on loopback: one server node, runner nodes, and the fake GitHub API, each node a
real `p2pcache serve` process talking libp2p (TCP + Noise + Yamux) to the others."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from p2pcache.targets import parse

# Repository content and caller-independent answers: what the fleet shares (access.py).
PATHS = [f"/repos/fleet/repo/issues/{i}" for i in range(1, 11)] + [
    "/repos/fleet/repo/issues?per_page=30&page=2", "/repos/fleet/repo/pulls",
    "/repos/fleet/repo/commits", "/repos/fleet/other/branches/main", "/licenses/mit",
    "/gitignore/templates/Python"]
# Whether each repository is public: the fleet's view of it, asked once for the fleet.
ROOTS = ["/repos/fleet/repo", "/repos/fleet/other"]


def start_fleet(nodes, runners: int = 3, ttl: float = 60, server_env=None, **runner_kw):
    server = nodes("server", ttl=ttl, env=server_env)
    addr = server.multiaddr()
    fleet = [nodes(f"runner{i}", start=False, bootstrap=addr, ttl=ttl, **runner_kw)
             for i in range(runners)]
    for runner in fleet:
        runner.start(wait=False)
    for runner in fleet:
        runner.wait_ready()
        runner.wait_for_peers(1)
    return server, fleet


def get_all_at_once(runners, paths, rounds: int = 1) -> list[httpx.Response]:
    """Every runner asks every path at the same moment, from its own client threads."""
    barrier = threading.Barrier(len(runners) * len(paths) * rounds)

    def fetch(job):
        runner, path = job
        barrier.wait()
        return path, runner.get(path)

    jobs = [(r, p) for r in runners for p in paths] * rounds
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(fetch, jobs))


def direct(fake, path: str, like: httpx.Response | None = None) -> httpx.Response:
    """What GitHub itself answers (for comparing bodies); not counted by the tests. `like`:
    ask as the client of that answer did (its Host), since hypermedia URLs name it."""
    from conftest import FLEET_TOKEN

    headers = {"authorization": f"token {FLEET_TOKEN}"}
    if like is not None:
        headers["host"] = like.request.headers["host"]
    return httpx.get(fake.url + path, headers=headers)


def test_simultaneous_misses_reach_github_once_each(nodes, fake):
    server, runners = start_fleet(nodes, runners=3)
    fake.reset()
    results = get_all_at_once(runners, PATHS, rounds=2)

    assert all(r.status_code == 200 for _, r in results)
    by_path = fake.stats()["by_path"]
    # The node asks GitHub for the canonical target (query sorted), as it keys it.
    assert by_path == {str(parse(p)): 1 for p in PATHS + ROOTS}, \
        "each unique request must reach GitHub once"
    for path, response in results:
        assert response.content == direct(fake, path, like=response).content
        assert response.headers["x-p2p-cache"] in ("peer", "coalesced", "hit")
        assert response.headers["etag"] == direct(fake, path).headers["etag"]
    fake_now = fake.stats()

    runner_stats = [r.stats() for r in runners]
    answered = sum(s["peer_hits"] + s["coalesced"] + s["local_hits"] for s in runner_stats)
    assert answered == len(results)
    assert sum(s["misses"] for s in runner_stats) == 0
    assert sum(s["upstream_requests"] for s in runner_stats) == 0
    assert all(s["peer_hits"] >= 1 for s in runner_stats)
    server_stats = server.stats()
    assert server_stats["upstream_requests"] == len(PATHS) + len(ROOTS)
    assert server_stats["connected_peers"] == 3

    # A second wave is answered from each runner's own store: nothing new reaches GitHub.
    again = get_all_at_once(runners, PATHS)
    assert {r.headers["x-p2p-cache"] for _, r in again} == {"hit"}
    assert fake.stats()["requests"] == fake_now["requests"]
    assert "✓ Connected to peer: " in server.log()
    for runner in runners:
        log = runner.log()
        assert "Connecting to 1 bootstrap peer(s)..." in log
        assert "✓ Connected to bootstrap peer" in log
        assert "✓ P2P host started, listening on port" in log


def test_stale_entries_are_revalidated_with_free_304s(nodes, fake):
    # Clients revalidating stale entries themselves: refresh-ahead (test_refresh.py) would
    # revalidate these hot entries before they went stale.
    server, runners = start_fleet(nodes, runners=2, ttl=1,
                                  server_env={"P2P_CACHE_REFRESH_AHEAD": "0"})
    paths = PATHS[:6]  # in one repository, whose fleet view is one more entry
    get_all_at_once(runners, paths)
    units_after_fill = fake.stats()["units"]
    assert units_after_fill == len(paths) + 1

    time.sleep(1.3)  # past the freshness window
    fake.mutate(paths[0])  # one resource changed meanwhile: it must come back new
    results = get_all_at_once(runners, paths)
    stats = fake.stats()
    assert stats["not_modified"] == len(paths), "one revalidation per unchanged entry"
    assert stats["units"] == units_after_fill + 1, "304s are free; only the change costs"
    revalidations = [e for e in fake.request_log()[-len(paths) - 1:] if e["if_none_match"]]
    assert len(revalidations) == len(paths) + 1, "every stale entry was asked with its ETag"
    for path, response in results:
        assert response.status_code == 200
        assert response.content == direct(fake, path, like=response).content
    assert server.stats()["not_modified"] == len(paths)


def test_wrong_secret_gets_github_answers_but_no_peer_hits(nodes, fake):
    server = nodes("server")
    intruder = nodes("intruder", bootstrap=server.multiaddr(),
                     env={"P2P_CACHE_SECRET": "not-the-fleet-secret"})
    # libp2p connects (only the cache protocol is sealed); the server refuses the sealed ping
    intruder.wait_for_log("did not answer a message sealed with our fleet key")
    server.get(PATHS[0])  # the server holds an entry the intruder would like

    for path in PATHS[:4]:
        response = intruder.get(path)
        assert response.status_code == 200
        assert response.content == direct(fake, path, like=response).content
        assert response.headers["x-p2p-cache"] == "miss"
    stats = intruder.stats()
    assert stats["peer_hits"] == 0
    assert stats["upstream_requests"] == 4 + 1  # and the repository's visibility
    server_stats = server.stats()
    assert server_stats["auth_failures"] >= 1
    assert server_stats["peer_requests_served"] == 0
    server.wait_for_log("failed authentication")
    assert server.log().count("failed authentication") == 1, "logged once per peer"
    assert "closed our cache stream without answering" in intruder.log()
    # Connected is not joined: no "✓ Connected to bootstrap peer", but why, and the summary
    # says so too (issue 19: no "Connected peers 1" with no warning).
    assert "✓ Connected to bootstrap peer" not in intruder.log()
    stats = intruder.stats()
    assert stats["connected_peers"] == 1 and stats["fleet_servers"] == 0
    assert stats["unsealed_servers"] == 1
    from p2pcache.actions import summary_markdown

    text = summary_markdown(stats, 9000)
    assert "| Connected servers (same fleet key) | 0 |" in text
    assert "does not answer its fleet key" in text


def test_killing_the_server_mid_run_loses_no_client_request(nodes, fake):
    server, (runner,) = start_fleet(nodes, runners=1)
    fake.set_latency(5)
    errors: list[str] = []
    statuses: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        with httpx.Client(base_url=runner.url, timeout=30) as http:
            while not stop.is_set():
                path = f"/repos/churn/r/contents/{n}-{i}"  # always new: a peer or GitHub
                i += 1
                try:
                    response = http.get(path)
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {exc!r}")
                    continue
                if response.status_code != 200:
                    errors.append(f"{path}: {response.status_code}")
                statuses.append(response.headers["x-p2p-cache"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.kill()  # SIGKILL: no goodbye on the wire
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert "peer" in statuses and "miss" in statuses
    assert runner.stats()["misses"] > 0  # answered by GitHub directly once the server died
    runner.wait_for_log("Lost connection to bootstrap peer")

    # The server comes back with its identity: the runner redials and peer hits resume.
    server.start()
    runner.wait_for_log("✓ Connected to bootstrap peer", count=2, timeout=40)
    before = runner.stats()["peer_hits"]
    assert runner.get("/repos/churn/r/pulls").headers["x-p2p-cache"] == "peer"
    assert runner.stats()["peer_hits"] == before + 1


def test_restart_keeps_peer_id_and_cache(nodes, fake):
    node = nodes("solo")
    peer_id = node.stats()["peer_id"]
    addr = node.multiaddr()
    assert node.get("/repos/keep/me/commits").headers["x-p2p-cache"] == "miss"
    assert node.stop() == 0
    assert "Stopped; cache store closed" in node.log()

    node.start()
    assert node.stats()["peer_id"] == peer_id
    assert node.multiaddr() == addr
    # Kept, and revalidated once (what changed while the node was down, it never heard
    # of): free 304s, not units.
    units = fake.stats()["units"]
    assert node.get("/repos/keep/me/commits").headers["x-p2p-cache"] == "revalidated"
    assert node.get("/repos/keep/me/commits").headers["x-p2p-cache"] == "hit"
    assert fake.stats()["units"] == units

    node.get("/repos/keep/me/pulls")
    node.kill()  # kill -9 right after a write: WAL keeps every committed entry
    node.start()
    units = fake.stats()["units"]
    assert node.get("/repos/keep/me/pulls").headers["x-p2p-cache"] == "revalidated"
    assert fake.stats()["by_path"]["/repos/keep/me/pulls"] == 2
    assert fake.stats()["units"] == units, "the second ask was a free 304"
    key = node.data_dir / "identity.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_dead_bootstrap_peer_does_not_stop_a_runner(nodes, fake, tmp_path):
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    from conftest import free_port

    ghost = ID.from_pubkey(create_new_key_pair().public_key)
    dead = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{ghost}"
    runner = nodes("runner", bootstrap=f"not-a-multiaddr, {dead}",
                   env={"P2P_CACHE_PEER_TIMEOUT": "1"})
    log = runner.log()
    assert "⚠️  Ignoring bootstrap peer 'not-a-multiaddr'" in log
    runner.wait_for_log("Could not connect to bootstrap peer")
    response = runner.get("/repos/o/r")
    assert response.status_code == 200
    assert response.headers["x-p2p-cache"] == "miss"
    assert runner.stats()["bootstrap_peers"] == [dead]


def test_get_global_cache_reports_the_running_node(nodes):
    import subprocess
    import sys

    node = nodes("server")
    code = ("import json; from p2pcache import get_global_cache; "
            "print(json.dumps(get_global_cache().get_stats()))")
    out = subprocess.run([sys.executable, "-c", code], env=node.env, capture_output=True,
                         text=True, check=True).stdout
    stats = json.loads(out)
    for key in ("peer_id", "p2p_enabled", "connected_peers", "hit_rate", "api_calls_saved",
                "peer_hits", "local_hits", "misses", "upstream_requests", "not_modified",
                "coalesced", "entries", "bytes", "rate_limit_remaining", "listen_addrs",
                "bootstrap_multiaddr"):
        assert key in stats, key
    assert stats["peer_id"] == node.stats()["peer_id"]
    assert stats["p2p_enabled"] is True
    assert stats["bootstrap_multiaddr"].endswith("/p2p/" + stats["peer_id"])


def test_a_server_cut_off_from_github_lets_runners_ask_themselves(nodes, fake):
    from conftest import free_port

    server = nodes("server", upstream=f"http://127.0.0.1:{free_port()}")  # nothing there
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)
    response = runner.get("/repos/cut/off/commits")
    assert response.status_code == 200
    assert response.headers["x-p2p-cache"] == "miss"
    assert response.content == direct(fake, "/repos/cut/off/commits", like=response).content
    assert runner.stats()["peer_failures"] == 2  # the repository's visibility, then the path
    assert server.get("/repos/cut/off/commits").status_code == 502  # its own clients: why


def test_a_silently_vanished_server_is_dropped_by_liveness_pings(nodes, fake):
    """SIGSTOP: the server's sockets stay open but nothing answers (a machine gone dark)."""
    import signal

    server, (runner,) = start_fleet(nodes, runners=1, env={"P2P_CACHE_PEER_SILENCE": "4"})
    server.proc.send_signal(signal.SIGSTOP)
    try:
        runner.wait_for_log("stopped answering pings; disconnecting", timeout=30)
        started = time.monotonic()
        response = runner.get("/repos/dark/server/commits")
        assert response.status_code == 200 and response.headers["x-p2p-cache"] == "miss"
        assert time.monotonic() - started < 2, "no wait for the peer timeout once dropped"
    finally:
        server.proc.send_signal(signal.SIGCONT)
    runner.wait_for_log("✓ Connected to bootstrap peer", count=2, timeout=60)


def test_a_busy_server_is_waited_for_while_a_silent_one_is_not(nodes, fake):
    """The peer timeout counts the server's silence, not the ask's age: an answer queued
    behind others that keep arriving is waited for (the fleet still asks GitHub once); a
    server that says nothing for the timeout is given up on, and the runner asks itself."""
    import itertools
    import threading

    server = nodes("server")
    runner = nodes("runner", bootstrap=server.multiaddr(), env={"P2P_CACHE_PEER_TIMEOUT": "1"})
    runner.wait_for_peers(1)
    fake.path_latency_ms["/repos/busy/r/contents/slow"] = 3000
    fake.path_latency_ms["/repos/busy/r/contents/slow-alone"] = 3000
    runner.get("/repos/busy/r/commits")  # the repository's visibility, known from now on

    stop = threading.Event()

    def keep_the_channel_talking() -> None:  # new paths: each one the server answers
        for n in itertools.count():
            if stop.is_set():
                return
            runner.http.get(f"/repos/busy/r/contents/other{n}")

    talker = threading.Thread(target=keep_the_channel_talking, daemon=True)
    talker.start()
    try:
        slow = runner.get("/repos/busy/r/contents/slow")
    finally:
        stop.set()
        talker.join()
    assert slow.status_code == 200 and slow.headers["x-p2p-cache"] == "peer"
    assert [e["path"] for e in fake.request_log()].count("/repos/busy/r/contents/slow") == 1

    alone = runner.get("/repos/busy/r/contents/slow-alone")  # nothing else on the channel: silence
    assert alone.status_code == 200 and alone.headers["x-p2p-cache"] == "miss"
    assert runner.stats()["peer_failures"] >= 1
