#!/usr/bin/env python3
"""Fleet benchmark: what a CI fleet spends on GitHub with no cache, a per-runner HTTP
cache, and p2pcache — cold, then warm after the freshness window — and how the server
node grows with the fleet.

Workload (the guide's): N runners x 100 GETs over the same 100 endpoints, all runners
starting at the same moment. A runner is its own OS process with its own HTTP client,
issuing its GETs from a small thread pool (--concurrency, default 6 in flight), all
runners in the same order (--order same: matrix jobs of one workflow; --order shuffled
gives each runner its own). Against tests/fakegithub.py with --latency-ms 80 and its
rate-limit accounting, three scenarios:

  no_cache  each runner calls GitHub (the fake) directly with the token
  hishel    each runner uses hishel's httpx CacheClient, RFC 9111 mode as a private cache,
            with its own SQLite file (a CI job's cache: empty when the job starts)
  p2pcache  each runner talks to its own runner node (`p2pcache serve`, bootstrapped
            to one long-lived server node), which answers through the fleet

Each scenario runs cold, then warm: fresh runner processes (fresh hishel caches, fresh
runner nodes with empty data dirs, started then; the same server node) after the p2pcache
freshness window (--ttl, default 60 s) has passed; then staggered: runners arriving one
after another over --stagger seconds, each p2pcache runner node started at its runner's
arrival and its GETs begun once it is connected and has its warm start (what `actions
start` waits for); then sequential: the runners as jobs one after another, each starting
when the one before has finished (for p2pcache each a new runner node that joins a fresh
server node, takes its warm start and makes its GETs: a queue of jobs on separate machines).
Then p2pcache cold at --scale runner counts (default 1, 5, 20; a fresh server node each;
the 5-runner point is the comparison run), sampling the server node's CPU time and RSS.

Writes bench/results/fleet.json (one object per scenario and run), fleet.md (the table)
and fleet.png (the chart). Run: make bench, or python bench/fleet.py [--quick].
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue as queue_mod
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NodeProcess  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("no_cache", "hishel", "p2pcache")
REQUIRED_KEYS = ("scenario", "run", "runners", "upstream_requests", "rate_limit_units",
                 "wall_s", "median_runner_s", "p50_ms", "p99_ms")
# cold: every runner released at once, the server node empty; warm: the same, after the
# server's freshness window; staggered: runners arriving one after another, server empty;
# sequential: each runner starts when the one before finished, server empty.
RUNS = ("cold", "warm", "staggered", "sequential")
ARRIVAL = {"cold": "lockstep", "warm": "lockstep", "staggered": "staggered",
           "sequential": "sequential"}
ACCEPT = "application/vnd.github+json"
# What every node says on loopback by design; anything else in a node log is reported.
EXPECTED_WARNINGS = ("No bootstrap peers configured", "That address is private or local")


# --------------------------------------------------------------------------- workload

def endpoints(count: int = 100) -> list[str]:
    """`count` unique GitHub REST GET paths, a mix a CI job asks of its repositories:
    files, labels, milestones, issue / pull / commit list pages, branches, tags, releases."""
    org = "acme"
    repos = [f"{org}/{name}" for name in ("api", "web", "cli", "infra", "docs",
                                          "sdk-python", "sdk-go", "mobile", "data", "ops")]
    # Repository content: what the fleet shares. (A repository object, a user or an
    # organisation depends on who asks, access.py: each caller's own, not the fleet's.)
    paths = [f"/repos/{r}/contents/README.md" for r in repos]                    # 10
    paths += [f"/repos/{r}/labels?per_page=100" for r in repos]                  # 10
    paths += [f"/repos/{r}/milestones?state=open" for r in repos]                # 10
    paths += [f"/repos/{r}/issues?state=open&page={p}" for r in repos for p in (1, 2)]  # 20
    paths += [f"/repos/{r}/pulls?state=open&per_page=50&page={p}"
              for r in repos for p in (1, 2)]                                      # 20
    paths += [f"/repos/{r}/commits?per_page=30&page=1" for r in repos]            # 10
    paths += [f"/repos/{r}/branches/main" for r in repos]                         # 10
    paths += [f"/repos/{r}/tags" for r in repos[:5]]                              # 5
    paths += [f"/repos/{r}/releases/latest" for r in repos[:5]]                   # 5
    assert len(set(paths)) == len(paths) == 100
    if count <= len(paths):
        # Spread a small sample over the kinds instead of taking only repos.
        step = len(paths) / count
        return [paths[int(i * step)] for i in range(count)]
    return paths + [f"/repos/{org}/api/issues/{i + 1}" for i in range(count - len(paths))]


def repositories(paths: list[str]) -> int:
    """How many repositories the paths lie in: a runner node looks each one up (its view
    says whether it is public, access.py), once for the whole fleet."""
    return len({"/".join(p.split("/")[:4]) for p in paths if p.startswith("/repos/")})


def runner_order(paths: list[str], index: int, order: str, seed: int) -> list[str]:
    if order == "same":
        return list(paths)
    shuffled = list(paths)
    random.Random(seed * 1000 + index).shuffle(shuffled)
    return shuffled


# --------------------------------------------------------------------------- one runner

def _runner(index: int, mode: str, base: str, paths: list[str], concurrency: int,
            cache_dir: str | None, offset: float, ready: Any, go: Any, start_at: Any,
            out: Any, gate: Any = None) -> None:
    """One CI runner (its own process): build its client, wait for the common start (plus
    its own arrival offset, or, when its node joins at arrival, until the parent opens its
    gate), issue its GETs from a thread pool, report what each cost."""
    try:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"accept": ACCEPT, "user-agent": f"fleet-bench-runner/{index}"}
        if mode == "p2pcache":
            # The node holds the token; the job talks to it without one.
            client: httpx.Client = httpx.Client(base_url=base, headers=headers, timeout=120,
                                                limits=limits)
        else:
            headers["authorization"] = f"token {FLEET_TOKEN}"
            if mode == "hishel":
                from hishel import CacheOptions, SqliteStorage
                from hishel.httpx import CacheClient

                assert cache_dir is not None
                storage = SqliteStorage(database_path=Path(cache_dir) / "hishel.db")
                # RFC 9111 caching as a private (single-user) cache: GitHub marks
                # authenticated answers `private, max-age=60`, which a shared cache
                # must not store.
                client = CacheClient(base_url=base, headers=headers, timeout=120,
                                     limits=limits, storage=storage,
                                     rfc=CacheOptions(shared=False))
            else:
                client = httpx.Client(base_url=base, headers=headers, timeout=120,
                                      limits=limits)

        def fetch(path: str) -> tuple[float, int, str]:
            t0 = time.perf_counter()
            response = client.get(path)
            response.read()
            elapsed = time.perf_counter() - t0
            if mode == "p2pcache":
                source = response.headers.get("x-p2p-cache", "none")
            elif mode == "hishel":
                status = response.extensions.get("caching") or {}
                source = ("revalidated" if status.get("revalidated")
                          else "from_cache" if status.get("from_cache") else "network")
            else:
                source = "network"
            return elapsed, response.status_code, source

        ready.put(index)
        go.wait()
        if gate is not None:
            gate.wait()
        else:
            delay = start_at.value + offset - time.time()
            if delay > 0:
                time.sleep(delay)
        started, cpu0 = time.time(), time.process_time()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(fetch, paths))
        ended, cpu_s = time.time(), time.process_time() - cpu0
        client.close()
        out.put({"index": index, "started": started, "ended": ended, "cpu_s": cpu_s,
                 "latencies": [r[0] for r in results],
                 "statuses": dict(Counter(r[1] for r in results)),
                 "sources": dict(Counter(r[2] for r in results))})
    except BaseException as exc:  # report, never hang the parent
        ready.put(index)
        out.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})


def arrival_offsets(count: int, arrival: str, window: float) -> list[float]:
    """When each runner starts, in seconds after the first: all at once (lockstep: matrix
    jobs released together), or one after another, evenly over `window` (jobs arriving).
    Sequential runners start when the one before has finished: no offset of their own."""
    if arrival in ("lockstep", "sequential") or count == 1:
        return [0.0] * count
    return [i * window / count for i in range(count)]


def run_runners(mode: str, bases: list[str], paths: list[str], concurrency: int, order: str,
                seed: int, cache_root: Path | None, offsets: list[float] | None = None,
                arrive: list[Callable[[], None]] | None = None,
                sequential: bool = False) -> dict:
    """Start one process per runner, release them together (each after its arrival
    offset), collect their samples. With `arrive`, runner i's arrival calls arrive[i]
    (start its node and wait until it is connected, as `actions start` does) and its
    GETs begin right after. `sequential`: runner i arrives when runner i-1 has finished."""
    offsets = offsets or [0.0] * len(bases)
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    gates = [ctx.Event() for _ in bases] if arrive or sequential else [None] * len(bases)
    joined_s: list[float] = []
    procs = []
    for i, base in enumerate(bases):
        cache_dir = None
        if cache_root is not None:
            cache_dir = str(cache_root / f"runner{i}")
            os.makedirs(cache_dir, exist_ok=True)
        proc = ctx.Process(target=_runner, name=f"runner{i}", daemon=True,
                           args=(i, mode, base, runner_order(paths, i, order, seed),
                                 concurrency, cache_dir, offsets[i], ready, go, start_at,
                                 out, gates[i]))
        proc.start()
        procs.append(proc)
    waiting, deadline = len(procs), time.monotonic() + 120
    while waiting:
        try:
            ready.get(timeout=0.5)
            waiting -= 1
        except queue_mod.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for proc in procs:
                    proc.kill()
                raise SystemExit(f"{mode}: runner processes did not start "
                                 f"({len(dead)} died)")
    # Everyone is built and waiting: start together a moment from now.
    start_at.value = time.time() + 0.25
    go.set()
    joiners = []
    failed: list[BaseException] = []
    reports = []
    if sequential:
        time.sleep(max(0.0, start_at.value - time.time()))  # the common start: the first job
        try:
            for i in range(len(bases)):
                t0 = time.time()
                if arrive:
                    try:
                        arrive[i]()
                    except BaseException as exc:  # reported below; the runner still goes
                        failed.append(exc)
                    joined_s.append(time.time() - t0)
                gates[i].set()
                reports.append(out.get(timeout=600))
        except queue_mod.Empty:
            raise SystemExit(f"{mode}: a runner did not report within 600 s")
    elif arrive:
        def join(i: int) -> None:
            time.sleep(max(0.0, start_at.value + offsets[i] - time.time()))
            t0 = time.time()
            try:
                arrive[i]()
            except BaseException as exc:  # reported below; the runner still goes
                failed.append(exc)
            joined_s.append(time.time() - t0)
            gates[i].set()

        joiners = [threading.Thread(target=join, args=(i,), daemon=True)
                   for i in range(len(bases))]
        for thread in joiners:
            thread.start()
    try:
        while len(reports) < len(procs):
            reports.append(out.get(timeout=600))
    except queue_mod.Empty:
        raise SystemExit(f"{mode}: a runner did not report within 600 s")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    for thread in joiners:
        thread.join()
    if failed:
        raise SystemExit(f"{mode}: a runner node did not join: {failed[0]}")
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise SystemExit(f"{mode}: runner failed: {errors[0]}")
    latencies = [s for r in reports for s in r["latencies"]]
    statuses: Counter = Counter()
    sources: Counter = Counter()
    for r in reports:
        statuses.update(r["statuses"])
        sources.update(r["sources"])
    t0 = start_at.value
    reports.sort(key=lambda r: r["index"])
    return {
        "wall_s": max(r["ended"] for r in reports) - t0,
        # One runner's API time: its first request to its last answer.
        "runner_s": [r["ended"] - r["started"] for r in reports],
        # Without nodes joining at arrival: how late the last runner began.
        "start_skew_ms": max(r["started"] - t0 - offsets[r["index"]]
                             for r in reports) * 1000 if not (arrive or sequential) else 0.0,
        "node_join_s": statistics.median(joined_s) if joined_s else None,
        "latencies": latencies,
        "client_cpu_s": sum(r["cpu_s"] for r in reports),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "sources": dict(sorted(sources.items())),
    }


# --------------------------------------------------------------------------- measuring

def percentile(samples: list[float], q: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[q - 1]


class ProcessSampler:
    """CPU seconds and RSS of one process over an interval (psutil), peak RSS sampled."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            except Exception:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcessSampler:
        self.cpu_before = self._cpu()
        self.rss_before = self.proc.memory_info().rss
        self.peak_rss = self.rss_before
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = self._cpu() - self.cpu_before
        self.rss_after = self.proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, self.rss_after)


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def mb(n: int) -> float:
    return round(n / 2**20, 1)


