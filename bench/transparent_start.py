#!/usr/bin/env python3
"""What `p2pcache actions start --transparent` adds to a job: start → ready, and summary,
with and without transparent mode, in the container that plays a hosted runner
(tests/transparent/runnerlab.py; needs the tests' Docker engine and npm on the host).

    .venv/bin/python bench/transparent_start.py [--rounds 5]

Each round runs, as the job's user, `actions start` then `actions summary` in base-URL mode,
then the same with --transparent (so the trust store, the guardian and the hosts edit are
in the figures), and reads the start's own breakdown line. Medians go to
bench/results/transparent_start.json with the machine's load average (wall times on a
loaded 2-core machine are far from a hosted runner's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "transparent"))
import runnerlab  # noqa: E402

TEMP = "/home/runner/work/_temp"
ENV = {"RUNNER_TEMP": TEMP, "GH_TOKEN": "ghp_benchtoken", "P2P_CACHE_LISTEN_HOST": "127.0.0.1",
       "GITHUB_ENV": f"{TEMP}/env", "GITHUB_OUTPUT": f"{TEMP}/out"}


def timed(box: runnerlab.Runner, command: str) -> tuple[float, str]:
    start = time.monotonic()
    result = box.exec(command, user="runner", env=ENV, timeout=300)
    return time.monotonic() - start, result.stdout


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
    figures: dict[str, list[float]] = {k: [] for k in (
        "start_base_s", "summary_base_s", "start_transparent_s", "summary_transparent_s",
        "transparent_ready_s", "update_ca_certificates_s")}
    try:
        # "DNS": api.github.com must resolve before transparent mode redirects it
        box.exec(f"echo '127.0.0.2 api.github.com' >>/etc/hosts && mkdir -p {TEMP} "
                 f"&& touch {TEMP}/env {TEMP}/out && chown -R runner: /home/runner/work")
        bin_ = runnerlab.VENV + "/p2pcache actions"
        for _ in range(args.rounds):
            for mode, flag in (("base", ""), ("transparent", " --transparent")):
                took, out = timed(box, f"{bin_} start{flag}")
                figures[f"start_{mode}_s"].append(took)
                ready = re.search(r"ready in ([\d.]+) s; trust store ([\d.]+) s", out)
                if ready:
                    figures["transparent_ready_s"].append(float(ready.group(1)))
                    figures["update_ca_certificates_s"].append(float(ready.group(2)))
                took, _ = timed(box, f"{bin_} summary")
                figures[f"summary_{mode}_s"].append(took)
    finally:
        box.close()
    result = {k: round(statistics.median(v), 2) for k, v in figures.items() if v}
    result["added_by_transparent_s"] = round(result["start_transparent_s"]
                                             - result["start_base_s"], 2)
    result.update(rounds=args.rounds, load_average_1m=round(os.getloadavg()[0], 2),
                  measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out = Path(args.out) / "transparent_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
