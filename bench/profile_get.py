#!/usr/bin/env python3
"""Where the CPU of a GET goes on its way runner node -> server node, in the cold lockstep run.

Runs bench/fleet.py's p2pcache cold run (5 runners x 100 GETs over the same 100 paths, all
starting together, fake GitHub at 80 ms) while py-spy samples the server node and one runner
node: only the thread holding the GIL (--gil), so a sample is Python running, never a wait
in epoll or a socket call. Each process's CPU seconds over the run (psutil), split in user
(Python, OpenSSL, SQLite) and system (the kernel: loopback TCP, epoll), divided by the GETs
it handled gives CPU per GET; the user share is spread over the buckets in proportion to
the samples. Every sample is put in one bucket by the innermost frame that names a part:

  noise      py-libp2p's Noise secure channel (libp2p/security/noise, noiseprotocol)
  yamux      py-libp2p's stream multiplexer (libp2p/stream_muxer)
  libp2p     the rest of py-libp2p (swarm, streams, peerstore, multiselect, identify, ...)
  aead       p2pcache's AES-256-GCM envelope (cryptography) and key derivation
  protocol   p2pcache's wire messages (protocol.py, msgpack/cbor/json framing in it)
  http       the local HTTP API: h11 parsing and the node's handler (http_api.py)
  upstream   the GitHub client: httpx / httpcore / upstream.py
  sqlite     store.py and sqlite3
  json       json encoding and decoding outside the parts above
  trio       trio's scheduler and socket I/O (epoll, send/recv calls); in the second view
             ("charged to its caller") only trio's run loop itself
  p2pcache   the node's own code elsewhere (cache, policy, coalescing, mesh, stats)
  other      anything else

Writes bench/results/profile_get.json (buckets, top functions by own samples, CPU per GET)
and the collapsed stacks next to it (profile_get.<node>.txt, for flamegraph tools).
Needs py-spy (the bench extra) and ptrace rights over child processes (root, or
kernel.yama.ptrace_scope=0). Run: python bench/profile_get.py [--runners 5] [--paths 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fleet as fleet_bench  # noqa: E402
from fleet import FLEET_TOKEN, FakeGitHub, Fleet, cpu_seconds, endpoints, run_runners  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# (bucket, substrings of a frame's "function (file:line)"), innermost match wins; first
# listed wins within one frame.
BUCKETS = [
    ("noise", ("libp2p/security/noise", "/noise/")),
    ("yamux", ("libp2p/stream_muxer",)),
    ("libp2p", ("libp2p/", "multiaddr/", "google/protobuf")),
    ("aead", ("cryptography/", "p2pcache/crypto.py")),
    ("protocol", ("p2pcache/protocol.py",)),
    ("http", ("h11/", "p2pcache/http_api.py")),
    ("upstream", ("httpx/", "httpcore/", "p2pcache/upstream.py")),
    ("sqlite", ("p2pcache/store.py", "sqlite3")),
    ("json", ("json/",)),
    ("trio", ("trio/",)),
    ("p2pcache", ("p2pcache/",)),
]


# Plumbing that works on behalf of its caller: a sample there is charged to the innermost
# frame above it that is not plumbing ("trio" only when trio's own run loop is all there is).
PLUMBING = ("trio/", "outcome/", "contextlib.py", "threading.py", "<attrs generated",
            "asyncio/", "queue.py", "selectors.py", "functools.py", "abc.py", "typing.py")


# Frames below trio.run: a sample whose first non-plumbing frame is one of these is trio's
# run loop itself (scheduling, deadlines, epoll bookkeeping).
RUN_LOOP = ("p2pcache/cli.py", "p2pcache/__main__.py", "runpy")


def bucket_of(stack: list[str], *, through_plumbing: bool = False) -> str:
    for frame in reversed(stack):  # innermost first
        if through_plumbing and any(mark in frame for mark in PLUMBING):
            continue
        if through_plumbing and any(mark in frame for mark in RUN_LOOP):
            return "trio"
        for name, marks in BUCKETS:
            if any(mark in frame for mark in marks):
                return name
        if through_plumbing:
            return "other"
    return "trio" if through_plumbing else "other"


def read_collapsed(path: Path) -> Counter:
    """py-spy's raw format: 'frame;frame;...;frame COUNT' per line, outermost first."""
    stacks: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    return stacks


def summarize(stacks: Counter, cpu: tuple[float, float], gets: int) -> dict:
    user_s, system_s = cpu
    cpu_s = user_s + system_s
    total = sum(stacks.values()) or 1
    buckets: Counter = Counter()
    owners: Counter = Counter()
    owner_frames: Counter = Counter()
    own: Counter = Counter()
    for stack, n in stacks.items():
        frames = stack.split(";")
        # py-spy puts the thread name first ("process 123:..." / "thread (0x..)").
        frames = [f for f in frames if "(" in f and ":" in f]
        buckets[bucket_of(frames)] += n
        owners[bucket_of(frames, through_plumbing=True)] += n
        owner = next((f for f in reversed(frames)
                      if not any(mark in f for mark in PLUMBING + RUN_LOOP)), "trio run loop")
        owner_frames[owner] += n
        if frames:
            own[frames[-1]] += n
    per_get_ms = 1000 * cpu_s / gets
    user_ms = 1000 * user_s / gets
    return {
        "cpu_s": round(cpu_s, 3), "user_s": round(user_s, 3), "system_s": round(system_s, 3),
        "gets": gets,
        "cpu_ms_per_get": round(per_get_ms, 3),
        "system_ms_per_get": round(1000 * system_s / gets, 3),
        "samples": total,
        "buckets_pct": {k: round(100 * v / total, 1) for k, v in buckets.most_common()},
        # The user CPU per GET, spread over the buckets by their share of the samples.
        "buckets_user_ms_per_get": {k: round(user_ms * v / total, 3)
                                    for k, v in buckets.most_common()},
        # The same, with trio's (and other plumbing's) samples charged to their caller.
        "owners_pct": {k: round(100 * v / total, 1) for k, v in owners.most_common()},
        "owners_user_ms_per_get": {k: round(user_ms * v / total, 3)
                                   for k, v in owners.most_common()},
        "top_own": [{"frame": f, "pct": round(100 * n / total, 1)}
                    for f, n in own.most_common(25)],
        "top_callers_of_plumbing": [{"frame": f, "pct": round(100 * n / total, 1)}
                                    for f, n in owner_frames.most_common(25)],
    }


