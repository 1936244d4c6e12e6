"""Smoke test of bench/fleet.py: the fleet benchmark runs end to end with tiny parameters
(--quick: 2 runners x 10 paths, 5 ms latency, scale 1 and 2, staggered over 1 s, then the
same runners one job after another) and its JSON has the promised shape and the invariants
the comparison rests on.

hishel and matplotlib come with the `bench` extra, which `make test` installs too; outside CI,
without them, the hishel scenario and the chart are left out and the rest is still checked."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

from conftest import require

ROOT = Path(__file__).resolve().parents[2]
RUNNERS, PATHS = 2, 10  # what --quick means
REQUIRED = {"scenario", "run", "runners", "upstream_requests", "rate_limit_units", "wall_s",
            "median_runner_s", "p50_ms", "p99_ms", "server_cpu_s", "server_rss_mb", "arrival",
            "runner_s"}
RUNS = ("cold", "warm", "staggered", "sequential")


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_quick_fleet_benchmark(tmp_path: Path) -> None:
    from conftest import IN_CI

    if IN_CI:
        require(_have("hishel") and _have("matplotlib"),
                "the bench extra (hishel, matplotlib) is not installed")
    scenarios = ["no_cache"] + (["hishel"] if _have("hishel") else []) + ["p2pcache"]
    chart = _have("matplotlib")
    cmd = [sys.executable, str(ROOT / "bench" / "fleet.py"), "--quick", "--out", str(tmp_path),
           "--scenarios", ",".join(scenarios)] + ([] if chart else ["--no-chart"])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # fleet.py stops its nodes on SIGTERM
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"fleet.py --quick took over 420 s:\n{out}") from None
    assert proc.returncode == 0, f"fleet.py failed:\n{out}"
    json_path = tmp_path / "fleet.json"
    assert str(json_path) in out
    rows = json.loads(json_path.read_text())

    assert isinstance(rows, list) and rows
    for row in rows:
        assert REQUIRED <= row.keys(), f"missing keys in {row}"
        assert row["scenario"] in scenarios and row["run"] in RUNS
        assert row["wall_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        # One runner's API time is its first request to its last answer: the median runner's
        # is within the wall time, which also counts the later runners' arrival.
        assert len(row["runner_s"]) == row["runners"]
        assert 0 < row["median_runner_s"] <= row["wall_s"] + 0.001
        assert row["arrival"] == {"staggered": "staggered", "sequential": "sequential"}.get(
            row["run"], "lockstep")
        assert row["statuses"] == {"200": row["client_requests"]}
        assert row["client_requests"] == row["runners"] * PATHS

    def one(scenario: str, run: str, runners: int = RUNNERS) -> dict:
        found = [r for r in rows if (r["scenario"], r["run"], r["runners"]) ==
                 (scenario, run, runners)]
        assert len(found) == 1, f"want one {scenario} {run} x{runners} row, got {found}"
        return found[0]

    # Staggered arrivals: the later runner starts about --stagger / runners after the first,
    # so the wall time spans the arrival window (0.5 s here); lockstep runners start together.
    for run in RUNS:
        row = one("no_cache", run)
        if run == "staggered":
            assert row["stagger_s"] == 1.0 and row["wall_s"] >= 0.5
        elif run == "sequential":
            # One job after another: the wall time holds every runner's whole time.
            assert row["wall_s"] >= sum(row["runner_s"]) - 0.001
        else:
            assert row["start_skew_ms"] < 500

    # No cache: every runner pays for every path, however they arrive.
    for run in RUNS:
        row = one("no_cache", run)
        assert row["rate_limit_units"] == row["upstream_requests"] == RUNNERS * PATHS
        assert row["server_cpu_s"] is None and row["server_rss_mb"] is None

    # A per-runner cache starts empty in a new job and each runner asks each path once.
    if "hishel" in scenarios:
        for run in RUNS:
            assert one("hishel", run)["rate_limit_units"] == RUNNERS * PATHS

    # p2pcache cold: the fleet pays exactly once per unique request, simultaneous start or
    # not: each path, and each repository's view that the runner nodes look up (whether it
    # is public, access.py). A revalidation of an entry that went stale mid-run would be a
    # free 304; a runner node asks GitHub only whether its client's credentials are valid
    # (free, once a freshness window), never for the fleet.
    cold = one("p2pcache", "cold")
    once = PATHS + cold["repositories"]
    assert 1 <= cold["repositories"] <= PATHS
    assert cold["rate_limit_units"] == once
    assert cold["upstream_requests"] - cold["not_modified"] - \
        cold["runner_credential_checks"] == once
    assert cold["runner_upstream_requests"] == cold["runner_credential_checks"] <= RUNNERS, \
        "runners must not go to GitHub themselves"
    # p2pcache warm: fresh runner nodes, the server's entries stale: free 304s only.
    warm = one("p2pcache", "warm")
    # (refresh-ahead on the server may already have revalidated them before the run)
    assert warm["rate_limit_units"] == 0
    assert warm["upstream_requests"] == warm["not_modified"]
    # p2pcache staggered: a fresh server node; the first runner pays once per path and the
    # later one is answered by the fleet: a peer answer, or a local hit from what its node
    # took at its warm start as it joined (the first runner's answers, if already there).
    staggered = one("p2pcache", "staggered")
    assert staggered["rate_limit_units"] == once
    assert staggered["runner_upstream_requests"] == staggered["runner_credential_checks"]
    assert set(staggered["answers"]) <= {"peer", "hit"}
    assert sum(staggered["answers"].values()) == RUNNERS * PATHS
    assert staggered["answers"].get("peer", 0) >= PATHS, "the first runner asked the fleet"
    assert staggered["answers"].get("hit", 0) <= staggered["runner_warm_start_entries"]
    # p2pcache sequential: a fresh server node and a queue of jobs, each a new runner node
    # that joins once the job before has finished: the first pays once per path through the
    # fleet, the next answers from what its node took at its warm start.
    sequential = one("p2pcache", "sequential")
    assert sequential["rate_limit_units"] == once
    assert sequential["runner_upstream_requests"] == sequential["runner_credential_checks"]
    assert sequential["wall_s"] >= sum(sequential["runner_s"]) - 0.001
    assert set(sequential["answers"]) <= {"peer", "hit"}
    assert sequential["answers"].get("peer", 0) >= PATHS, "the first job asked the fleet"
    assert sequential["answers"].get("hit", 0) == (RUNNERS - 1) * PATHS, \
        "each later job's node took every entry at its warm start"
    assert sequential["runner_warm_start_entries"] >= (RUNNERS - 1) * PATHS
    assert sequential["runner_nodes_joined_at_arrival"] is True
    # Scale: one row per fleet size, each cold and each paying once per path.
    scale = [r for r in rows if r["scenario"] == "p2pcache" and r["run"] == "cold"]
    assert sorted(r["runners"] for r in scale) == [1, 2]
    for row in scale + [warm, staggered, sequential]:
        assert row["rate_limit_units"] <= once
        assert row["server_cpu_s"] > 0 and row["server_rss_mb"] > 10

    table = (tmp_path / "fleet.md").read_text()
    assert table.count("| p2pcache |") == 5 and table.count("| staggered |") == len(scenarios)
    assert table.count("| sequential |") == len(scenarios)
    if chart:
        assert (tmp_path / "fleet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
