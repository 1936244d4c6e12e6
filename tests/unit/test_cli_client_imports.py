"""The commands a CI job runs around its node (`actions start|summary`, `stats`, `api`,
`multiaddr`) only talk HTTP to it: they must not pay py-libp2p's import (~2 s of CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import free_port

PROBE = """
import sys
from p2pcache.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "libp2p" or m.startswith("libp2p."))
print("LIBP2P", len(loaded), code)
"""


@pytest.mark.parametrize("command", [
    ["stats", "--json"], ["multiaddr"], ["api", "/repos/o/r"],
    ["actions", "summary", "--keep-running"],
])
def test_client_commands_do_not_load_libp2p(command, tmp_path):
    http = f"127.0.0.1:{free_port()}"  # nothing listens: the command says so and exits
    done = subprocess.run([sys.executable, "-c", PROBE, *command, "--http", http],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RUNNER_TEMP": str(tmp_path)})
    assert "LIBP2P 0 " in done.stdout, done.stdout + done.stderr


def test_the_commands_that_need_it_still_load_it(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, "id", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert "LIBP2P 0 " not in done.stdout and "LIBP2P" in done.stdout, done.stderr