# --------------------------------------------------------------------------- p2pcache fleet

class Fleet:
    """Server nodes (usually one) and runner nodes on loopback, against the fake."""

    def __init__(self, tmp: Path, upstream: str, ttl: float, batch: int,
                 runner_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.upstream = upstream
        self.ttl = ttl
        self.batch = batch
        self.runner_env = runner_env
        self.servers: list[NodeProcess] = []
        self.runners: list[NodeProcess] = []
        self._generation = 0

    @property
    def server(self) -> NodeProcess | None:
        return self.servers[0] if self.servers else None

    def start_server(self, name: str = "server") -> NodeProcess:
        """One more server node: runners started after it bootstrap every server."""
        server = NodeProcess(name, self.tmp / name, self.upstream, ttl=self.ttl).start()
        self.servers.append(server)
        return server

    def start_runners(self, count: int) -> float:
        """Fresh runner nodes (empty data dirs), started `batch` at a time so a 2-core
        machine is not asked to boot 20 Python processes at once; each one is connected
        to every server before the run. Returns the median seconds one took to be ready."""
        assert self.server is not None
        self.stop_runners()
        self._generation += 1
        addr = ",".join(s.multiaddr() for s in self.servers)
        took: list[float] = []
        for first in range(0, count, self.batch):
            group = []
            for i in range(first, min(count, first + self.batch)):
                name = f"{self.server.name}-g{self._generation}-runner{i}"
                node = NodeProcess(name, self.tmp / name, self.upstream, bootstrap=addr,
                                   ttl=self.ttl, env=self.runner_env)
                group.append((node, time.perf_counter()))
                node.start(wait=False)
            for node, t0 in group:
                node.wait_ready(timeout=120)
                node.wait_for_peers(len(self.servers), timeout=120)
                wait_warm(node)
                took.append(time.perf_counter() - t0)
                self.runners.append(node)
        self.settle()
        return statistics.median(took)

    def runners_joining(self, count: int) -> list[Callable[[], None]]:
        """Fresh runner nodes that start only when called, each then waiting until it is
        connected to the server and has its warm start (what `actions start` waits for): a
        job's node joins when its job arrives, and takes the fleet's warm start then."""
        assert self.server is not None
        self.stop_runners()
        self._generation += 1
        addr = ",".join(s.multiaddr() for s in self.servers)
        arrive = []
        for i in range(count):
            name = f"{self.server.name}-g{self._generation}-runner{i}"
            node = NodeProcess(name, self.tmp / name, self.upstream, bootstrap=addr,
                               ttl=self.ttl, env=self.runner_env)
            self.runners.append(node)

            def start(node: NodeProcess = node) -> None:
                node.start(wait=False)
                node.wait_ready(timeout=120)
                node.wait_for_peers(1, timeout=120)
                wait_warm(node)
            arrive.append(start)
        return arrive

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until the nodes' start-up work (imports, key derivation, dials) is done,
        so the run measures answering requests, not booting."""
        import psutil

        procs = [psutil.Process(n.proc.pid) for n in self.runners + self.servers
                 if n.proc is not None]

        def total() -> float:
            return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

        deadline = time.monotonic() + timeout
        last = total()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = total()
            if now - last < 0.3 * 0.05 * len(procs) + 0.01:  # under ~5% of a core each
                return
            last = now

    def stop_runners(self) -> None:
        for node in self.runners:  # all shut down at once, not 50 one after another
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.runners:
            if node.proc is not None:
                _stop_quietly(node)
            else:
                node.http.close()
            shutil.rmtree(node.data_dir, ignore_errors=True)
        self.runners = []

    def stop(self) -> None:
        self.stop_runners()
        for server in self.servers:
            _stop_quietly(server)
        self.servers = []

    def warnings(self) -> list[str]:
        nodes = [n for n in self.servers + self.runners if n.proc]
        lines = []
        for node in nodes:
            for line in node.log().splitlines():
                if any(mark in line for mark in ("⚠", "✗", "Traceback", "ERROR")) and \
                        not any(ok in line for ok in EXPECTED_WARNINGS):
                    lines.append(f"{node.name}: {line.strip()}")
        return lines


def wait_warm(node: NodeProcess, bound: float = 5.0) -> None:
    """Until the node's warm start is done, as `actions start` waits (bounded alike)."""
    deadline = time.monotonic() + bound
    while node.stats().get("warm_start") == "waiting" and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop_quietly(node: NodeProcess) -> None:
    try:
        node.stop()
    except AssertionError:
        pass
    node.http.close()


# --------------------------------------------------------------------------- one scenario run

def measure(fake: FakeGitHub, scenario: str, run: str, bases: list[str], paths: list[str],
            args: argparse.Namespace, cache_root: Path | None = None,
            fleet: Fleet | None = None, node_start_s: float | None = None,
            arrival: str = "lockstep", arrive: list[Callable[[], None]] | None = None) -> dict:
    import psutil

    fake.reset()
    sampler = None
    # Nodes that join at arrival are not running yet: their CPU counts from their start.
    runner_pids = [n.proc.pid for n in fleet.runners if n.proc] if fleet else []
    runner_cpu_before = cpu_seconds(runner_pids) if runner_pids else 0.0
    # What running nodes counted before the run (GitHub confirmed their token as they
    # joined, as under `actions start`): the run's counts are the difference.
    runners_before = [n.stats() if n.proc else {} for n in fleet.runners] if fleet else []
    server_before: dict = {}
    if fleet is not None and fleet.server is not None:
        assert fleet.server.proc is not None
        server_before = fleet.server.stats()
        sampler = ProcessSampler(fleet.server.proc.pid)
        sampler.__enter__()
    load_1m = os.getloadavg()[0]
    machine_before = psutil.cpu_times()
    try:
        got = run_runners(scenario, bases, paths, args.concurrency, args.order, args.seed,
                          cache_root, arrival_offsets(len(bases), arrival, args.stagger),
                          arrive, sequential=arrival == "sequential")
    finally:
        if sampler is not None:
            sampler.__exit__(None, None, None)
    machine_after = psutil.cpu_times()
    stats = fake.stats()
    lat = got["latencies"]
    busy = sum(machine_after) - sum(machine_before)
    idle = (machine_after.idle + machine_after.iowait) - (machine_before.idle
                                                          + machine_before.iowait)
    row: dict[str, Any] = {
        "scenario": scenario,
        "run": run,
        "runners": len(bases),
        "upstream_requests": stats["requests"],
        "rate_limit_units": stats["units"],
        "wall_s": round(got["wall_s"], 3),
        "median_runner_s": round(statistics.median(got["runner_s"]), 3),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "server_cpu_s": None,
        "server_rss_mb": None,
        "not_modified": stats["not_modified"],
        "client_requests": len(lat),
        "unique_paths": len(paths),
        "repositories": repositories(paths),
        "statuses": got["statuses"],
        "answers": got["sources"],
        "arrival": arrival,
        "stagger_s": args.stagger if arrival == "staggered" else 0.0,
        "runner_s": [round(t, 3) for t in got["runner_s"]],
        "start_skew_ms": round(got["start_skew_ms"], 1),
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "order": args.order,
        "client_cpu_s": round(got["client_cpu_s"], 3),
        # How busy the whole machine was (all cores, every process, ours or not).
        "machine_cpu_busy_pct": round(100 * (1 - idle / busy), 1) if busy > 0 else None,
        "loadavg_1m_before": round(load_1m, 2),
    }
    if sampler is not None:
        assert fleet is not None and fleet.server is not None
        server = fleet.server.stats()
        row["server_cpu_s"] = round(sampler.cpu_s, 3)
        row["server_rss_mb"] = mb(sampler.peak_rss)
        row["server_rss_before_mb"] = mb(sampler.rss_before)
        row["server_rss_after_mb"] = mb(sampler.rss_after)
        runner_pids = [n.proc.pid for n in fleet.runners if n.proc]
        row["runner_nodes_cpu_s"] = round(cpu_seconds(runner_pids) - runner_cpu_before, 3)
        row["runner_nodes_joined_at_arrival"] = arrive is not None  # CPU includes their start
        row["node_join_s"] = None if got["node_join_s"] is None else round(got["node_join_s"], 2)
        row["node_start_s"] = round(node_start_s, 2) if node_start_s is not None else None
        # The server's own counters over this run: what it answered its peers with.
        for key in ("upstream_requests", "not_modified", "local_hits", "coalesced", "misses",
                    "peer_requests_served", "refreshes", "refreshes_not_modified",
                    "refreshes_changed", "refreshes_skipped", "warm_offers"):
            if key in server:
                row[f"server_{key}"] = server[key] - server_before.get(key, 0)
        row["server_entries"] = server.get("entries")
        runner_stats = [n.stats() for n in fleet.runners]
        for now, before in zip(runner_stats, runners_before):
            for key in ("upstream_requests", "credential_checks", "client_credential_requests"):
                now[key] = now.get(key, 0) - (before.get(key) or 0)
        row["runner_upstream_requests"] = sum(r.get("upstream_requests", 0)
                                              for r in runner_stats)
        # Asked with a client's own credentials: whether they are valid (free, once a
        # freshness window per client), and what depends on who asks (none here).
        row["runner_credential_checks"] = sum(r.get("credential_checks", 0)
                                              for r in runner_stats)
        row["runner_client_credential_requests"] = sum(
            r.get("client_credential_requests", 0) for r in runner_stats)
        row["runner_peer_failures"] = sum(r.get("peer_failures", 0) for r in runner_stats)
        row["runner_warm_start_entries"] = sum(r.get("warm_start_entries", 0)
                                               for r in runner_stats)
        row["runner_local_hits"] = sum(r.get("local_hits", 0) for r in runner_stats)
    bad = {k: v for k, v in got["statuses"].items() if k != "200"}
    if bad:
        raise SystemExit(f"{scenario} {run}: non-200 answers {bad}")
    print(f"  {scenario:<9} {run:<9} runners={len(bases):<3} requests={stats['requests']:<5} "
          f"units={stats['units']:<5} wall={got['wall_s']:.2f}s "
          f"median runner={row['median_runner_s']:.2f}s "
          f"p50={row['p50_ms']:.1f}ms p99={row['p99_ms']:.1f}ms "
          f"cpu busy={row['machine_cpu_busy_pct']}% answers={got['sources']}", flush=True)
    return row


# --------------------------------------------------------------------------- reporting

COLUMNS = [("scenario", "scenario", "{}"), ("run", "run", "{}"), ("runners", "runners", "{}"),
           ("upstream_requests", "upstream req", "{}"), ("not_modified", "of which 304", "{}"),
           ("rate_limit_units", "units", "{}"), ("wall_s", "wall s", "{:.2f}"),
           ("median_runner_s", "median runner s", "{:.2f}"),
           ("p50_ms", "p50 ms", "{:.1f}"), ("p99_ms", "p99 ms", "{:.1f}"),
           ("server_cpu_s", "server CPU s", "{:.2f}"),
           ("server_rss_mb", "server peak RSS MB", "{:.1f}"),
           ("machine_cpu_busy_pct", "machine CPU busy %", "{:.0f}"),
           ("loadavg_1m_before", "load 1 min before", "{:.1f}")]


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "–" if value is None else fmt.format(value)


def text_table(rows: list[dict]) -> str:
    cells = [[h for _, h, _ in COLUMNS]] + [[_cell(r, k, f) for k, _, f in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    sep = "| " + " | ".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + " |"
    body = ["| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """Issue 13's targets, each against no cache in the same run."""
    def find(scenario: str, run: str) -> dict | None:
        for r in rows:
            if r["scenario"] == scenario and r["run"] == run and r.get("series") != "scale":
                return r
        return None

    def faster(p2p: dict, base: dict, key: str) -> float:
        return base[key] / p2p[key] if p2p[key] > 0 else float("inf")

    def once(row: dict) -> bool:
        """Each unique request reached GitHub at most once for the fleet: each path, and
        each repository's view (whether it is public) that the runner nodes looked up."""
        return row["rate_limit_units"] <= row["unique_paths"] + row["repositories"]

    checks = []
    cold, warm, staggered, sequential = (find("p2pcache", run) for run in RUNS)
    base = {run: find("no_cache", run) for run in RUNS}
    if cold:
        checks.append(("cold lockstep: units = unique requests", once(cold),
                       f"{cold['rate_limit_units']} units for {cold['unique_paths']} paths "
                       f"in {cold['repositories']} repositories"))
        if base["cold"]:
            x = faster(cold, base["cold"], "wall_s")
            checks.append(("cold lockstep: wall time no slower than 0.9x no cache", x >= 0.9,
                           f"{x:.2f}x ({base['cold']['wall_s']:.2f} s vs {cold['wall_s']:.2f} s)"))
    if warm:
        checks.append(("warm: <= 5 units", warm["rate_limit_units"] <= 5,
                       f"{warm['rate_limit_units']} units, {warm['not_modified']} free 304s"))
        if base["warm"]:
            x = faster(warm, base["warm"], "median_runner_s")
            checks.append(("warm: median runner API time >= 10x faster than no cache", x >= 10,
                           f"{x:.2f}x ({base['warm']['median_runner_s']:.2f} s vs "
                           f"{warm['median_runner_s']:.2f} s)"))
    if staggered:
        checks.append(("staggered: units = unique requests", once(staggered),
                       f"{staggered['rate_limit_units']} units"))
        if base["staggered"]:
            x = faster(staggered, base["staggered"], "median_runner_s")
            checks.append(("staggered: median runner API time >= 5x faster than no cache",
                           x >= 5, f"{x:.2f}x ({base['staggered']['median_runner_s']:.2f} s "
                                   f"vs {staggered['median_runner_s']:.2f} s)"))
    if sequential:
        checks.append(("sequential: units = unique requests", once(sequential),
                       f"{sequential['rate_limit_units']} units"))
        if base["sequential"]:
            x = faster(sequential, base["sequential"], "median_runner_s")
            checks.append(("sequential: median runner API time >= 10x faster than no cache",
                           x >= 10, f"{x:.2f}x ({base['sequential']['median_runner_s']:.2f} s "
                                    f"vs {sequential['median_runner_s']:.2f} s)"))
    for r in rows:
        if r.get("series") == "scale":
            checks.append((f"cold lockstep, {r['runners']} runners: units = unique requests",
                           once(r), f"{r['rate_limit_units']} units"))
    return checks


def chart(rows: list[dict], scale_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [r for r in rows if r.get("series") != "scale"]
    short = {"no_cache": "no cache", "hishel": "hishel\n(per runner)", "p2pcache": "p2pcache"}
    labels = [f"{short[r['scenario']]}\n{r['run']}" for r in main]
    colors = {"no_cache": "#9e9e9e", "hishel": "#5b8ff9", "p2pcache": "#2ca02c"}
    panels = 3 if len(scale_rows) > 1 else 2
    bars_width = max(6.4, 0.75 * len(main))  # room for each bar's two-line label
    widths = [bars_width, bars_width] + ([6.4] if panels == 3 else [])
    fig, axes = plt.subplots(1, panels, figsize=(sum(widths), 5.4),
                             gridspec_kw={"width_ratios": widths})
    n = main[0]["runners"] if main else 0
    paths = main[0]["unique_paths"] if main else 0
    for ax, key, title, fmt in (
            (axes[0], "rate_limit_units", "rate-limit units spent", "{:.0f}"),
            (axes[1], "median_runner_s", "median runner's API time (s)", "{:.2f}")):
        values = [r[key] for r in main]
        texts = [fmt.format(r[key]) + (f"\n+{r['not_modified']} free 304s"
                                       if key == "rate_limit_units" and r["not_modified"]
                                       else "") for r in main]
        bars = ax.bar(range(len(main)), values, color=[colors[r["scenario"]] for r in main],
                      edgecolor=["none" if r["run"] == "cold" else "black" for r in main],
                      hatch=None)
        for bar, r in zip(bars, main):
            bar.set_hatch({"warm": "//", "staggered": "..", "sequential": "xx"}.get(r["run"]))
        for i, (v, text) in enumerate(zip(values, texts)):
            ax.annotate(text, (i, v), ha="center", va="bottom", fontsize=9,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(main)), labels, fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, max(values) * 1.15 if values and max(values) > 0 else 1)
        ax.grid(axis="y", alpha=0.3)
    if panels == 3:
        ax = axes[2]
        ordered = sorted(scale_rows, key=lambda r: r["runners"])
        x = range(len(ordered))
        width = 0.38
        cpu = [r["server_cpu_s"] for r in ordered]
        rss = [r["server_rss_mb"] for r in ordered]
        b1 = ax.bar([i - width / 2 for i in x], cpu, width, color="#ff7f0e",
                    label="server CPU s (run)")
        ax.set_ylabel("server CPU seconds during the run")
        ax2 = ax.twinx()
        b2 = ax2.bar([i + width / 2 for i in x], rss, width, color="#8c564b",
                     label="server peak RSS MB")
        ax2.set_ylabel("server peak RSS (MB)")
        rss_labels = [f"{r['server_rss_mb']:.0f}\n(from {r['server_rss_before_mb']:.0f})"
                      for r in ordered]
        cpu_labels = [f"{v:.2f}" for v in cpu]
        for bars, vals, axis, texts in ((b1, cpu, ax, cpu_labels), (b2, rss, ax2, rss_labels)):
            for bar, v, text in zip(bars, vals, texts):
                axis.annotate(text, (bar.get_x() + bar.get_width() / 2, v),
                              ha="center", va="bottom", fontsize=8.5, xytext=(0, 2),
                              textcoords="offset points")
        ax.set_ylim(0, max(cpu) * 1.25 if max(cpu) > 0 else 1)
        ax2.set_ylim(0, max(rss) * 1.3 if max(rss) > 0 else 1)
        ax.set_xticks(list(x), [f"{r['runners']} runner{'s' if r['runners'] > 1 else ''}\n"
                                f"{r['rate_limit_units']} units, {r['wall_s']:.2f} s"
                                for r in ordered], fontsize=8.5)
        ax.set_title("p2pcache cold: server node vs fleet size")
        ax.legend(handles=[b1, b2], loc="upper left", fontsize=8)
    runs = {r["run"] for r in main}
    legend = [text for run, text in (
        ("cold", "cold: all start together"),
        ("warm", "warm (//): the same after the freshness window"),
        ("staggered", "staggered (..): one after another over "
                      f"{max(r.get('stagger_s') or 0 for r in main):g} s"),
        ("sequential", "sequential (xx): each job when the one before has finished, each a "
                       "new runner node")) if run in runs]
    fig.suptitle(f"{n} runners x {paths} GETs over the same {paths} endpoints, "
                 f"GitHub latency {main[0]['latency_ms']:.0f} ms.\n" + "; ".join(legend),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runners", type=int, default=5)
    p.add_argument("--paths", type=int, default=100, help="unique endpoints (and GETs per runner)")
    p.add_argument("--latency-ms", type=float, default=80.0)
    p.add_argument("--concurrency", type=int, default=6, help="GETs in flight per runner")
    p.add_argument("--order", choices=("same", "shuffled"), default="same",
                   help="each runner's order of the endpoints: all the same (matrix jobs "
                        "running one script), or each its own seeded shuffle")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stagger", type=float, default=5.0,
                   help="staggered run: seconds over which the runners arrive, evenly")
    p.add_argument("--ttl", type=float, default=60.0,
                   help="p2pcache freshness (P2P_CACHE_TTL); the warm run waits it out")
    p.add_argument("--scale", default="1,5,20", help="runner counts for the p2pcache scale runs")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--runs", default=",".join(RUNS),
                   help="which runs (p2pcache's warm run measures a cold one first; the "
                        "scale points come with cold)")
    p.add_argument("--batch", type=int, default=2, help="runner nodes booted at a time")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 runners x 10 paths, 5 ms latency, scale 1,2")
    args = p.parse_args(argv)
    if args.quick:
        args.runners, args.paths, args.latency_ms, args.scale = 2, 10, 5.0, "1,2"
        args.stagger = min(args.stagger, 1.0)
        args.ttl = min(args.ttl, 1.0)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if set(args.runs) - set(RUNS) or not args.runs:
        p.error(f"--runs: choose from {', '.join(RUNS)}")
    args.scale = sorted({int(s) for s in args.scale.split(",") if s.strip()}) \
        if "p2pcache" in args.scenarios and "cold" in args.runs else []
    if "hishel" in args.scenarios:
        try:
            import hishel.httpx  # noqa: F401
        except ImportError:
            p.error("scenario hishel needs hishel: pip install -e 'node[bench]'")
    if not args.no_chart:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("the chart needs matplotlib: pip install -e 'node[bench]' (or --no-chart)")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the nodes are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = endpoints(args.paths)
    began = time.perf_counter()
    rows: list[dict] = []
    scale_rows: list[dict] = []
    notes: list[str] = []
    print(f"Fleet benchmark: {args.runners} runners x {len(paths)} GETs, latency "
          f"{args.latency_ms:.0f} ms, {args.concurrency} in flight per runner, order "
          f"{args.order}, p2pcache TTL {args.ttl:g} s", flush=True)
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=[FLEET_TOKEN],
                      rate_limit=1_000_000).start()
    fake.set_latency(args.latency_ms)
    tmp = Path(tempfile.mkdtemp(prefix="p2pcache-fleet-"))
    fleet: Fleet | None = None
    try:
        direct = [fake.url] * args.runners
        if "no_cache" in args.scenarios:
            for run in args.runs:
                rows.append(measure(fake, "no_cache", run, direct, paths, args,
                                    arrival=ARRIVAL[run]))
        if "hishel" in args.scenarios:
            for run in args.runs:
                # A new CI job: a new runner with an empty cache of its own.
                cache_root = tmp / f"hishel-{run}"
                rows.append(measure(fake, "hishel", run, direct, paths, args,
                                    cache_root=cache_root, arrival=ARRIVAL[run]))
                shutil.rmtree(cache_root, ignore_errors=True)
        if "p2pcache" in args.scenarios and ("cold" in args.runs or "warm" in args.runs):
            fleet = Fleet(tmp, fake.url, args.ttl, args.batch)
            fleet.start_server()
            started = fleet.start_runners(args.runners)
            cold = measure(fake, "p2pcache", "cold", [n.url for n in fleet.runners], paths,
                           args, fleet=fleet, node_start_s=started)
            cold_done = time.time()
            if "cold" in args.runs:
                rows.append(cold)
                scale_rows.append(cold)
            notes += fleet.warnings()
            if "warm" in args.runs:
                # The warm run: new jobs after the freshness window, so new runner nodes
                # with empty data dirs, started then (each takes the server's warm start as
                # it joins); the same server node, whose refresh-ahead kept the hot entries
                # fresh.
                fleet.stop_runners()
                wait = cold_done + args.ttl + 0.5 - time.time()
                if wait > 0:
                    time.sleep(wait)
                started = fleet.start_runners(args.runners)
                rows.append(measure(fake, "p2pcache", "warm", [n.url for n in fleet.runners],
                                    paths, args, fleet=fleet, node_start_s=started))
                notes += fleet.warnings()
            fleet.stop()
            fleet = None
        if "p2pcache" in args.scenarios:
            # The staggered run: jobs arriving one after another over --stagger seconds, on
            # a fresh (empty) server node with the default TTL, so no entry goes stale
            # within the window: the first runner pays for the paths, later ones share.
            # The sequential run: jobs one after another, as a queue of jobs on separate
            # machines meets the fleet: each a new runner node that joins a fresh server,
            # takes its warm start and makes its GETs once the job before has finished.
            for run in ("staggered", "sequential"):
                if run not in args.runs:
                    continue
                fleet = Fleet(tmp, fake.url, 60.0, args.batch)
                fleet.start_server(run)
                arrive = fleet.runners_joining(args.runners)
                rows.append(measure(fake, "p2pcache", run, [n.url for n in fleet.runners],
                                    paths, args, fleet=fleet, arrival=run, arrive=arrive))
                notes += fleet.warnings()
                fleet.stop()
            for count in args.scale:
                if count == args.runners:
                    continue  # the comparison run above is this point
                # A fresh server node each, so every point starts cold; the default TTL so
                # a slow big run does not turn its own early entries stale.
                fleet = Fleet(tmp, fake.url, 60.0, args.batch)
                fleet.start_server(f"scale{count}")
                print(f"  starting {count} runner node(s) ...", flush=True)
                started = fleet.start_runners(count)
                row = measure(fake, "p2pcache", "cold", [n.url for n in fleet.runners], paths,
                              args, fleet=fleet, node_start_s=started)
                row["series"] = "scale"
                scale_rows.append(row)
                rows.append(row)
                notes += fleet.warnings()
                fleet.stop()
            fleet = None
    finally:
        if fleet is not None:
            fleet.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "platform": platform.platform()}
    for row in rows:
        row["machine_cpus"] = machine["cpus"]
        missing = [k for k in REQUIRED_KEYS if k not in row]
        assert not missing, f"row lacks {missing}"
    json_path = args.out / "fleet.json"
    json_path.write_text(json.dumps(rows, indent=2) + "\n")
    checks = targets(rows)

    table = text_table(rows)
    print()
    print(table)
    print()
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {detail}")
    if notes:
        print("\nnode warnings during the runs:")
        for line in sorted(set(notes))[:20]:
            print(f"  {line}")

    md = ["# Fleet benchmark results\n",
          f"{args.runners} runners x {len(paths)} GETs over the same {len(paths)} endpoints; "
          f"cold and warm: all starting together, staggered: one after another over "
          f"{args.stagger:g} s, sequential: each when the one before has finished; fake "
          f"GitHub latency {args.latency_ms:.0f} ms; "
          f"{args.concurrency} GETs in flight per runner, order {args.order}; p2pcache TTL "
          f"{args.ttl:g} s. Machine: {machine['cpus']} CPUs, Python {machine['python']}, "
          f"{machine['platform']}.\n",
          markdown_table(rows), "",
          *[f"- {'PASS' if ok else 'MISS'} {name}: {detail}" for name, ok, detail in checks],
          ""]
    (args.out / "fleet.md").write_text("\n".join(md))
    if not args.no_chart:
        png = args.out / "fleet.png"
        chart(rows, scale_rows, png)
        print(f"\nwrote {png}")
    print(f"wrote {args.out / 'fleet.md'}")
    print(f"wrote {json_path}")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
