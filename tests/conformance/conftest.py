"""Each real client runs the operations twice: straight to the fake GitHub, and through a
node whose upstream is that fake. The runs are made once per client and shared by that
client's tests; the table of outcomes is printed at the end (and written as JSON to
$CONFORMANCE_TABLE when set, for table.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FLEET_TOKEN, NodeProcess, require  # tests/conftest.py
from fakegithub import FakeGitHub

from . import clients
from .compare import OPS

CLIENT_TOKEN = "ghp_conformanceclient00000000000000000000"  # not the node's token
GITHUB = "https://api.github.com"
HERE = Path(__file__).resolve().parent

# name: (driver, how it is pointed at the node)
#   http:   base URL = the node's http://127.0.0.1:PORT
#   ghes:   base URL = the node's .../api/v3 (GitHub Enterprise style)
#   localhost: base URL = http://localhost:PORT (answers must name the Host the client used)
#   socket: the node's Unix socket, speaking as api.github.com (gh's http_unix_socket)
CLIENTS = {
    "PyGithub": (clients.pygithub, "http"),
    "PyGithub /api/v3": (clients.pygithub, "ghes"),
    "githubkit": (clients.githubkit, "http"),
    "octokit": (clients.javascript("octokit"), "http"),
    "actions/github": (clients.javascript("actions"), "http"),
    "gh": (clients.gh, "socket"),
    "curl": (clients.curl, "http"),
    "curl localhost": (clients.curl, "localhost"),
}
# Operations a client cannot express at all (gh and getOctokit refuse to run tokenless).
NOT_APPLICABLE = {("gh", "anonymous_write"), ("actions/github", "anonymous_write")}
CASES = [(c, op) for c in CLIENTS for op in OPS if (c, op) not in NOT_APPLICABLE]

PREREQUISITES = {
    "PyGithub": lambda: importlib.util.find_spec("github") is not None,
    "githubkit": lambda: clients.GITHUBKIT_PYTHON.exists(),
    "octokit": lambda: shutil.which("node") and (HERE / "node_modules/@octokit/rest").is_dir(),
    "actions/github": lambda: shutil.which("node")
    and (HERE / "node_modules/@actions/github").is_dir(),
    "gh": lambda: shutil.which("gh") is not None,
    "curl": lambda: shutil.which("curl") is not None,
}


@dataclass
class Runs:
    direct: dict[str, dict]
    through: dict[str, dict]
    direct_base: str
    node_base: str


class Conformance:
    """One fake for the session; per client, a fresh fake state and a fresh node."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fake = FakeGitHub("127.0.0.1", 0, unix_socket=workdir / "fake.sock",
                               tokens={FLEET_TOKEN: "fleet-bot",
                                       CLIENT_TOKEN: clients.CLIENT_LOGIN}).start()
        # Who sees what: the fleet's token is admin of the repository the clients use and
        # alone reads a private one; clients see what their own token does (issue 19).
        self.fake.set_permission(clients.FULL, FLEET_TOKEN, "admin")
        # What GitHub says about a token rides on every answer to it: the client must read
        # its own token's scopes and expiry, never the fleet's (whose token fetched entries).
        self.fake.set_scopes(FLEET_TOKEN, "admin:org, repo, workflow")
        self.fake.set_expiration(FLEET_TOKEN, "2027-03-01 00:00:00 UTC")
        self.fake.set_scopes(CLIENT_TOKEN, "public_repo, read:org")
        self.fake.make_private(f"{clients.OWNER}/{clients.FLEET_ONLY}", readers=[FLEET_TOKEN])
        self._runs: dict[str, Runs] = {}

    def runs(self, client: str) -> Runs:
        if client not in self._runs:
            self._runs[client] = self._run(client)
        return self._runs[client]

    def _run(self, client: str) -> Runs:
        driver, mode = CLIENTS[client]
        slug = "".join(ch if ch.isalnum() else "-" for ch in client.lower())

        self.fake.reset()
        direct_base = {"socket": GITHUB, "localhost": _localhost(self.fake.url)}.get(
            mode, self.fake.url)
        direct = driver(clients.Target(direct_base, CLIENT_TOKEN,
                                       str(self.fake.unix_socket), slug))

        self.fake.reset()
        node_socket = self.workdir / f"{slug}.sock"
        node = NodeProcess(f"node-{slug}", self.workdir / f"node-{slug}", self.fake.url,
                           env={"P2P_CACHE_UNIX_SOCKET": str(node_socket)})
        node.start()
        try:
            node_base = {"http": node.url, "ghes": node.url + "/api/v3", "socket": GITHUB,
                         "localhost": _localhost(node.url)}[mode]
            through = driver(clients.Target(node_base, CLIENT_TOKEN, str(node_socket), slug))
        finally:
            node.stop()
            node.http.close()
        return Runs(direct, through, direct_base, node_base)

    def close(self) -> None:
        self.fake.stop()


def _localhost(url: str) -> str:
    return url.replace("//127.0.0.1:", "//localhost:")


@pytest.fixture(scope="session")
def conformance(tmp_path_factory) -> Conformance:
    # Short path: Unix socket names are limited to 108 bytes.
    suite = Conformance(tmp_path_factory.mktemp("conf"))
    yield suite
    suite.close()


@pytest.fixture
def client_ready():
    def check(client: str) -> None:
        probe = PREREQUISITES[client.split()[0]]
        require(bool(probe()), f"{client} is not installed (bash tests/conformance/setup.sh"
                " and the test extra install it)")
    return check


# -- the table ------------------------------------------------------------------------- #

OUTCOMES: dict[tuple[str, str], tuple[str, str]] = {}


def record(client: str, op: str, problems: list[str]) -> None:
    OUTCOMES[(client, op)] = ("pass", "") if not problems else ("FAIL", problems[0])


def pytest_terminal_summary(terminalreporter) -> None:
    if not OUTCOMES:
        return
    from .table import render

    terminalreporter.write_sep("=", "conformance: operation x client (through the node)")
    terminalreporter.write_line(render(table_json()))
    path = os.environ.get("CONFORMANCE_TABLE")
    if path:
        Path(path).write_text(json.dumps(table_json(), indent=1))


def table_json() -> dict:
    return {"clients": list(CLIENTS), "ops": list(OPS),
            "cells": [{"client": c, "op": op, "outcome": _outcome(c, op)[0],
                       "reason": _outcome(c, op)[1]} for c in CLIENTS for op in OPS]}


def _outcome(client: str, op: str) -> tuple[str, str]:
    if (client, op) in NOT_APPLICABLE:
        return ("n/a", "")
    return OUTCOMES.get((client, op), ("not run", ""))
