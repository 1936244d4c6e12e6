"""What read-your-writes costs and how fast it is, fleet-wide (docs/consistency.md).

A server node and --runners runner nodes (real processes on loopback) against the fake GitHub
(--latency-ms, default 80). Every runner holds an issue's comment list, the issue, its pull
request and the issue list (fresh hits). Then, --writes times, one runner (in turn) posts a
comment through its node, and every runner reads the list again. Measured per write:

  write_ms        the client's POST through the writer's node (GitHub's answer, the drop,
                  the servers' acknowledgement), and the same POST straight to the fake
  applied_ms      from the writer's 201 until each other runner has applied the drop
  seen_ms         from the 201 until each other runner's read returns the new comment
  requests        what GitHub saw for the write and the fleet's reads after it (units, 304s)

Then the event floor: a new runner whose --not-before is after every entry GitHub vouched
for reads --floor-paths paths the server holds: what that costs GitHub (free 304s, once for
the fleet) and the runner (peer round trips).

Writes bench/results/consistency.json and prints a table. Run: python bench/consistency.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NodeProcess  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REPO = "/repos/bench/consistency"
AUTH = {"authorization": f"token {FLEET_TOKEN}"}


def pct(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 2), "p99": round(at(0.99), 2),
            "max": round(ordered[-1], 2), "n": len(ordered)}


def poll(check, timeout: float = 10.0, every: float = 0.002) -> float:
    """Seconds until `check()` is true (polling), or raise."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if check():
            return time.perf_counter() - began
        time.sleep(every)
    raise SystemExit("timed out waiting")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runners", type=int, default=3)
    p.add_argument("--writes", type=int, default=20)
    p.add_argument("--latency-ms", type=float, default=80.0)
    p.add_argument("--floor-paths", type=int, default=50)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="consistency-bench-"))
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=[FLEET_TOKEN]).start()
    nodes: list[NodeProcess] = []
    try:
        server = NodeProcess("server", work / "server", fake.url).start()
        nodes.append(server)
        runners = [NodeProcess(f"runner{i}", work / f"runner{i}", fake.url,
                               bootstrap=server.multiaddr()) for i in range(args.runners)]
        nodes += runners
        for r in runners:
            r.start()
            r.wait_for_peers(1)
        issue = 7  # no comments to start with
        comments = f"{REPO}/issues/{issue}/comments"
        held = [comments, f"{REPO}/issues/{issue}", f"{REPO}/pulls/{issue}",
                f"{REPO}/issues?per_page=100"]
        for r in runners:
            for path in held:
                assert r.get(path).status_code == 200
        direct = httpx.Client(base_url=fake.url, headers=AUTH, timeout=30)
        write_ms, direct_ms, applied_ms, seen_ms = [], [], [], []
        units_per_write, not_modified_per_write = [], []
        for n in range(args.writes):
            writer = runners[n % len(runners)]
            others = [r for r in runners if r is not writer]
            applied = {r.name: r.stats()["invalidations_applied"] for r in others}
            before = fake.stats()
            body = f"write {n}"
            began = time.perf_counter()
            made = writer.http.post(comments, json={"body": body}, headers=AUTH)
            done = time.perf_counter()
            assert made.status_code == 201, made.text
            write_ms.append((done - began) * 1000)
            def watch(r: NodeProcess) -> None:  # each other runner, at once
                poll(lambda: r.stats()["invalidations_applied"] > applied[r.name])
                applied_ms.append(1000 * (time.perf_counter() - done))
                poll(lambda: body in r.get(comments).text)
                seen_ms.append(1000 * (time.perf_counter() - done))
            threads = [threading.Thread(target=watch, args=(r,)) for r in others]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert body in writer.get(comments).text
            for r in runners:  # the rest of what the write changed, read everywhere
                for path in held[1:]:
                    r.get(path)
            after = fake.stats()
            units_per_write.append(after["units"] - before["units"])
            not_modified_per_write.append(after["not_modified"] - before["not_modified"])
            began = time.perf_counter()
            direct.post(f"{REPO}/issues/8/comments", json={"body": "direct"})
            direct_ms.append((time.perf_counter() - began) * 1000)

        # The event floor: everything the server holds was vouched for before it.
        floor_paths = [f"{REPO}/issues/{i}" for i in range(10, 10 + args.floor_paths)]
        for path in floor_paths:
            server.get(path)
        time.sleep(1.2)  # GitHub's clock (whole seconds) passes the floor
        floor = time.time() - 0.1
        time.sleep(1.2)
        before = fake.stats()
        late = NodeProcess("floor", work / "floor", fake.url, bootstrap=server.multiaddr(),
                           args=["--not-before", f"{floor:.3f}"], env={
                               "P2P_CACHE_WARM_START": "0"}).start()
        nodes.append(late)
        late.wait_for_peers(1)
        began = time.perf_counter()
        for path in floor_paths:
            assert late.get(path).status_code == 200
        floor_s = time.perf_counter() - began
        after = fake.stats()
        floor_result = {
            "paths": len(floor_paths), "github_requests": after["requests"] - before["requests"],
            "github_304": after["not_modified"] - before["not_modified"],
            "units": after["units"] - before["units"],
            "server_floor_revalidations": server.stats()["floor_revalidations"],
            "runner_peer_hits": late.stats()["peer_hits"], "wall_s": round(floor_s, 2)}
        # A second runner with the same floor: the server's entries now answer.
        before = fake.stats()
        late2 = NodeProcess("floor2", work / "floor2", fake.url, bootstrap=server.multiaddr(),
                            args=["--not-before", f"{floor:.3f}"], env={
                                "P2P_CACHE_WARM_START": "0"}).start()
        nodes.append(late2)
        late2.wait_for_peers(1)
        for path in floor_paths:
            late2.get(path)
        floor_result["second_runner_github_requests"] = fake.stats()["requests"] - \
            before["requests"]

        result = {
            "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
            "runners": args.runners, "writes": args.writes, "latency_ms": args.latency_ms,
            "write_through_node_ms": pct(write_ms), "write_direct_ms": pct(direct_ms),
            "applied_on_other_runners_ms": pct(applied_ms),
            "seen_on_other_runners_ms": pct(seen_ms),
            "github_units_per_write": pct([float(u) for u in units_per_write]),
            "github_304_per_write": pct([float(u) for u in not_modified_per_write]),
            "floor": floor_result,
            "server": {k: v for k, v in server.stats().items() if k.startswith("invalidat")},
        }
        (args.out / "consistency.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return 0
    finally:
        for node in nodes:
            try:
                node.stop()
            except AssertionError:
                pass
        fake.stop()


if __name__ == "__main__":
    sys.exit(main())
