#!/usr/bin/env python3
"""Which installed distributions does a runner node actually load?

py-libp2p 0.8.1 declares many dependencies (grpcio, aioquic, zeroconf, pycryptodome,
fastecdsa, ...) for transports and features a p2pcache node never uses. Before the action
installs fewer of them, this script proves which ones are loaded: it starts a server node
and two runner nodes on loopback against tests/fakegithub.py with `--python` (the
interpreter of the environment under test), each node recording `sys.modules` from inside
its process, exercises what a CI job does (`p2pcache actions start` for one runner, a miss
fetched through the server, a peer hit, local hits, HEAD, `/-/stats`, `/-/metrics`,
`/-/peers`, `p2pcache stats`, `p2pcache api`, `p2pcache actions summary`), then maps every
loaded module to the distribution that installed it.

Writes bench/results/runner_deps.json: the distributions installed in that environment,
the ones loaded by each process, and the ones never loaded. Run:
    python bench/runner_deps.py --python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import FLEET_TOKEN, NodeProcess, free_port  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# A sitecustomize.py put first on PYTHONPATH: every Python process started with it (the
# nodes, the CLI commands, the node `actions start` spawns) rewrites
# $P2PCACHE_MODULES_DIR/<pid>.json with its command line and sys.modules twice a second and
# once more at exit: a node is stopped by a signal, so the list must already be on disk.
SITECUSTOMIZE = r"""
import atexit, json, os, sys, threading, time
def _dump():
    path = os.path.join(os.environ["P2PCACHE_MODULES_DIR"], f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"argv": sys.argv, "modules": sorted(sys.modules)}, f)
    os.replace(path + ".tmp", path)
def _loop():
    while True:
        time.sleep(0.5)
        _dump()
if os.environ.get("P2PCACHE_MODULES_DIR"):
    threading.Thread(target=_loop, daemon=True).start()
    atexit.register(_dump)
"""

# Run in the environment under test: top-level module -> distributions, the installed
# distributions, and what p2pcache requires, transitively.
INVENTORY = r"""
import json, re
from importlib import metadata
top = metadata.packages_distributions()
installed = {d.metadata["Name"].lower().replace("_", "-"): d.version
             for d in metadata.distributions()}
def requires(name, seen):
    key = name.lower().replace("_", "-")
    if key in seen or key not in installed:
        return
    seen.add(key)
    for req in metadata.requires(name) or []:
        if "extra ==" in req:
            continue
        requires(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0], seen)
