"""Smoke test of bench/scale.py: the scale benchmark runs end to end with tiny parameters
(--quick: 2 runner nodes asking a warm server at 1 and 2 GETs in flight; fleets of 1 and 3
servers with 1 or 2 runners x 10 paths) and its JSON has the promised shape, every peer-hit
answer is a server hit, and every fleet point fetched each unique path exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIT_RUNNERS, HIT_PATHS, PATHS = 2, 20, 10  # what --quick means


def test_quick_scale_benchmark(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "scale.py"), "--quick", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # scale.py stops its nodes on SIGTERM
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"scale.py --quick took over 240 s:\n{out}") from None
    assert proc.returncode == 0, f"scale.py failed:\n{out}"
    assert str(tmp_path / "scale.json") in out
    result = json.loads((tmp_path / "scale.json").read_text())
    assert {"machine", "options", "peer_hits", "fleet", "p99_doubling", "total_s"} <= \
        result.keys()

    hits = result["peer_hits"]
    assert [r["in_flight_per_runner"] for r in hits] == [1, 2][:len(hits)] and hits
    for row in hits:
        requests = HIT_RUNNERS * HIT_PATHS
        assert row["requests"] == requests and row["in_flight"] == 2 * \
            row["in_flight_per_runner"]
        assert row["answers"] == {"peer": requests}, "every answer a hit on the server"
        # and each runner node may ask the repository's own view once (is it public?)
        assert requests <= row["server_peer_requests_served"] <= requests + HIT_RUNNERS
        assert row["upstream_requests"] == row["server_upstream_requests"] == 0
        assert row["hits_per_s"] > 0 and row["server_cpu_s_per_1000_hits"] > 0
        assert row["server_rss_mb"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]

    fleet = {(r["servers"], r["runners"]): r for r in result["fleet"]}
    assert set(fleet) == {(1, 1), (1, 2), (3, 2)}
    for (servers, runners), row in fleet.items():
        assert row["exactly_once"] is True, row
        assert row["unique_paths"] == PATHS
        assert row["upstream_requests"] == PATHS + row["repositories"]
        assert row["client_requests"] == runners * PATHS
        assert row["statuses"] == {"200": row["client_requests"]}
        assert row["runner_upstream_requests"] == 0
        assert len(row["server_cpu_s"]) == len(row["server_rss_mb"]) == servers
        lookups = sum(row["server_peer_requests_served"]) - row["client_requests"]
        assert 0 <= lookups <= runners * row["repositories"], "repository views, once each"
        assert row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["runner_rss_mb_median"] > 0
        assert 0 <= row["machine_cpu_busy_pct"] <= 100

    p99 = result["p99_doubling"]
    assert p99["baseline_runners"] == 1
    assert p99["baseline_p99_ms"] == fleet[(1, 1)]["p99_ms"]
    assert p99["max_runners"] in (1, 2)
    assert [p["runners"] for p in p99["points"]] == [1, 2]

    md = (tmp_path / "scale.md").read_text()
    assert "Peer hits one server node sustains" in md and "Fleet throughput" in md
