"""GraphQL points a fleet spends for gh's commands, direct and through the fleet (issue 23).

A server node and --runners runner nodes (real processes on loopback) against the fake
GitHub (--latency-ms, default 80), and the real gh (Debian's) on each runner's Unix socket,
as a job uses it. Each runner, one after another (--rounds times), runs the five gh commands
CI scripts use most (`pr list`, `issue list`, `pr view N --json ...`, `repo view`, `release
list`) with its own job token. Measured:

  points      GraphQL points GitHub charged (the fake's `graphql` bucket): through the fleet,
              and what the same commands cost direct (each job's own, counted by the fake
              for one run of the commands, times runners x rounds)
  requests    GraphQL requests GitHub saw, through the fleet and direct
  seconds     wall time of one runner's five commands: the first runner (misses), the
              later ones (fleet answers), and direct

Writes bench/results/graphql_fleet.json and prints a table.
Run: python bench/graphql_fleet.py   (needs gh: tests/conformance/setup.sh)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NodeProcess  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402
from gh_graphql.ghcli import FULL, Gh  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COMMANDS = [
    ["pr", "list", "-R", FULL],
    ["issue", "list", "-R", FULL],
    ["pr", "view", "1", "-R", FULL, "--json", "number,title,state,author,labels"],
    ["repo", "view", FULL],
    ["release", "list", "-R", FULL],
]


def job_token(i: int) -> str:
    return f"ghs_benchjob{i:04d}" + "0" * 24


def five(gh: Gh) -> float:
    began = time.perf_counter()
    for args in COMMANDS:
        gh.ok(*args)
    return time.perf_counter() - began


def spent(fake: FakeGitHub) -> tuple[int, int]:
    graphql = fake.stats()["graphql"]
    return graphql["points"], sum(graphql["operations"].values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runners", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--latency-ms", type=float, default=80.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if shutil.which("gh") is None:
        raise SystemExit("gh is not installed (tests/conformance/setup.sh)")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="graphql-bench-"))
    tokens = {FLEET_TOKEN: "fleet-bot"}
    tokens.update({job_token(i): f"job-{i}" for i in range(args.runners + 1)})
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=args.latency_ms, tokens=tokens,
                      unix_socket=work / "fake.sock").start()
    nodes: list[NodeProcess] = []
    clients: list[Gh] = []
    try:
        direct = Gh(str(work / "fake.sock"), job_token(args.runners))
        clients.append(direct)
        direct_s = [five(direct) for _ in range(3)]
        points_one, requests_one = spent(fake)
        points_one //= 3
        requests_one //= 3
        fake.reset()

        server = NodeProcess("server", work / "server", fake.url).start()
        nodes.append(server)
        runners = []
        for i in range(args.runners):
            runner = NodeProcess(f"runner{i}", work / f"runner{i}", fake.url,
                                 bootstrap=server.multiaddr(),
                                 env={"P2P_CACHE_UNIX_SOCKET": str(work / f"runner{i}.sock")})
            nodes.append(runner.start())
            runner.wait_for_peers(1)
            runners.append(runner)
        through = []
        for _ in range(args.rounds):
            for i, runner in enumerate(runners):
                gh = Gh(str(work / f"runner{i}.sock"), job_token(i))
                clients.append(gh)
                through.append(five(gh))
        points_fleet, requests_fleet = spent(fake)
        jobs = args.runners * args.rounds
        stats = [r.stats() for r in runners]
        result = {
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "runners": args.runners, "rounds": args.rounds, "latency_ms": args.latency_ms,
            "commands": [" ".join(c[:2]) for c in COMMANDS],
            "points_direct": points_one * jobs, "points_fleet": points_fleet,
            "graphql_requests_direct": requests_one * jobs,
            "graphql_requests_fleet": requests_fleet,
            "runner_graphql_hits": sum(s["graphql_hits"] for s in stats),
            "runner_points_saved": sum(s["graphql_points_saved"] for s in stats),
            "server_points_spent": server.stats()["graphql_points_spent"],
            "seconds_direct_median": round(statistics.median(direct_s), 2),
            "seconds_first_runner": round(through[0], 2),
            "seconds_later_runners_median": round(statistics.median(through[1:]), 2)
            if len(through) > 1 else None,
        }
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.stop()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "graphql_fleet.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.runners} runners x {args.rounds} round(s) x 5 gh commands, "
          f"GitHub latency {args.latency_ms:.0f} ms")
    print(f"  GraphQL points:   direct {result['points_direct']:>4}   "
          f"through the fleet {result['points_fleet']:>4}")
    print(f"  GraphQL requests: direct {result['graphql_requests_direct']:>4}   "
          f"through the fleet {result['graphql_requests_fleet']:>4}")
    print(f"  five commands:    direct {result['seconds_direct_median']} s   first runner "
          f"{result['seconds_first_runner']} s   later runners "
          f"{result['seconds_later_runners_median']} s (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
