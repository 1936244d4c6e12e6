#!/usr/bin/env python3
"""Scale benchmark (issue 15): how much one server node serves, and what several buy.

1. Peer hits one server node sustains. One server node holds --hit-paths entries, all fresh;
   --hit-runners runner nodes, each with a client process, ask for them. Every answer is a
   hit on the server served to a peer: each runner node asks each path once (a fresh slice
   of the warm pool per level), so it never holds one itself. The offered load (GETs in
   flight per client: --hit-levels) rises until the hits per second stop growing by 5%.
   Per level: hits/s, the server's CPU seconds per 1000 hits and its share of a core, its
   peak RSS, p50/p99.
2. Fleet throughput with 1 and 3 servers (--servers) for --runners runner counts. A runner is
   a runner node and a client process doing --paths GETs over a shared --paths-path set,
   --concurrency in flight, all runners starting together (fleet.py's cold lockstep run);
   runner nodes bootstrap every server, so rendezvous hashing spreads the keys. Fresh server
   and runner nodes per point. Per point: wall s, requests/s, p50/p99, upstream requests
   (exactly once: each unique path reaches the fake once), per-server CPU s and peak RSS,
   runner-node RSS, the machine's CPU busy % and load.
3. The runners one server serves before p99 doubles: the 1-server series (--runners plus
   --more-runners), the largest count whose p99 is within twice the p99 at the smallest.

Everything runs on this one machine: every runner node and client shares its cores with
the servers, so the fleet figures say as much about the machine as about the server (the
JSON has the machine's busy % and load for each point).

Writes bench/results/scale.json and scale.md. Run: make bench, or python bench/scale.py
[--quick].
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import (FLEET_TOKEN, RESULTS, FakeGitHub, Fleet, ProcessSampler,  # noqa: E402
                   _terminate, cpu_seconds, endpoints, mb, percentile, repositories,
                   run_runners)

GROWTH = 1.05  # a level that does not beat the best so far by 5% ends the peer-hit series


# --------------------------------------------------------------------------- measuring

class Machine:
    """The whole machine over an interval: how busy its cores were (every process, ours or
    not) and its load average."""

    def __enter__(self) -> Machine:
        import psutil

        self.load_before = os.getloadavg()[0]
        self._before = psutil.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        import psutil

        after = psutil.cpu_times()
        busy = sum(after) - sum(self._before)
        idle = (after.idle + after.iowait) - (self._before.idle + self._before.iowait)
        self.busy_pct = round(100 * (1 - idle / busy), 1) if busy > 0 else None
        self.load_after = os.getloadavg()[0]

    def fields(self) -> dict[str, Any]:
        return {"machine_cpu_busy_pct": self.busy_pct,
                "loadavg_1m_before": round(self.load_before, 2),
                "loadavg_1m_after": round(self.load_after, 2)}


def latency_fields(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2)}


def rss_mb(pids: list[int]) -> list[float]:
    import psutil

    return [mb(psutil.Process(pid).memory_info().rss) for pid in pids]


# --------------------------------------------------------------------------- 1. peer hits

def warm(server: Any, paths: list[str], fake: FakeGitHub) -> None:
    """The server fetches every path once, through its own local API, with the fake at no
    latency: afterwards each is a fresh entry there."""
    latency = fake.latency_ms
    fake.set_latency(0)
    try:
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"accept": "application/vnd.github+json"}) as client:
            with ThreadPoolExecutor(16) as pool:
                statuses = set(pool.map(lambda p: client.get(p).status_code, paths))
    finally:
        fake.set_latency(latency)
    if statuses != {200}:
        raise SystemExit(f"warming the server: answers {statuses}")


def peer_hit_level(fake: FakeGitHub, fleet: Fleet, paths: list[str], in_flight: int,
                   seed: int) -> dict[str, Any]:
    server = fleet.server
    assert server is not None and server.proc is not None
    fake.reset()
    before = server.stats()
    with Machine() as machine, ProcessSampler(server.proc.pid) as sampler:
        # Each runner its own order of the slice: runners do not ask one path in lockstep.
        got = run_runners("p2pcache", [n.url for n in fleet.runners], paths, in_flight,
                          "shuffled", seed, None)
    after = server.stats()
    requests = len(got["latencies"])
    served = after["peer_requests_served"] - before["peer_requests_served"]
    row: dict[str, Any] = {
        "runners": len(fleet.runners),
        "in_flight_per_runner": in_flight,
        "in_flight": in_flight * len(fleet.runners),
        "requests": requests,
        "wall_s": round(got["wall_s"], 3),
        "hits_per_s": round(requests / got["wall_s"], 1),
        **latency_fields(got["latencies"]),
        "server_cpu_s": round(sampler.cpu_s, 3),
        "server_cpu_s_per_1000_hits": round(1000 * sampler.cpu_s / requests, 3),
        # 100: the server used a whole core, so it, not the clients, set the pace.
        "server_core_pct": round(100 * sampler.cpu_s / got["wall_s"], 1),
        "server_rss_mb": mb(sampler.peak_rss),
        "server_peer_requests_served": served,
        "server_upstream_requests": after["upstream_requests"] - before["upstream_requests"],
        "upstream_requests": fake.stats()["requests"],
        "answers": got["sources"],
        "statuses": got["statuses"],
        "runner_nodes_cpu_s": None,
        "client_cpu_s": round(got["client_cpu_s"], 3),
        **machine.fields(),
    }
    # (Each runner node also asks the server, once, for the repository's own view.)
    looked_up = served - requests
    if got["sources"] != {"peer": requests} or row["upstream_requests"] \
            or not 0 <= looked_up <= len(fleet.runners):
        raise SystemExit(f"peer hits: not every answer was a server hit: {row}")
    print(f"  peer hits  in flight {row['in_flight']:<4} {row['hits_per_s']:>7.1f} hits/s  "
          f"p50={row['p50_ms']:.1f}ms p99={row['p99_ms']:.1f}ms  server "
          f"{row['server_cpu_s_per_1000_hits']:.2f} CPU s/1000 hits, "
          f"{row['server_core_pct']:.0f}% of a core, {row['server_rss_mb']:.0f} MB  "
          f"machine busy {row['machine_cpu_busy_pct']}%", flush=True)
    return row


def peer_hits(fake: FakeGitHub, tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    per_level = args.hit_paths
    # Repository content (the fleet's to share; a repository object is each caller's own).
    pool = [f"/repos/hits/repo/contents/f{i}" for i in range(per_level * len(args.hit_levels))]
    # Fresh for the whole series: nothing goes stale, refresh-ahead has nothing to do. No
    # warm start: a joining runner node would take the pool and answer itself.
    fleet = Fleet(tmp, fake.url, ttl=3600, batch=args.batch,
                  runner_env={"P2P_CACHE_WARM_START": "0"})
    rows: list[dict[str, Any]] = []
    try:
        server = fleet.start_server("hits-server")
        print(f"  warming the server with {len(pool)} paths, starting "
              f"{args.hit_runners} runner node(s) ...", flush=True)
        warm(server, pool, fake)
        fleet.start_runners(args.hit_runners)
        best = 0.0
        for n, in_flight in enumerate(args.hit_levels):
            row = peer_hit_level(fake, fleet, pool[n * per_level:(n + 1) * per_level],
                                 in_flight, seed=n + 1)
            rows.append(row)
            if row["hits_per_s"] < best * GROWTH:
                break  # throughput stopped growing
            best = max(best, row["hits_per_s"])
    finally:
        fleet.stop()
    return rows


# --------------------------------------------------------------------------- 2. fleet

def fleet_point(fake: FakeGitHub, tmp: Path, servers: int, runners: int, paths: list[str],
                args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(tmp, fake.url, ttl=60.0, batch=args.batch)
    try:
        for i in range(servers):
            fleet.start_server(f"s{servers}r{runners}-server{i}")
        print(f"  starting {runners} runner node(s) for {servers} server(s) ...", flush=True)
        node_start_s = fleet.start_runners(runners)
        runner_pids = [n.proc.pid for n in fleet.runners if n.proc is not None]
        server_pids = [s.proc.pid for s in fleet.servers if s.proc is not None]
        fake.reset()
        runner_cpu_before = cpu_seconds(runner_pids)
        samplers = [ProcessSampler(pid) for pid in server_pids]
        with Machine() as machine:
            for sampler in samplers:
                sampler.__enter__()
            try:
                got = run_runners("p2pcache", [n.url for n in fleet.runners], paths,
                                  args.concurrency, args.order, args.seed, None)
            finally:
                for sampler in samplers:
                    sampler.__exit__(None, None, None)
        fetched = fake.stats()
        runner_rss = rss_mb(runner_pids)
        runner_stats = [n.stats() for n in fleet.runners]
        server_stats = [s.stats() for s in fleet.servers]
        requests = len(got["latencies"])
        row: dict[str, Any] = {
            "servers": servers,
            "runners": runners,
            "client_requests": requests,
            "unique_paths": len(paths),
            "repositories": repositories(paths),
            "wall_s": round(got["wall_s"], 3),
            "requests_per_s": round(requests / got["wall_s"], 1),
            **latency_fields(got["latencies"]),
            "upstream_requests": fetched["requests"],
            # Each path once, and each repository's own view (is it public?) once.
            "exactly_once": (fetched["requests"] == len(paths) + repositories(paths)
                             and len(fetched["by_path"]) == len(paths) + repositories(paths)),
            "server_cpu_s": [round(s.cpu_s, 3) for s in samplers],
            "server_rss_mb": [mb(s.peak_rss) for s in samplers],
            "server_peer_requests_served": [s.get("peer_requests_served", 0)
                                            for s in server_stats],
            "runner_rss_mb_median": statistics.median(runner_rss),
            "runner_rss_mb_max": max(runner_rss),
            "runner_nodes_cpu_s": round(cpu_seconds(runner_pids) - runner_cpu_before, 3),
            "client_cpu_s": round(got["client_cpu_s"], 3),
            "runner_upstream_requests": sum(r.get("upstream_requests", 0)
                                            for r in runner_stats),
            "runner_peer_failures": sum(r.get("peer_failures", 0) for r in runner_stats),
            "node_start_s": round(node_start_s, 2),
            "answers": got["sources"],
            "statuses": got["statuses"],
            "start_skew_ms": round(got["start_skew_ms"], 1),
            **machine.fields(),
            "warnings": fleet.warnings()[:20],
        }
    finally:
        fleet.stop()
    if got["statuses"] != {"200": requests}:
        raise SystemExit(f"fleet {servers}x{runners}: non-200 answers {got['statuses']}")
    print(f"  fleet  servers={servers} runners={runners:<3} wall={row['wall_s']:.2f}s "
          f"{row['requests_per_s']:.0f} req/s p50={row['p50_ms']:.1f}ms "
          f"p99={row['p99_ms']:.1f}ms upstream={row['upstream_requests']} "
          f"(exactly once: {row['exactly_once']}) server CPU s={row['server_cpu_s']} "
          f"machine busy {row['machine_cpu_busy_pct']}% load {row['loadavg_1m_after']}",
          flush=True)
    return row


# --------------------------------------------------------------------------- 3. p99

def p99_doubling(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """From the 1-server series: the largest runner count whose p99 stays within twice the
    p99 at the smallest count."""
    series = sorted((r for r in rows if r["servers"] == 1), key=lambda r: r["runners"])
    if not series:
        return None
    base = series[0]
    limit = 2 * base["p99_ms"]
    within = [r["runners"] for r in series if r["p99_ms"] <= limit]
    return {"baseline_runners": base["runners"], "baseline_p99_ms": base["p99_ms"],
            "limit_p99_ms": round(limit, 2), "max_runners": max(within),
            "points": [{"runners": r["runners"], "p99_ms": r["p99_ms"],
                        "ratio": round(r["p99_ms"] / base["p99_ms"], 2)} for r in series],
            # Whether the answer is bounded by the series: the largest count tried passed.
            "beyond_series": max(within) == series[-1]["runners"]}


# --------------------------------------------------------------------------- reporting

def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None:
            return "–"
        if isinstance(value, list):
            return " / ".join(fmt.format(v) for v in value)
        return fmt.format(value)

    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "| " + " | ".join("---:" for _ in columns) + " |"
    body = ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


HIT_COLUMNS = [("in_flight", "GETs in flight", "{}"), ("requests", "hits", "{}"),
               ("hits_per_s", "hits/s", "{:.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
               ("p99_ms", "p99 ms", "{:.1f}"),
               ("server_cpu_s_per_1000_hits", "server CPU s / 1000 hits", "{:.2f}"),
               ("server_core_pct", "server % of a core", "{:.0f}"),
               ("server_rss_mb", "server peak RSS MB", "{:.0f}"),
               ("machine_cpu_busy_pct", "machine busy %", "{:.0f}")]
FLEET_COLUMNS = [("servers", "servers", "{}"), ("runners", "runners", "{}"),
                 ("wall_s", "wall s", "{:.2f}"), ("requests_per_s", "req/s", "{:.0f}"),
                 ("p50_ms", "p50 ms", "{:.1f}"), ("p99_ms", "p99 ms", "{:.1f}"),
                 ("upstream_requests", "upstream req", "{}"),
                 ("unique_paths", "unique paths", "{}"),
                 ("server_cpu_s", "server CPU s", "{:.2f}"),
                 ("server_rss_mb", "server peak RSS MB", "{:.0f}"),
                 ("runner_rss_mb_median", "runner node RSS MB", "{:.0f}"),
                 ("machine_cpu_busy_pct", "machine busy %", "{:.0f}"),
                 ("loadavg_1m_after", "load 1m", "{:.1f}")]


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    hits = result["peer_hits"]
    if hits:
        top = max(hits, key=lambda r: r["hits_per_s"])
        lines.append(
            f"One server node: at most {top['hits_per_s']:.0f} peer hits/s here (at "
            f"{top['in_flight']} GETs in flight from {top['runners']} runner nodes), "
            f"{top['server_cpu_s_per_1000_hits']:.2f} CPU s per 1000 hits (so "
            f"~{1000 / top['server_cpu_s_per_1000_hits']:.0f} hits/s for a whole core), "
            f"using {top['server_core_pct']:.0f}% of a core, peak RSS "
            f"{top['server_rss_mb']:.0f} MB; machine {top['machine_cpu_busy_pct']}% busy.")
    once = [r for r in result["fleet"] if not r["exactly_once"]]
    lines.append("Exactly once: every fleet point fetched each unique path once." if not once
                 else "Exactly once: NOT at " + ", ".join(
                     f"{r['servers']} server(s) x {r['runners']} runners "
                     f"({r['upstream_requests']} upstream for {r['unique_paths']})"
                     for r in once) + ".")
    p99 = result["p99_doubling"]
    if p99:
        lines.append(
            f"p99 doubles: one server serves {p99['max_runners']} runners "
            f"{'or more ' if p99['beyond_series'] else ''}within 2x the p99 at "
            f"{p99['baseline_runners']} runner(s) ({p99['baseline_p99_ms']:.1f} ms -> limit "
            f"{p99['limit_p99_ms']:.1f} ms; ratios "
            + ", ".join(f"{p['runners']}: {p['ratio']:.2f}x" for p in p99["points"]) + ").")
    return lines


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    o, m = result["options"], result["machine"]
    md = ["# Scale benchmark results\n",
          f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}; every node and "
          f"client on this machine, on loopback, against tests/fakegithub.py "
          f"({o['latency_ms']:g} ms). Total {result['total_s']:.0f} s.\n",
          "## Peer hits one server node sustains\n",
          f"{o['hit_runners']} runner nodes, each with a client asking {o['hit_paths']} "
          "paths already fresh on the server (a new slice per level, so every answer is a "
          "hit on the server served to a peer); GETs in flight rising until hits/s stop "
          "growing.\n",
          table(result["peer_hits"], HIT_COLUMNS), "",
          "## Fleet throughput\n",
          f"Each runner: a runner node (bootstrapped to every server) and a client doing "
          f"{o['paths']} GETs over the same {o['paths']} paths, {o['concurrency']} in flight, "
          f"order {o['order']}, all starting together; fresh nodes per point. Server figures "
          "are per server.\n",
          table(result["fleet"], FLEET_COLUMNS), "",
          "## Summary\n", *[f"- {line}" for line in summary(result)], ""]
    (out / "scale.md").write_text("\n".join(md))


# --------------------------------------------------------------------------- main

def counts(text: str) -> list[int]:
    return sorted({int(s) for s in text.split(",") if s.strip()})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hit-runners", type=int, default=6,
                   help="runner nodes asking the server for its warm entries")
    p.add_argument("--hit-levels", default="1,2,4,8,16,32",
                   help="GETs in flight per runner's client, level by level")
    p.add_argument("--hit-paths", type=int, default=300,
                   help="GETs per runner per level (each a path it never asked before)")
    p.add_argument("--servers", default="1,3", help="server counts of the fleet series")
    p.add_argument("--runners", default="5,20,50", help="runner counts for every server count")
    p.add_argument("--more-runners", default="1,2,10",
                   help="more runner counts for the 1-server series (the p99 question)")
    p.add_argument("--paths", type=int, default=100, help="unique paths (and GETs per runner)")
    p.add_argument("--latency-ms", type=float, default=80.0)
    p.add_argument("--concurrency", type=int, default=6, help="GETs in flight per runner")
    p.add_argument("--order", choices=("same", "shuffled"), default="same")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=4, help="runner nodes booted at a time")
    p.add_argument("--skip", default="", help="parts to leave out: hits, fleet")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 hit runners at 1 and 2 in flight x 20 paths; servers "
                        "1 and 3 with 2 runners (and 1 for one server) x 10 paths, 5 ms")
    args = p.parse_args(argv)
    if args.quick:
        args.hit_runners, args.hit_levels, args.hit_paths = 2, "1,2", 20
        args.runners, args.more_runners, args.paths, args.latency_ms = "2", "1", 10, 5.0
    args.hit_levels = [int(s) for s in args.hit_levels.split(",") if s.strip()]
    args.servers, args.runners = counts(args.servers), counts(args.runners)
    args.more_runners = counts(args.more_runners)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - {"hits", "fleet"}:
        p.error("--skip takes hits and/or fleet")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.perf_counter()
    paths = endpoints(args.paths)
    print(f"Scale benchmark: fake GitHub at {args.latency_ms:g} ms, "
          f"{os.cpu_count()} CPUs", flush=True)
    # Budgets no GitHub token has: the warm-up fetches 1,800 paths of one endpoint in
    # seconds, which GitHub's secondary limit (900 points a minute) would refuse. It is the
    # set-up, not what is measured; the node keeps within both (tests/integration/test_github_limits.py).
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=[FLEET_TOKEN],
                      rate_limit=1_000_000, endpoint_points=1_000_000).start()
    tmp = Path(tempfile.mkdtemp(prefix="p2pcache-scale-"))
    hits: list[dict[str, Any]] = []
    fleet_rows: list[dict[str, Any]] = []
    try:
        if "hits" not in args.skip:
            hits = peer_hits(fake, tmp, args)
        if "fleet" not in args.skip:
            for servers in args.servers:
                series = args.runners + (args.more_runners if servers == 1 else [])
                for runners in sorted(set(series)):
                    fleet_rows.append(fleet_point(fake, tmp, servers, runners, paths, args))
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "options": {k: (sorted(v) if isinstance(v, set) else v)
                    for k, v in vars(args).items() if k != "out"},
        "peer_hits": hits,
        "fleet": fleet_rows,
        "p99_doubling": p99_doubling(fleet_rows),
        "total_s": round(time.perf_counter() - began, 1),
    }
    write(result, args.out)
    print()
    if hits:
        print(table(hits, HIT_COLUMNS))
        print()
    if fleet_rows:
        print(table(fleet_rows, FLEET_COLUMNS))
        print()
    for line in summary(result):
        print(f"  {line}")
    print(f"\nwrote {args.out / 'scale.md'}")
    print(f"wrote {args.out / 'scale.json'}")
    print(f"total {result['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
