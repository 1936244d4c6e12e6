"""The real gh (Debian's 2.23) against a Unix socket that plays api.github.com, and the
GraphQL requests it sends for the commands CI scripts use most (what `GH_DEBUG=api` shows,
taken exactly from the fake's request log).

(This directory is not called `graphql`: tests/ is on sys.path, and a package of that name
would hide graphql-core from the node's own modules.)

Record what gh sends, into gh_queries.json beside this file (the unit tests of
p2pcache.graphql read it):

    .venv/bin/python tests/gh_graphql/ghcli.py --write
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "gh_queries.json"
OWNER, REPO = "octo", "gql"
FULL = f"{OWNER}/{REPO}"
TIMEOUT = 60
# The request headers gh sends that may change GraphQL's answer (p2pcache.graphql keys them).
SHOWN_HEADERS = ("accept", "graphql-features", "time-zone")

# (name, gh arguments): the commands of issue 23 and the variants CI scripts use.
COMMANDS: list[tuple[str, list[str]]] = [
    ("pr list", ["pr", "list", "-R", FULL]),
    ("pr list --state all --limit 5", ["pr", "list", "-R", FULL, "--state", "all", "--limit", "5"]),
    ("pr list --label bug", ["pr", "list", "-R", FULL, "--label", "bug"]),
    ("pr list --author @me", ["pr", "list", "-R", FULL, "--author", "@me"]),
    ("pr list --search 9", ["pr", "list", "-R", FULL, "--search", "9"]),
    ("issue list", ["issue", "list", "-R", FULL]),
    ("issue list --label bug", ["issue", "list", "-R", FULL, "--label", "bug"]),
    ("issue list --author octo", ["issue", "list", "-R", FULL, "--author", "octo"]),
    ("pr view 1", ["pr", "view", "1", "-R", FULL]),
    ("pr view 1 --json title,body", ["pr", "view", "1", "-R", FULL, "--json", "title,body"]),
    ("pr view 1 --json number,title,state,author,labels,url",
     ["pr", "view", "1", "-R", FULL, "--json", "number,title,state,author,labels,url"]),
    ("issue view 1", ["issue", "view", "1", "-R", FULL]),
    ("issue view 1 --comments", ["issue", "view", "1", "-R", FULL, "--comments"]),
    ("repo view", ["repo", "view", FULL]),
    ("release list", ["release", "list", "-R", FULL]),
    ("api graphql viewer", ["api", "graphql", "-f", "query={viewer{login}}"]),
    ("issue comment", ["issue", "comment", "1", "-R", FULL, "--body", "recorded"]),
    ("pr comment", ["pr", "comment", "1", "-R", FULL, "--body", "recorded"]),
]


@dataclass
class Gh:
    """gh with its own config dir, pointed at `socket` with `token`."""

    socket: str
    token: str

    def __post_init__(self) -> None:
        self.config = tempfile.mkdtemp(prefix="gh-graphql-")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GH_", "GITHUB_")) and k not in ("HTTPS_PROXY",
                                                                           "HTTP_PROXY")}
        self.env.update({"GH_CONFIG_DIR": self.config, "GH_TOKEN": self.token,
                         "GH_NO_UPDATE_NOTIFIER": "1", "GH_PROMPT_DISABLED": "1",
                         "NO_COLOR": "1", "TZ": "UTC"})
        subprocess.run(["gh", "config", "set", "http_unix_socket", self.socket], env=self.env,
                       check=True, capture_output=True, timeout=TIMEOUT)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["gh", *args], env=self.env, capture_output=True, text=True,
                              timeout=TIMEOUT)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise AssertionError(f"gh {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr.strip()[-600:]}")
        return done.stdout

    def close(self) -> None:
        shutil.rmtree(self.config, ignore_errors=True)


def record(fake, gh: Gh) -> list[dict]:
    """Each command's GraphQL requests as the fake received them: the exact body, and the
    headers gh sent with it that may change the answer."""
    out = []
    for name, args in COMMANDS:
        fake.reset()
        done = gh.run(*args)
        if done.returncode != 0:
            raise AssertionError(f"gh {name}: {done.stderr[-800:]}")
        for entry in fake.request_log():
            if "graphql_body" in entry:
                sent = {k: v for k, v in entry["headers"].items() if k in SHOWN_HEADERS}
                out.append({"command": name, "body": json.loads(entry["graphql_body"]),
                            "headers": sent})
    return out


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    from fakegithub import FakeGitHub

    token = "ghp_recordgraphql000000000000000000000"
    work = Path(tempfile.mkdtemp(prefix="gh-rec-"))
    fake = FakeGitHub(tokens=[token], unix_socket=work / "fake.sock").start()
    gh = Gh(str(work / "fake.sock"), token)
    try:
        recorded = record(fake, gh)
    finally:
        gh.close()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    if "--write" in sys.argv:
        RECORDED.write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"wrote {len(recorded)} requests to {RECORDED}")
    else:
        print(json.dumps(recorded, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
