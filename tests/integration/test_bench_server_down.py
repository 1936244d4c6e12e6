"""Smoke test of bench/server_down.py: one round with the server refused, with few paths at
5 ms, end to end; its JSON has the promised shape, and every answer went direct."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_round_with_the_server_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "server_down.py"), "--rounds",
                           "1", "--cases", "refused", "--paths", "20", "--latency-ms", "5",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "server_down.json").read_text())
    (row,) = result["rows"]
    assert row["case"] == "refused" and row["rounds"] == 1
    for key in ("start_s", "direct_s", "node_s", "ratio", "added_ms_per_call"):
        assert isinstance(row[key], float), key
    assert 0 < row["start_s"] < 30
    assert {"load_average_1m_before", "latency_ms", "measured_at"} <= set(result)
