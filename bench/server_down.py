#!/usr/bin/env python3
"""With the server down, the job does not wait (issue 22): how long `actions start` takes
until ready, and what a job's 100 GETs through its runner node cost against the same GETs
sent straight to GitHub, when the server is refused, silent or blackholed from the start,
and when it is stopped (SIGSTOP) mid-job.

    .venv/bin/python bench/server_down.py [--rounds 5] [--latency-ms 80] [--concurrency 6]

Per round and case: a fresh simulated Actions job (RUNNER_TEMP, GITHUB_ENV, ...) runs
`p2pcache actions start` with the action's defaults (base-URL mode) and `actions summary`
at the end; between them the job's 100 GETs (bench/fleet.py's endpoints, `--concurrency`
in flight from one keep-alive client) go to the node, and the same 100 GETs go straight to
the fake (80 ms a request, like fleet.py) with the token, one after the other, which goes
first alternating round by round, so both meet the same load. The cases:

  refused     nothing listens at the server's address
  silent      something accepts TCP there and never says a word (the dial hangs)
  blackholed  a firewall drops every packet to it (a network namespace; needs root)
  stopped     the server runs and the runner is connected; the server is SIGSTOPped just
              before the GETs (peer timeout: the default 5 s), once with 1 GET in flight
              and once with --concurrency; then SIGCONT, and the time until the fleet
              answers again

Writes bench/results/server_down.json: medians over the rounds, with the machine's load
average (wall times on a loaded 2-core machine are far from a hosted runner's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NAMESPACE, NodeProcess, free_port  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402
import figures  # noqa: E402
from fleet import endpoints  # noqa: E402
from outages import Blackhole, SilentListener, blackhole_missing  # noqa: E402

PEER_TIMEOUT = 5.0  # the default: what a job meets


def ghost_peer() -> str:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(create_new_key_pair().public_key))


def gets(base: str, paths: list[str], concurrency: int,
         headers: dict[str, str] | None = None) -> tuple[float, list[float], list[str]]:
    """The job's GETs: wall seconds, each call's seconds, each answer's X-P2P-Cache."""
    with httpx.Client(base_url=base, headers=headers or {}, timeout=60) as client:
        def one(path: str) -> tuple[float, str]:
            began = time.monotonic()
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return time.monotonic() - began, response.headers.get("x-p2p-cache", "")

        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, paths))
        return time.monotonic() - began, [t for t, _ in results], [s for _, s in results]


class Job:
    """One simulated Actions job: `actions start`, then the node's API, then `summary`."""

    def __init__(self, fake: FakeGitHub, bootstrap: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="p2pcache-bench-job-")
        temp = Path(self.tmp.name)
        files = {name: temp / name.lower() for name in ("GITHUB_ENV", "GITHUB_OUTPUT")}
        for path in files.values():
            path.write_text("")
        self.env = {**os.environ, **{k: str(v) for k, v in files.items()},
                    "RUNNER_TEMP": str(temp / "runner-temp"), "GITHUB_ACTIONS": "true",
                    "GH_TOKEN": FLEET_TOKEN, "GITHUB_API_URL": fake.url,
                    "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE,
                    "P2P_CACHE_LISTEN_HOST": "127.0.0.1", "MCP_P2P_BOOTSTRAP_PEERS": bootstrap}
        self.http = f"127.0.0.1:{free_port()}"
        self.base = f"http://{self.http}"

    def start(self) -> tuple[float, str]:
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "p2pcache", "actions", "start", "--port",
                               str(free_port()), "--http", self.http], env=self.env,
                              capture_output=True, text=True, timeout=120)
        took = time.monotonic() - began
        if done.returncode != 0:
            raise RuntimeError(f"actions start failed:\n{done.stdout}{done.stderr}")
        return took, done.stdout

    def close(self) -> None:
        subprocess.run([sys.executable, "-m", "p2pcache", "actions", "summary", "--http",
                        self.http], env=self.env, capture_output=True, timeout=60)
        self.tmp.cleanup()


def job_paths(paths: list[str], job: int) -> list[str]:
    """The workload's paths, new to the fleet in each job (a query GitHub ignores)."""
    return [f"{p}{'&' if '?' in p else '?'}job={job}" for p in paths]


