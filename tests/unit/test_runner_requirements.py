"""runner/requirements.txt, what the action installs with --no-deps, stays in step with the
project: pinned like the image (docker/requirements.lock), complete for p2pcache's own
dependencies, and free of the py-libp2p dependencies no node loads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and ";" not in line, f"{path.name}: not an exact pin: {line}"
            found[name.lower().replace("_", "-")] = version
    return found


def test_every_pin_is_the_images_pin():
    runner, image = pins(ROOT / "runner" / "requirements.txt"), pins(
        ROOT / "docker" / "requirements.lock")
    assert {n: v for n, v in runner.items() if image.get(n) != v} == {}


def test_p2pcache_own_dependencies_are_all_there():
    project = tomllib.loads((ROOT / "node" / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[ <>=!~;\[]", dep, maxsplit=1)[0].lower().replace("_", "-")
             for dep in project["dependencies"]}
    assert names - pins(ROOT / "runner" / "requirements.txt").keys() == set()


def test_what_no_node_loads_is_left_out():
    runner = pins(ROOT / "runner" / "requirements.txt")
    assert not {"grpcio", "rpcudp", "lru-dict", "mypy-protobuf", "types-protobuf"} & runner.keys()
    # ...but what py-libp2p imports when the node imports it stays, compiled or not.
    assert {"libp2p", "fastecdsa", "coincurve", "pycryptodome", "zeroconf", "aioquic"} <= \
        runner.keys()