def cpu_split(pid: int) -> tuple[float, float]:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runners", type=int, default=5)
    p.add_argument("--paths", type=int, default=100)
    p.add_argument("--latency-ms", type=float, default=80.0)
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("needs py-spy: pip install -e 'node[bench]'")
    signal.signal(signal.SIGTERM, fleet_bench._terminate)
    paths = endpoints(args.paths)
    tmp = Path(tempfile.mkdtemp(prefix="p2pcache-profile-"))
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=[FLEET_TOKEN],
                      rate_limit=1_000_000).start()
    fleet = Fleet(tmp, fake.url, 60.0, 2)
    report: dict = {"runners": args.runners, "paths": len(paths),
                    "latency_ms": args.latency_ms, "concurrency": args.concurrency}
    try:
        server = fleet.start_server()
        fleet.start_runners(args.runners)
        runner = fleet.runners[0]
        targets = {"server": server, "runner0": runner}
        pids = {name: node.proc.pid for name, node in targets.items()}  # type: ignore[union-attr]
        all_runner_pids = [n.proc.pid for n in fleet.runners]  # type: ignore[union-attr]
        spies = {}
        for name, pid in pids.items():
            raw = tmp / f"{name}.txt"
            spies[name] = (raw, subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format",
                 "raw", "--output", str(raw), "--nonblocking", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        time.sleep(1.0)  # py-spy attached
        before = {name: cpu_split(pid) for name, pid in pids.items()}
        runners_before = cpu_seconds(all_runner_pids)
        fake.reset()
        got = run_runners("p2pcache", [n.url for n in fleet.runners], paths, args.concurrency,
                          "same", 1, None)
        after = {name: cpu_split(pid) for name, pid in pids.items()}
        runners_cpu = cpu_seconds(all_runner_pids) - runners_before
        for raw, spy in spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for raw, spy in spies.values():
            spy.wait(timeout=60)
        gets = len(got["latencies"])
        served = {"server": gets, "runner0": len(paths)}
        stats = fake.stats()
        report.update({
            "wall_s": round(got["wall_s"], 3),
            "median_runner_s": round(sorted(got["runner_s"])[len(got["runner_s"]) // 2], 3),
            "units": stats["units"], "answers": got["sources"],
            "runner_nodes_cpu_ms_per_get": round(1000 * runners_cpu / gets, 3),
            "client_cpu_ms_per_get": round(1000 * got["client_cpu_s"] / gets, 3),
            "nodes": {}})
        args.out.mkdir(parents=True, exist_ok=True)
        for name, (raw, _) in spies.items():
            if not raw.exists():
                raise SystemExit(f"py-spy wrote nothing for {name}")
            shutil.copy(raw, args.out / f"profile_get.{name}.txt")
            cpu = (after[name][0] - before[name][0], after[name][1] - before[name][1])
            report["nodes"][name] = summarize(read_collapsed(raw), cpu, served[name])
    finally:
        fleet.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = args.out / "profile_get.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"cold lockstep, {args.runners} runners x {len(paths)} GETs: wall "
          f"{report['wall_s']} s, median runner {report['median_runner_s']} s, "
          f"{report['units']} units; runner nodes {report['runner_nodes_cpu_ms_per_get']} ms "
          f"CPU per GET, clients {report['client_cpu_ms_per_get']} ms")
    for name, node in report["nodes"].items():
        print(f"\n{name}: {node['cpu_ms_per_get']} ms CPU per GET it handled, of which "
              f"{node['system_ms_per_get']} ms in the kernel ({node['gets']} GETs, "
              f"{node['samples']} samples of Python holding the GIL)")
        print("  innermost part            | trio charged to its caller")
        inner = list(node["buckets_pct"].items())
        outer = list(node["owners_pct"].items())
        for i in range(max(len(inner), len(outer))):
            left = (f"{inner[i][0]:<9} {inner[i][1]:5.1f}% "
                    f"{node['buckets_user_ms_per_get'][inner[i][0]]:6.3f} ms"
                    if i < len(inner) else "")
            right = (f"{outer[i][0]:<9} {outer[i][1]:5.1f}% "
                     f"{node['owners_user_ms_per_get'][outer[i][0]]:6.3f} ms"
                     if i < len(outer) else "")
            print(f"  {left:<26}| {right}")
        print("  top functions, trio's samples charged to their caller:")
        for row in node["top_callers_of_plumbing"][:12]:
            print(f"    {row['pct']:5.1f}%  {row['frame']}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