def down_round(fake: FakeGitHub, case: str, paths: list[str], concurrency: int,
               node_first: bool = False) -> dict[str, float]:
    listener = hole = None
    peer = ghost_peer()
    if case == "refused":
        bootstrap = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{peer}"
    elif case == "silent":
        port = free_port()
        listener = SilentListener(port)
        bootstrap = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"
    else:
        hole = Blackhole()
        hole.drop(9100)
        bootstrap = f"/ip4/{hole.inside}/tcp/9100/p2p/{peer}"
    job = Job(fake, bootstrap)
    try:
        start_s, _ = job.start()
        token = {"authorization": f"token {FLEET_TOKEN}"}
        if node_first:  # (rounds alternate which goes first: neither gains from its turn)
            node_s, node_calls, sources = gets(job.base, paths, concurrency)
            direct_s, direct_calls, _ = gets(fake.url, paths, concurrency, token)
        else:
            direct_s, direct_calls, _ = gets(fake.url, paths, concurrency, token)
            node_s, node_calls, sources = gets(job.base, paths, concurrency)
        if set(sources) != {"miss"}:
            raise RuntimeError(f"answers other than direct ones: {set(sources)}")
    finally:
        job.close()
        if listener is not None:
            listener.close()
        if hole is not None:
            hole.close()
    return {"start_s": start_s, "direct_s": direct_s, "node_s": node_s,
            "ratio": node_s / direct_s,
            "added_ms_per_call": (statistics.median(node_calls)
                                  - statistics.median(direct_calls)) * 1000}


def stopped_round(fake: FakeGitHub, server: NodeProcess, paths: list[str],
                  concurrency: int) -> dict[str, float]:
    job = Job(fake, server.multiaddr())
    try:
        start_s, out = job.start()
        connected = "✓ Connected to bootstrap peer" in out
        direct_s, direct_calls, _ = gets(fake.url, paths, concurrency,
                                         {"authorization": f"token {FLEET_TOKEN}"})
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            node_s, node_calls, sources = gets(job.base, paths, concurrency)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        back_s = None
        with httpx.Client(base_url=job.base, timeout=60) as client:
            for n in range(600):
                if client.get(f"{paths[0]}?back={n}").headers.get("x-p2p-cache") == "peer":
                    back_s = time.monotonic() - resumed
                    break
                time.sleep(0.05)
    finally:
        job.close()
    waited = [t for t in node_calls if t >= PEER_TIMEOUT * 0.8]
    rest = [t for t in node_calls if t < PEER_TIMEOUT * 0.8]
    return {"start_s": start_s, "direct_s": direct_s, "node_s": node_s,
            "ratio": node_s / direct_s, "calls_waited": len(waited),
            "lost_s": node_s - direct_s,
            "added_ms_per_call": (statistics.median(rest)
                                  - statistics.median(direct_calls)) * 1000,
            "direct_answers": sources.count("miss"), "connected_at_start": float(connected),
            "fleet_again_s": back_s if back_s is not None else float("nan")}


def median_row(case: str, concurrency: int, rounds: list[dict[str, float]]) -> dict:
    row: dict[str, object] = {"case": case, "in_flight": concurrency, "rounds": len(rounds)}
    for key in rounds[0]:
        row[key] = round(statistics.median(r[key] for r in rounds), 3)
    row["start_s_max"] = round(max(r["start_s"] for r in rounds), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=80)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--paths", type=int, default=100, help="a job's GETs (100)")
    parser.add_argument("--cases", default="refused,silent,blackholed,stopped")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    cases = args.cases.split(",")
    if "blackholed" in cases and blackhole_missing():
        print(f"bench/server_down.py: skipping blackholed: {blackhole_missing()}",
              file=sys.stderr)
        cases.remove("blackholed")
    paths = endpoints(args.paths)
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=[FLEET_TOKEN],
                      rate_limit=1_000_000).start()
    load_before = os.getloadavg()[0]
    jobs = itertools.count()
    rows = []
    try:
        for case in cases:
            if case == "stopped":
                with tempfile.TemporaryDirectory(prefix="p2pcache-bench-server-") as tmp:
                    server = NodeProcess("server", Path(tmp) / "server", fake.url).start()
                    try:
                        for in_flight in (1, args.concurrency):
                            results = [stopped_round(fake, server, job_paths(paths, next(jobs)),
                                                     in_flight) for _ in range(args.rounds)]
                            rows.append(median_row(case, in_flight, results))
                            print(json.dumps(rows[-1]), flush=True)
                    finally:
                        server.stop()
                        server.http.close()
                continue
            results = [down_round(fake, case, job_paths(paths, next(jobs)), args.concurrency,
                                  node_first=n % 2 == 1) for n in range(args.rounds)]
            rows.append(median_row(case, args.concurrency, results))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        fake.stop()
    result = {"rows": rows, "latency_ms": args.latency_ms, "peer_timeout_s": PEER_TIMEOUT,
              "load_average_1m_before": round(load_before, 2),
              "load_average_1m_after": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    figures.write(args.out, "server_down.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
