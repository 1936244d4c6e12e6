"""Warm start on real nodes: a runner that joins after others takes the server's hot,
fresh entries in one answer and answers them as local hits, byte for byte, with the age
GitHub gave them; within its budget, off when asked, and never twice a minute per peer."""

from __future__ import annotations

import time

import httpx

from conftest import FLEET_TOKEN, wait_until

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


AUTH = {"authorization": f"token {FLEET_TOKEN}"}


def test_joiners_in_a_row_share_one_build_until_the_fleet_writes(nodes, fake):
    """A queue of jobs joining within seconds: the server builds its offer once and gives
    it again (warmstart.Shelf). A write through the fleet voids it: the next joiner is
    given a new build, without the state the write changed, and reads the new one."""
    server, bodies = fleet_asked(nodes, fake)
    server.get("/repos/other/r/contents/x")  # another repository: untouched by the write
    first = nodes("a", bootstrap=server.multiaddr())
    wait_until(lambda: first.stats()["warm_starts"], what="a warm start")
    built = server.stats()["warm_offers_built"]
    second = nodes("b", bootstrap=server.multiaddr())
    stats = wait_until(lambda: (s := second.stats())["warm_starts"] and s, what="a warm start")
    assert stats["warm_start_entries"] == len(PATHS) + 1 + 2
    assert server.stats()["warm_offers_built"] == built, "given the build before it"
    assert server.stats()["warm_offers"] == 3

    written = first.http.put(PATHS[0], json={"message": "m", "content": "bmV3"}, headers=AUTH)
    assert written.status_code in (200, 201)
    wait_until(lambda: server.stats()["invalidations_applied"] >= 1, what="the fleet's drop")
    third = nodes("c", bootstrap=server.multiaddr())
    stats = wait_until(lambda: (s := third.stats())["warm_starts"] and s, what="a warm start")
    assert server.stats()["warm_offers_built"] == built + 1, "the shelf was void"
    # A contents write changes the whole repository (invalidation.py): none of it is offered
    assert stats["warm_start_entries"] == 2, "only the other repository's entries"
    response = third.get(PATHS[0])
    assert response.headers["x-p2p-cache"] != "hit"
    now = httpx.get(fake.url + PATHS[0], headers=AUTH)
    assert response.headers["etag"] == now.headers["etag"], "the state after the write"


def test_actions_start_has_github_confirm_the_jobs_token_as_the_node_starts(nodes, fake):
    """The job's first call is a local hit at once: GitHub confirmed the job's token (the
    free /rate_limit) as the node started, not on that call. A token GitHub refuses is
    said at start, and the job's calls get GitHub's own 401, never the fleet's entries.
    (`actions start` sets P2P_CACHE_CONFIRM_TOKEN for its node.)"""
    server, bodies = fleet_asked(nodes, fake)
    job = nodes("job", bootstrap=server.multiaddr(), env={"P2P_CACHE_CONFIRM_TOKEN": "1"})
    wait_until(lambda: job.stats()["warm_starts"], what="a warm start")
    assert job.stats()["credential_checks"] == 1
    asked = len(fake.request_log())
    response = job.get(PATHS[1], headers=AUTH)
    assert response.headers["x-p2p-cache"] == "hit"
    assert len(fake.request_log()) == asked, "nothing asked of GitHub on the job's call"

    expired = nodes("expired", bootstrap=server.multiaddr(),
                    env={"P2P_CACHE_CONFIRM_TOKEN": "1", "GH_TOKEN": "ghp_expired",
                         "P2P_CACHE_SECRET": FLEET_TOKEN})
    wait_until(lambda: expired.stats()["warm_starts"], what="a warm start")
    expired.wait_for_log("GitHub refuses this node's token (401)")
    refused = expired.get(PATHS[1], headers={"authorization": "token ghp_expired"})
    assert refused.status_code == 401
    assert "ghp_expired" not in expired.log()
