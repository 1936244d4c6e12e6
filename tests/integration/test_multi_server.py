"""Several server nodes share one fleet (issue 15, failover): every runner ranks the servers
alike for each key, so a key is fetched about once even when its home server dies, and a
returning server takes its keys back. Real node processes on loopback, the fake upstream."""

from __future__ import annotations

import threading
import time
from collections import Counter

from test_fleet import get_all_at_once


def start_fleet(nodes, servers: int = 3, runners: int = 3):
    homes = [nodes(f"server{i}") for i in range(servers)]
    bootstrap = ",".join(s.multiaddr() for s in homes)
    fleet = [nodes(f"runner{i}", start=False, bootstrap=bootstrap) for i in range(runners)]
    for runner in fleet:
        runner.start(wait=False)
    for runner in fleet:
        runner.wait_ready()
        runner.wait_for_peers(servers)
    return homes, fleet


def paths(tag: str, n: int) -> list[str]:
    return [f"/repos/{tag}/repo{i}" for i in range(n)]


def test_several_servers_fetch_each_key_once_and_share_the_keys(nodes, fake):
    servers, runners = start_fleet(nodes)
    fake.reset()
    wanted = paths("spread", 45)
    results = get_all_at_once(runners, wanted)
    assert all(r.status_code == 200 for _, r in results)
    assert fake.stats()["by_path"] == {p: 1 for p in wanted}
    served = [s.stats()["peer_requests_served"] for s in servers]
    assert sum(1 for n in served if n) == 3, f"keys are spread over all servers: {served}"


def test_a_killed_server_costs_no_request_and_its_keys_stay_about_once(nodes, fake):
    servers, runners = start_fleet(nodes)
    fake.reset()
    fake.set_latency(150)
    wanted = paths("failover", 45)
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(get_all_at_once(runners, wanted)))
    worker.start()
    time.sleep(0.3)  # the fleet is mid-fetch
    servers[0].kill()
    worker.join(120)
    fake.set_latency(5)
    assert len(results) == len(runners) * len(wanted)
    assert all(r.status_code == 200 for _, r in results), \
        Counter(r.status_code for _, r in results)
    by_path = fake.stats()["by_path"]
    assert set(by_path) == set(wanted)
    assert max(by_path.values()) <= 2, {p: n for p, n in by_path.items() if n > 2}

    # The server comes back (same data dir, same peer ID): runners redial it, and its
    # keys go home again.
    servers[0].start()
    for runner in runners:
        runner.wait_for_peers(3, timeout=60)
    fake.reset()
    again = paths("home-again", 45)
    results = get_all_at_once(runners, again)
    assert all(r.status_code == 200 for _, r in results)
    assert fake.stats()["by_path"] == {p: 1 for p in again}
    assert servers[0].stats()["peer_requests_served"] > 0, "the returned server got its keys"
