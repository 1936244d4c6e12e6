"""A store that cannot be opened at start is not thrown away (issue 10, item 6)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs: a disk that can really be filled."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)]).returncode == 0
    require(mounted, "needs root and tmpfs mounts to make a small, fillable disk")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)])


def fill(path: Path) -> None:
    with open(path, "wb") as filler:  # take every free byte
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def test_a_full_disk_at_start_keeps_the_store_and_the_node_serves(nodes, small_disk):
    """Before: the node renamed cache.sqlite3 aside as 'corrupt' and then died on
    journal_mode=WAL (again at each restart). Now it starts uncached, says why, answers
    through to GitHub, and opens the store again once there is room."""
    node = nodes("cramped", start=False)
    node.data_dir = small_disk / "data"
    node.env["P2P_CACHE_DATA_DIR"] = str(node.data_dir)
    node.start()
    assert node.get("/repos/disk/kept").headers["x-p2p-cache"] == "miss"
    node.stop()
    store = node.data_dir / "cache.sqlite3"
    for sidecar in ("-wal", "-shm"):  # as after a crash or an old SQLite: they must be made
        Path(f"{store}{sidecar}").unlink(missing_ok=True)
    fill(small_disk / "filler")

    node.start()
    assert node.get("/repos/disk/while-full").status_code == 200
    assert node.get("/repos/disk/while-full").headers["x-p2p-cache"] == "miss"  # uncached
    assert sorted(p.name for p in node.data_dir.iterdir() if "corrupt" in p.name) == []
    assert store.exists()
    node.wait_for_log("running uncached")

    (small_disk / "filler").unlink()
    deadline = time.monotonic() + 40
    while node.get("/repos/disk/kept").headers["x-p2p-cache"] != "hit":
        assert time.monotonic() < deadline, node.log()
        time.sleep(1)
    node.wait_for_log("Cache store open again")
    assert node.get("/repos/disk/after").headers["x-p2p-cache"] == "miss"
    assert node.get("/repos/disk/after").headers["x-p2p-cache"] == "hit"
    assert node.stats()["entries"] >= 2
    node.stop()
    assert node.proc.returncode == 0
