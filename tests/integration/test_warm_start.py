"""Warm start on real nodes: a runner that joins after others takes the server's hot,
fresh entries in one answer and answers them as local hits, byte for byte, with the age
GitHub gave them; within its budget, off when asked, and never twice a minute per peer."""

from __future__ import annotations

import time

from conftest import wait_until

PATHS = [f"/repos/warm/r/contents/f{i}" for i in range(6)]
ROOT = "/repos/warm/r"  # the repository's own view (is it public?): one more entry


def fleet_asked(nodes, fake, ttl: float = 60):
    """A server, and a first runner that asked for PATHS through it."""
    server = nodes("server", ttl=ttl)
    first = nodes("first", bootstrap=server.multiaddr(), ttl=ttl)
    first.wait_for_peers(1)
    bodies = {}
    for path in PATHS:
        response = first.get(path)
        assert response.headers["x-p2p-cache"] == "peer"
        bodies[path] = response.content
    # Hypermedia URLs name the base each client used: compare in the upstream's terms.
    return server, {p: b.replace(first.url.encode(), fake.url.encode()) for p, b in bodies.items()}


def test_a_later_runner_answers_the_fleets_entries_as_local_hits(nodes, fake):
    server, bodies = fleet_asked(nodes, fake)
    late = nodes("late", bootstrap=server.multiaddr())
    stats = wait_until(lambda: (s := late.stats())["warm_starts"] and s, what="a warm start")
    assert stats["warm_start_entries"] == len(PATHS) + 1
    assert stats["warm_start_bytes"] > sum(len(b) for b in bodies.values())
    served_before = server.stats()["peer_requests_served"]
    for path in PATHS:
        response = late.get(path)
        assert response.status_code == 200
        assert response.content.replace(late.url.encode(), fake.url.encode()) == bodies[path]
        assert response.headers["x-p2p-cache"] == "hit"
        assert response.headers["etag"]
    assert server.stats()["peer_requests_served"] == served_before, "no peer round trips"
    assert server.stats()["warm_offers"] == 2, "one per joining runner (the first: empty)"
    assert fake.stats()["units"] == len(PATHS) + 1, "each path once for the whole fleet"
    log = late.log()
    assert f"✓ Warm start: {len(PATHS) + 1} fresh entries" in log
    assert "ghp_" not in log


def test_warm_entries_keep_their_age_and_go_stale_on_time(nodes, fake):
    ttl = 3.0
    server, _ = fleet_asked(nodes, fake, ttl=ttl)
    asked_at = time.monotonic()
    late = nodes("late", bootstrap=server.multiaddr(), ttl=ttl)
    wait_until(lambda: late.stats()["warm_starts"], what="a warm start")
    time.sleep(max(0.0, asked_at + ttl + 0.3 - time.monotonic()))
    # The server's copies went stale at the same moment (each path asked once: no refresh),
    # so the runner must not call its copy a hit: it asks the fleet again.
    response = late.get(PATHS[0])
    assert response.status_code == 200
    assert response.headers["x-p2p-cache"] != "hit"


def test_the_budget_bounds_what_is_taken_and_zero_turns_it_off(nodes, fake):
    server, bodies = fleet_asked(nodes, fake)
    smallest = min(len(b) for b in bodies.values())
    small = nodes("small", bootstrap=server.multiaddr(),
                  env={"P2P_CACHE_WARM_START": str(smallest + 2000)})  # + its headers
    stats = wait_until(lambda: (s := small.stats())["warm_starts"] and s, what="a warm start")
    assert 1 <= stats["warm_start_entries"] < len(PATHS)
    assert stats["warm_start_bytes"] <= smallest + 2000

    off = nodes("off", bootstrap=server.multiaddr(), env={"P2P_CACHE_WARM_START": "0"})
    off.wait_for_peers(1)
    time.sleep(1.0)
    assert off.stats()["warm_starts"] == 0
    assert off.get(PATHS[0]).headers["x-p2p-cache"] == "peer"
    assert server.stats()["warm_offers"] == 2, "the first runner's and the small one's"
