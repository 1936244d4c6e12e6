#!/usr/bin/env python3
"""What `p2pcache actions start --transparent` adds to a job: start → ready, and summary,
with and without transparent mode, in the container that plays a hosted runner
(tests/transparent/runnerlab.py; needs the tests' Docker engine and npm on the host).

    .venv/bin/python bench/transparent_start.py [--rounds 5]

Each round runs, as the job's user, `actions start` then `actions summary` in base-URL mode,
then the same with --transparent (so the trust store, the guardian and the hosts edit are
in the figures), and reads the start's own breakdown line; then --transparent again with a
server node in MCP_P2P_BOOTSTRAP_PEERS: one running in the container (the start waits for
the connection and the warm start), and one that refuses (nothing listens: the start waits
`wait`, 3 s, and the job goes on direct). Medians go to bench/results/transparent_start.json
with the machine's load average (wall times on a loaded 2-core machine are far from a
hosted runner's).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "transparent"))
import figures  # noqa: E402  (bench/, the script's own directory)
import runnerlab  # noqa: E402

TEMP = "/home/runner/work/_temp"
ENV = {"RUNNER_TEMP": TEMP, "GH_TOKEN": "ghp_benchtoken", "P2P_CACHE_LISTEN_HOST": "127.0.0.1",
       "GITHUB_ENV": f"{TEMP}/env", "GITHUB_OUTPUT": f"{TEMP}/out"}


GHOST = "12D3KooWLU34W6Y1tLoZE19jx5vQvTwvT1Xp2ShfVJvPtQb3DtnL"  # no node has its key


def timed(box: runnerlab.Runner, command: str,
          env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.monotonic()
    result = box.exec(command, user="runner", env=env or ENV, timeout=300)
    return time.monotonic() - start, result.stdout


def cpu_seconds(box: runnerlab.Runner) -> float:
    """CPU time every process of the container has used so far (cgroup v1 or v2): what a
    start costs whatever the machine's load does to its wall time."""
    v1 = box.exec("cat /sys/fs/cgroup/cpuacct/cpuacct.usage", check=False)
    if v1.returncode == 0:
        return int(v1.stdout) / 1e9  # nanoseconds
    return int(box.exec("sed -n 's/^usage_usec //p' /sys/fs/cgroup/cpu.stat").stdout) / 1e6


def server_in(box: runnerlab.Runner, bin_: str) -> str:
    """A server node in the container, as the fleet's (same token, same namespace); its
    bootstrap multiaddr."""
    box.exec(f"GH_TOKEN={ENV['GH_TOKEN']} P2P_CACHE_PORT=9100 P2P_CACHE_HTTP=127.0.0.1:9181 "
             "P2P_CACHE_LISTEN_HOST=127.0.0.1 P2P_CACHE_DATA_DIR=/tmp/server "
             f"{bin_} serve >/tmp/server.log 2>&1", detach=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = box.exec("curl -sf http://127.0.0.1:9181/-/multiaddr", check=False)
        if got.returncode == 0 and got.stdout.startswith("/ip4/"):
            return got.stdout.splitlines()[0]
        time.sleep(0.5)
    raise RuntimeError("the server node in the container did not start:\n"
                       + box.read("/tmp/server.log"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    reason = runnerlab.missing_prerequisite()
    if reason:
        print(f"bench/transparent_start.py: {reason}", file=sys.stderr)
        return 1
    runnerlab.build_images()
    box = runnerlab.Runner()
    modes = ("base", "transparent", "transparent_server_up", "transparent_server_down")
    figures: dict[str, list[float]] = {f"{k}_{m}_s": [] for k in ("start", "summary")
                                       for m in modes}
    figures.update({f"ready_{m}_s": [] for m in modes[1:]})
    figures.update({f"start_cpu_{m}_s": [] for m in modes})
    connected: list[bool] = []
    figures.update({f"trust_store_{m}_s": [] for m in modes[1:]})
    try:
        # "DNS": api.github.com must resolve before transparent mode redirects it
        box.exec(f"echo '127.0.0.2 api.github.com' >>/etc/hosts && mkdir -p {TEMP} "
                 f"&& touch {TEMP}/env {TEMP}/out && chown -R runner: /home/runner/work")
        bin_ = runnerlab.VENV + "/p2pcache"
        up, down = server_in(box, bin_), f"/ip4/127.0.0.1/tcp/9109/p2p/{GHOST}"
        for _ in range(args.rounds):
            for mode in modes:
                flag = "" if mode == "base" else " --transparent"
                peers = {"transparent_server_up": up, "transparent_server_down": down}
                env = {**ENV, "MCP_P2P_BOOTSTRAP_PEERS": peers.get(mode, "")}
                cpu_before = cpu_seconds(box)
                took, out = timed(box, f"{bin_} actions start{flag}", env)
                figures[f"start_{mode}_s"].append(took)
                figures[f"start_cpu_{mode}_s"].append(cpu_seconds(box) - cpu_before)
                ready = re.search(r"ready in ([\d.]+) s; trust store ([\d.]+) s", out)
                if ready:
                    figures[f"ready_{mode}_s"].append(float(ready.group(1)))
                    figures[f"trust_store_{mode}_s"].append(float(ready.group(2)))
                if mode == "transparent_server_up":  # a node that answered late may not be
                    connected.append("✓ Connected to bootstrap peer" in out)
                took, _ = timed(box, f"{bin_} actions summary", env)
                figures[f"summary_{mode}_s"].append(took)
    finally:
        box.close()
    result = {k: round(statistics.median(v), 2) for k, v in figures.items() if v}
    result["added_by_transparent_s"] = round(result["start_transparent_s"]
                                             - result["start_base_s"], 2)
    result["start_transparent_s_max"] = round(max(figures["start_transparent_s"]), 2)
    result["server_up_connected_at_ready"] = f"{sum(connected)}/{len(connected)}"
    result.update(rounds=args.rounds, load_average_1m=round(os.getloadavg()[0], 2),
                  measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    figures.write(args.out, "transparent_start.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
