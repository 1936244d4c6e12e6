"""Local-hit and peer-hit latency (p50/p99) and local-hit throughput through the HTTP API.

Starts the fake GitHub API, a server node and a runner node (each a real process on
loopback), then measures:
  local hit  - a path the runner already holds, asked again (keep-alive client)
  peer hit   - a path only the server holds: the runner asks it over libp2p
  miss       - a path nobody holds: the server fetches from the fake (latency 0)
  throughput - local hits/s from several client processes at once

Prints a table and writes bench/results/latency.json. Run: make bench (or python bench/latency.py).
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import NodeProcess  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LOCAL_N = 3000
PEER_N = 1000
MISS_N = 300
THROUGHPUT_S = 5.0
CLIENT_PROCESSES = 4


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"n": len(ordered), "p50_ms": round(q[49] * 1000, 3), "p99_ms": round(q[98] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


def timed_gets(base: str, paths: list[str], expect: str) -> list[float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for path in paths:
            start = time.perf_counter()
            response = http.get(path)
            samples.append(time.perf_counter() - start)
            got = response.headers.get("x-p2p-cache")
            if response.status_code != 200 or got != expect:
                raise SystemExit(f"{path}: expected a {expect}, got {response.status_code} {got}")
    return samples


def _hammer(base: str, path: str, seconds: float, out: multiprocessing.Queue) -> None:
    count = 0
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get(path)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if http.get(path).status_code == 200:
                count += 1
    out.put(count)


def throughput(base: str, path: str) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_hammer, args=(base, path, THROUGHPUT_S, queue))
             for _ in range(CLIENT_PROCESSES)]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / THROUGHPUT_S


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=0, tokens=["ghp_fleettoken0000000000000000000000000"],
                      rate_limit=1_000_000).start()
    with tempfile.TemporaryDirectory() as tmp:
        server = NodeProcess("server", Path(tmp) / "server", fake.url).start()
        # Warm start off: this measures one peer round trip, not entries taken at joining.
        runner = NodeProcess("runner", Path(tmp) / "runner", fake.url,
                             bootstrap=server.multiaddr(),
                             env={"P2P_CACHE_WARM_START": "0"}).start()
        runner.wait_for_peers(1)
        try:
            # Repository content: the fleet's to share (a repository object, a user, an
            # organisation are each caller's own, docs/security.md 8.1).
            print(f"Warming the server with {PEER_N} entries ...", flush=True)
            peer_paths = [f"/repos/bench/r/contents/peer{i}" for i in range(PEER_N)]
            timed_gets(server.url, peer_paths, "miss")
            miss = timed_gets(server.url, [f"/repos/bench/r/contents/miss{i}" for i in range(MISS_N)],
                              "miss")
            print("Measuring peer hits ...", flush=True)
            peer = timed_gets(runner.url, peer_paths, "peer")
            print("Measuring local hits ...", flush=True)
            local = timed_gets(runner.url, ["/repos/bench/r/contents/peer0"] * LOCAL_N, "hit")
            print(f"Measuring throughput ({CLIENT_PROCESSES} client processes, "
                  f"{THROUGHPUT_S:.0f} s) ...", flush=True)
            rps = throughput(runner.url, "/repos/bench/r/contents/peer0")
        finally:
            server.stop()
            runner.stop()
            fake.stop()

    results = {
        "machine": {"python": platform.python_version(), "cpus": multiprocessing.cpu_count(),
                    "platform": platform.platform()},
        "local_hit": percentiles(local),
        "peer_hit": percentiles(peer),
        "server_miss_upstream_latency_0ms": percentiles(miss),
        "local_hits_per_s": round(rps, 1),
        "throughput_clients": CLIENT_PROCESSES,
    }
    (RESULTS / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"{'what':<34}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
    for name in ("local_hit", "peer_hit", "server_miss_upstream_latency_0ms"):
        r = results[name]
        print(f"{name:<34}{r['n']:>6}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}")
    print(f"{'local hits/s':<34}{rps:>26.0f}")
    print(f"\nwrote {RESULTS / 'latency.json'}")


if __name__ == "__main__":
    main()
