"""Several server nodes share one fleet (issue 15, failover): every runner ranks the servers
alike for each key, so a key is fetched about once even when its home server dies, and a
returning server takes its keys back. Real node processes on loopback, the fake upstream."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

from test_fleet import get_all_at_once


def start_fleet(nodes, servers: int = 3, runners: int = 3, runner_env=None):
    homes = [nodes(f"server{i}") for i in range(servers)]
    bootstrap = ",".join(s.multiaddr() for s in homes)
    fleet = [nodes(f"runner{i}", start=False, bootstrap=bootstrap, env=runner_env)
             for i in range(runners)]
    for runner in fleet:
        runner.start(wait=False)
    for runner in fleet:
        runner.wait_ready()
        runner.wait_for_peers(servers)
    return homes, fleet


def paths(tag: str, n: int) -> list[str]:
    return [f"/repos/{tag}/repo/contents/f{i}" for i in range(n)]


def root(tag: str) -> str:
    """The repository's own view (is it public?): asked once for the fleet, like a path."""
    return f"/repos/{tag}/repo"


def test_several_servers_fetch_each_key_once_and_share_the_keys(nodes, fake):
    servers, runners = start_fleet(nodes)
    fake.reset()
    wanted = paths("spread", 45)
    results = get_all_at_once(runners, wanted)
    assert all(r.status_code == 200 for _, r in results)
    assert fake.stats()["by_path"] == {p: 1 for p in wanted + [root("spread")]}
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
    assert set(by_path) == set(wanted) | {root("failover")}
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
    assert fake.stats()["by_path"] == {p: 1 for p in again + [root("home-again")]}
    assert servers[0].stats()["peer_requests_served"] > 0, "the returned server got its keys"


SILENCE = 6.0  # the runner's P2P_CACHE_PEER_SILENCE here: a quiet server is pinged after 1.5 s
DROPPED = "stopped answering pings; disconnecting"


def test_a_slow_server_stays_and_a_silent_one_hands_its_keys_to_the_next(nodes, fake):
    servers, (runner,) = start_fleet(nodes, runners=1,
                                     runner_env={"P2P_CACHE_PEER_SILENCE": str(SILENCE)})
    slow = servers[0]
    try:
        # Slow, not gone: no answer for most of the silence, with a ping waiting through it.
        slow.proc.send_signal(signal.SIGSTOP)
        time.sleep(SILENCE - 2)
        slow.proc.send_signal(signal.SIGCONT)
        time.sleep(2)
        assert DROPPED not in runner.log()
        assert runner.stats()["connected_peers"] == 3
        fake.reset()
        kept = paths("kept", 30)
        assert all(runner.get(p).headers["x-p2p-cache"] == "peer" for p in kept)
        assert slow.stats()["peer_requests_served"] > 0, "the slow server kept its keys"

        # Silent: dropped within 1.25 x the silence, and its keys go to the next server
        # in every runner's order, still once each.
        slow.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        runner.wait_for_log(DROPPED, timeout=SILENCE * 1.25 + 10)
        print(f"silent server dropped after {time.monotonic() - stopped:.1f} s "
              f"(silence {SILENCE:.0f} s)")
        deadline = time.monotonic() + 5  # the disconnect itself is bounded by 5 s
        while runner.stats()["connected_peers"] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner.stats()["connected_peers"] == 2
        fake.reset()
        moved = paths("moved", 30)
        answers = [runner.get(p) for p in moved]
        assert [a.status_code for a in answers] == [200] * len(moved)
        assert {a.headers["x-p2p-cache"] for a in answers} == {"peer"}
        assert fake.stats()["by_path"] == {p: 1 for p in moved + [root("moved")]}
    finally:
        slow.proc.send_signal(signal.SIGCONT)