closure = set()
requires("p2pcache", closure)
print(json.dumps({"top": top, "installed": installed, "closure": sorted(closure)}))
"""


class NodeIn(NodeProcess):
    """A node run by another environment's interpreter."""

    def __init__(self, python: str, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.python = python

    def start(self, wait: bool = True) -> NodeIn:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.python, "-m", "p2pcache", "serve", *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self


def cli(python: str, env: dict[str, str], *args: str) -> None:
    done = subprocess.run([python, "-m", "p2pcache", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"p2pcache {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def distributions(modules: list[str], top: dict[str, list[str]]) -> set[str]:
    found = set()
    for name in modules:
        for dist in top.get(name.split(".")[0], []):
            found.add(dist.lower().replace("_", "-"))
    return found


def role(argv: list[str]) -> str:
    """A traced process's name from its command line."""
    words = [w for w in argv[1:] if not w.startswith("-")]
    return "p2pcache " + " ".join(words[:2]) if words else "p2pcache"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable,
                   help="interpreter of the environment under test (p2pcache installed)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--write-requirements", action="store_true",
                   help="also rewrite runner/requirements.txt: docker/requirements.lock's "
                        "pins for the distributions some process loaded (run it with the "
                        "python of a full `pip install ./node`)")
    args = p.parse_args(argv)
    inventory = json.loads(subprocess.run([args.python, "-c", INVENTORY], check=True,
                                          capture_output=True, text=True).stdout)
    top = inventory["top"]

    tmp = Path(tempfile.mkdtemp(prefix="p2pcache-deps-"))
    site, dumps = tmp / "site", tmp / "modules"
    site.mkdir()
    dumps.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    traced = {"P2PCACHE_MODULES_DIR": str(dumps),
              "PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                          os.environ.get("PYTHONPATH")]))}
    fake = FakeGitHub("127.0.0.1", 0, latency_ms=5, tokens=[FLEET_TOKEN]).start()
    nodes: list[NodeProcess] = []
    roles: dict[int, str] = {}
    try:
        server = NodeIn(args.python, "server", tmp / "server", fake.url, env=traced).start()
        nodes.append(server)
        runner_b = NodeIn(args.python, "runner-b", tmp / "runner-b", fake.url,
                          bootstrap=server.multiaddr(), env=traced).start()
        nodes.append(runner_b)
        roles[server.proc.pid] = "server node"  # type: ignore[union-attr]
        roles[runner_b.proc.pid] = "runner node (serve)"  # type: ignore[union-attr]
        # Runner A is started the way the action starts it, in a simulated Actions job.
        a_http = f"127.0.0.1:{free_port()}"
        env = {**runner_b.env, "RUNNER_TEMP": str(tmp / "runner-a"), "P2P_CACHE_HTTP": a_http,
               "GITHUB_ENV": str(tmp / "github_env"),
               "GITHUB_OUTPUT": str(tmp / "github_output"),
               "GITHUB_STEP_SUMMARY": str(tmp / "github_summary")}
        env.pop("P2P_CACHE_DATA_DIR")
        cli(args.python, env, "actions", "start", "--port", str(free_port()), "--http", a_http,
            "--wait", "30")
        runner_b.wait_for_peers(1, timeout=30)
        a = httpx.Client(base_url=f"http://{a_http}", timeout=30)
        paths = ["/repos/acme/api", "/users/octocat", "/repos/acme/api/issues?page=1",
                 "/orgs/acme"]
        kinds = [a.get(path).headers.get("x-p2p-cache") for path in paths]  # via the server
        kinds += [runner_b.get(path).headers.get("x-p2p-cache") for path in paths]  # peer hits
        kinds += [a.get(path).headers.get("x-p2p-cache") for path in paths]  # local hits
        a.head(paths[0])
        for endpoint in ("/-/stats", "/-/metrics", "/-/peers", "/-/multiaddr", "/-/healthz"):
            a.get(endpoint)
            runner_b.get(endpoint)
        a.close()
        cli(args.python, env, "stats", "--json")
        cli(args.python, env, "api", "/repos/acme/web")
        time.sleep(1.2)  # one more dump from every node after the traffic
        cli(args.python, env, "actions", "summary", "--http", a_http)
        print(f"answers: {kinds}")
    finally:
        for node in nodes:
            try:
                node.stop()
            except AssertionError:
                pass
        fake.stop()
        loaded: dict[str, set[str]] = {}
        for dump in dumps.glob("*.json"):
            got = json.loads(dump.read_text())
            name = roles.get(int(dump.stem)) or role(got["argv"])
            if name == "p2pcache serve":
                name = "runner node (actions start)"
            loaded.setdefault(name, set()).update(got["modules"])
        shutil.rmtree(tmp, ignore_errors=True)

    used = {name: sorted(distributions(sorted(mods), top)) for name, mods in loaded.items()}
    any_used = set().union(*map(set, used.values()))
    closure = set(inventory["closure"])
    never = sorted(closure - any_used - {"p2pcache"})
    report = {"python": args.python, "installed": inventory["installed"],
              "p2pcache_requires": sorted(closure),
              "loaded_by": {k: sorted(set(v) & closure) for k, v in sorted(used.items())},
              "loaded_anywhere": sorted(any_used & closure), "never_loaded": never}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "runner_deps.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"p2pcache requires {len(closure)} distributions (itself included); "
          f"loaded by some process: {len(any_used & closure)}")
    for name, dists in sorted(report["loaded_by"].items()):
        print(f"  {name}: {', '.join(dists)}")
    print(f"never loaded ({len(never)}): {', '.join(never)}")
    print(f"wrote {out}")
    if args.write_requirements:
        print(f"wrote {write_requirements(report)}")
    return 0


def write_requirements(report: dict) -> Path:
    """runner/requirements.txt from the trace: the image's pins, only what is loaded."""
    keep = set(report["loaded_anywhere"]) - {"p2pcache"}
    pins = []
    for line in (ROOT / "docker" / "requirements.lock").read_text().splitlines():
        name = line.partition("==")[0].strip()
        if line and not line.startswith("#") and name.lower().replace("_", "-") in keep:
            pins.append(line.strip())
        elif name == "setuptools":
            setuptools = line.strip()
    missing = keep - {p.partition("==")[0].lower().replace("_", "-") for p in pins}
    if missing:
        raise SystemExit(f"docker/requirements.lock lacks {sorted(missing)}: run docker/lock.sh")
    left_out = textwrap.fill(", ".join(report["never_loaded"]), 88, initial_indent="# ",
                             subsequent_indent="# ")
    text = f"""\
# What a runner node installs (runner/install.sh, with --no-deps): docker/requirements.lock's
# pins for the {len(pins)} distributions a p2pcache process loads. bench/runner_deps.py traces
# sys.modules in a server node, runner nodes and the CLI while they serve misses, peer hits
# and local hits. py-libp2p 0.8.1 also declares these, which no process imports:
{left_out}
# Made by `python bench/runner_deps.py --write-requirements`; do not edit by hand.
#
# Build requirement of node/ (the pip fallback builds it with --no-build-isolation):
{setuptools}
#
# Runtime:
""" + "\n".join(pins) + "\n"
    path = ROOT / "runner" / "requirements.txt"
    path.write_text(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
