"""GitHub's secondary limits hold fleet-wide (issue 22, item 3), on real nodes against the
fake GitHub enforcing them (tests/fakegithub.py: requests in flight per credential, points
a minute per endpoint; lowered here so that they bite on loopback).

The server and the runners hold different tokens (and one fleet secret), so the fake's
request log says whose budget each request spent. The paths are repository content, the
fleet's to share (access.py): a runner's client asks them without a token, its node looks
the repository up once through the server (whether it is public) and then asks the server
for each path.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import trio
from hostile import peer_host

from conftest import FLEET_TOKEN, NAMESPACE, wait_until
from p2pcache.crypto import Sealer, derive_key
from p2pcache.protocol import (PROTOCOL_ID, REQUEST, FrameDecoder, Message, ReplayGuard,
                               open_frame, seal)

RUNNER_TOKEN = "ghp_runnertoken000000000000000000000000"
SECRET = "fleet-secret-for-the-limits-tests"
FLEET = {"P2P_CACHE_SECRET": SECRET}
SERVER, RUNNER = "fleet-server", "runner-job"  # the logins the fake gives the two tokens


def fleet(nodes, fake, runners: int = 1, server_env: dict[str, str] | None = None,
          runner_env: dict[str, str] | None = None):
    """A server node with the fleet token and runner nodes with a token of their own."""
    fake.add_token(FLEET_TOKEN, SERVER)
    fake.add_token(RUNNER_TOKEN, RUNNER)
    server = nodes("server", env={**FLEET, **(server_env or {})})
    started = [nodes(f"runner{i}", bootstrap=server.multiaddr(),
                     env={**FLEET, "GH_TOKEN": RUNNER_TOKEN, **(runner_env or {})})
               for i in range(runners)]
    for runner in started:
        runner.wait_for_peers(1)
    return server, started


REPOS = 40


def spread(count: int) -> list[str]:
    """`count` distinct paths a fleet's jobs ask, repository content over five REST
    endpoints (so that none goes past GitHub's 900 points a minute for one endpoint)."""
    kinds = ("issues", "pulls", "branches", "labels", "milestones")
    return [f"/repos/acme/repo{n % REPOS}/{kinds[i % len(kinds)]}/{1 + n // REPOS}"
            for i, n in ((i, i // len(kinds)) for i in range(count))]


def test_20_clients_asking_2000_paths_cold_stay_within_githubs_limits(nodes, fake):
    """20 concurrent clients (4 in flight each) spread over 4 runner nodes, one server:
    80 misses at once reach the server, which keeps 25 in flight to GitHub (the default)
    while the fake refuses past 30 per token."""
    fake.set_limits(max_concurrent=30)
    fake.set_latency(150)  # so that 80 asks at once would be 80 in flight without the cap
    server, runners = fleet(nodes, fake, runners=4, runner_env={"P2P_CACHE_PEER_TIMEOUT": "30"})
    paths = spread(2000)
    clients = [httpx.Client(base_url=runners[i % len(runners)].url, timeout=60)
               for i in range(20)]
    fake.reset()
    try:
        with ThreadPoolExecutor(80) as pool:
            statuses = list(pool.map(lambda ip: clients[ip[0] % 20].get(ip[1]).status_code,
                                     enumerate(paths)))
    finally:
        for client in clients:
            client.close()
    stats = fake.stats()
    assert stats["secondary_limited"] == {}, f"GitHub refused: {stats['secondary_limited']}"
    assert statuses == [200] * len(paths)
    assert stats["max_in_flight"][SERVER] <= 25, stats["max_in_flight"]
    assert RUNNER not in stats["max_in_flight"], "every miss went through the server"
    assert stats["units"] == len(paths) + REPOS, "each path, and each repository, once"
    served = server.stats()
    assert served["upstream_in_flight_max"] <= 25 and served["upstream_concurrency"] == 25
    assert served["upstream_waited"] > 0, "the demand went past the cap: the queue held it"
    assert served["upstream_in_flight"] == served["upstream_queued"] == 0
    assert served["upstream_paused"] == 0
    metrics = server.get("/-/metrics").text
    assert "p2pcache_upstream_in_flight_max 25.0" in metrics
    assert f"p2pcache_upstream_waited_total {float(served['upstream_waited'])}" in metrics


def test_a_secondary_limit_pauses_the_servers_token_and_runners_use_their_own(nodes, fake):
    # No warm start: the runner asks the server for what it holds, as a later job would.
    server, [runner] = fleet(nodes, fake, runner_env={"P2P_CACHE_WARM_START": "0"})
    server.get("/repos/o/r/issues/9")  # fresh on the server throughout

    def asked(path: str) -> list[tuple[str, int]]:
        return [(e["login"], e["status"]) for e in fake.request_log() if e["path"] == path]

    assert runner.get("/repos/o/r/issues/1").headers["x-p2p-cache"] == "peer"
    assert asked("/repos/o/r/issues/1") == [(SERVER, 200)]
    assert asked("/repos/o/r") == [(SERVER, 200)], "the repository's view, for the fleet"

    fake.fail(403, count=1, retry_after=8)  # GitHub's secondary limit, with retry-after
    refused_at = time.monotonic()
    first = runner.get("/repos/o/r/issues/2")
    assert first.status_code == 200 and first.headers["x-p2p-cache"] == "miss"
    assert asked("/repos/o/r/issues/2") == [(SERVER, 403), (RUNNER, 200)], \
        "the server's refusal made the runner ask with its own token at once"
    during = runner.get("/repos/o/r/issues/3")
    assert during.status_code == 200 and during.headers["x-p2p-cache"] == "miss"
    assert asked("/repos/o/r/issues/3") == [(RUNNER, 200)], "the paused server asked nothing"
    held = runner.get("/repos/o/r/issues/9")
    assert held.status_code == 200 and held.headers["x-p2p-cache"] == "peer", \
        "what the server holds fresh is still answered"
    assert asked("/repos/o/r/issues/9") == [(SERVER, 200)]
    # The server's own clients get GitHub's refusal, its seconds counting down.
    local = server.get("/repos/o/r/issues/4")
    assert local.status_code == 403 and "secondary rate limit" in local.json()["message"]
    assert 1 <= int(local.headers["retry-after"]) <= 8
    assert asked("/repos/o/r/issues/4") == []
    assert time.monotonic() - refused_at < 8, "the checks above ran within the pause"

    stats = server.stats()
    assert stats["upstream_paused"] == 1 and stats["peer_requests_paused"] == 2
    assert 0 < stats["upstream_paused_s"] <= 8
    assert runner.stats()["peer_paused_answers"] == 2
    runner.wait_for_log("is paused by GitHub's rate limit")
    server.wait_for_log("holding upstream requests for 8 s (the node's token)")

    # After retry-after the server asks GitHub again, for the fleet.
    wait_until(lambda: server.stats()["upstream_paused_s"] == 0, timeout=15,
               what="the pause to end")
    after = runner.get("/repos/o/r/issues/5")
    assert after.status_code == 200 and after.headers["x-p2p-cache"] == "peer"
    assert asked("/repos/o/r/issues/5") == [(SERVER, 200)]
    assert runner.stats()["peer_paused_answers"] == 2


# -- hostile: a peer that floods the server ------------------------------------------------

FLOOD = 400  # requests, on 8 streams (a peer's most) of 50 each
CAP = 4


class Flood(threading.Thread):
    """A key holder's libp2p host asking the server for FLOOD distinct paths at once."""

    def __init__(self, server_addr: str) -> None:
        super().__init__(daemon=True)
        self.addr = server_addr
        self.answered = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._flood)
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _flood(self) -> None:
        sealer = Sealer(derive_key(SECRET, NAMESPACE))
        async with peer_host(self.addr) as host:
            async with trio.open_nursery() as nursery:
                for s in range(8):
                    stream = await host.new_stream(host.target, [PROTOCOL_ID])
                    nursery.start_soon(self._stream, stream, sealer, s)

    async def _stream(self, stream, sealer: Sealer, s: int) -> None:
        per_stream = FLOOD // 8
        keys = {}
        for i in range(1, per_stream + 1):
            path = f"/repos/flood/repo{s * per_stream + i}"
            keys[i] = f"GET {path} accept=application/vnd.github+json"
            meta = {"key": keys[i], "method": "GET", "path": path, "headers": {}}
            await stream.write(seal(sealer, REQUEST, i, Message(meta)).encode())
        decoder, guard = FrameDecoder(), ReplayGuard()
        with trio.fail_after(120):
            got = 0
            while got < per_stream:
                data = await stream.read(65536)
                if not data:
                    raise AssertionError("the server closed a flood stream")
                for frame in decoder.feed(data):
                    message = open_frame(sealer, frame, guard, keys[frame.request_id])
                    assert message.meta.get("status") == 200, message.meta
                    got += 1
                    self.answered += 1


def test_a_flooding_peer_cannot_make_the_server_hold_more_than_n_in_flight(nodes, fake):
    fake.set_latency(100)
    server, [runner] = fleet(nodes, fake, server_env={"P2P_CACHE_UPSTREAM_CONCURRENCY": str(CAP)})
    flood = Flood(server.multiaddr())
    flood.start()
    wait_until(lambda: fake.stats()["requests"] >= CAP, timeout=30, what="the flood to begin")
    asked_at = time.monotonic()
    answer = runner.get("/repos/legit/r/issues/1")  # two turns: the repository, the issue
    waited = time.monotonic() - asked_at
    flooded_then = flood.answered
    flood.join(180)
    assert flood.error is None, flood.error
    assert flood.answered == FLOOD
    assert answer.status_code == 200 and answer.headers["x-p2p-cache"] == "peer"
    # Round-robin across askers: the runner waited for one turn, not behind the flood.
    assert flooded_then < FLOOD - 10 * CAP, "answered while the flood still queued"
    assert waited < 10, f"{waited:.1f} s"
    most = fake.stats()["max_in_flight"]
    assert most[SERVER] <= CAP, most
    stats = server.stats()
    assert stats["upstream_in_flight_max"] == CAP and stats["upstream_waited"] > FLOOD / 2
    assert stats["peer_requests_served"] == FLOOD + 2
