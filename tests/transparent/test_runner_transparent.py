"""Transparent mode on a container that plays a GitHub-hosted runner (runnerlab.py).

The container's world, all on its loopback (--network none, no internet):
  - "GitHub": the fake API over HTTPS on 127.0.0.2:443 as api.github.com, its certificate
    from a test public root that the container's system store trusts (the Web PKI here);
    an /etc/hosts line `127.0.0.2 api.github.com` plays DNS. Without p2pcache, every client
    below reaches it directly, so each capture shown here is the redirection's doing;
  - a server node (the fleet's), as another process;
  - the job: `p2pcache actions start --transparent` as the job's user `runner` (it goes
    root through passwordless sudo, as the action does; root's side is the root-owned
    install's entry, which passwordless sudo allows too), then later steps, each a new
    process with the environment the runner builds from GITHUB_ENV, calling
    https://api.github.com unmodified: curl, gh api, getOctokit(...).rest.repos.get from
    @actions/github, @octokit/rest, Node's fetch, requests from Debian and from pip;
  - summary, and a kill -9 of the node with the guardian taking the redirection away.

The node resolves api.github.com before redirecting it (to 127.0.0.2 through the hosts
line, as it would through DNS on a runner) and reaches "GitHub" there with SNI and Host
api.github.com, verifying the certificate against its upstream roots (root's
/etc/p2pcache/transparent.conf names the test public root, since certifi does not hold it),
so the path a real job takes is taken here end to end. test_root_boundary.py runs a job
with no sudo but README's rule, and attacks root's side from it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[0]))
import runnerlab  # noqa: E402
from conftest import require  # noqa: E402  (tests/conftest.py)
from runnerlab import (DIRECT, TOKEN, VENV, Runner, differences, fake_stats,  # noqa: E402
                       parse_env_file, start_github, system_state)

pytestmark = pytest.mark.timeout(1800)

FLEET_SECRET = "transparent-fleet-secret-5d1e"
NAMESPACE = "p2pcache-tests/transparent"
TEMP = "/home/runner/work/_temp"
FAKE = "https://api.github.com"
GUARD_BOUND_S = 5.0  # the README's promise for a dead node


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    reason = runnerlab.missing_prerequisite()
    require(reason is None, reason or "")
    took = runnerlab.build_images()
    box = Runner()
    try:
        start_github(box, tmp_path_factory.mktemp("certs"))
        box.exec(f"mkdir -p {TEMP} && chown -R runner: /home/runner/work")
        box.took = took  # type: ignore[attr-defined]
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def before(runner) -> dict:
    return system_state(runner)


@pytest.fixture(scope="module")
def server(runner) -> str:
    """The fleet's server node, pinned to "GitHub" like any node that must not be captured."""
    env = {"GH_TOKEN": TOKEN, "P2P_CACHE_SECRET": FLEET_SECRET,
           "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "GITHUB_API_URL": FAKE,
           "P2P_CACHE_UPSTREAM_ADDRESSES": "127.0.0.2",
           "P2P_CACHE_UPSTREAM_CA_BUNDLE": "/opt/fake/public-root.pem",
           "P2P_CACHE_PORT": "9100", "P2P_CACHE_LISTEN_HOST": "127.0.0.1",
           "P2P_CACHE_HTTP": "127.0.0.1:9181", "P2P_CACHE_DATA_DIR": "/var/lib/server"}
    runner.exec(f"{VENV}/p2pcache serve >/var/log/server.log 2>&1", env=env, detach=True)
    deadline = time.monotonic() + 60
    while True:
        result = runner.exec("curl -sf http://127.0.0.1:9181/-/multiaddr", check=False)
        if result.returncode == 0 and result.stdout.startswith("/ip4/"):
            return result.stdout.splitlines()[0]
        assert time.monotonic() < deadline, runner.read("/var/log/server.log")
        time.sleep(0.2)


def job_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What every step of the job gets from the runner (GITHUB_API_URL left unset: the
    clients' own default, https://api.github.com, is what must be captured)."""
    env = {"GITHUB_ENV": f"{TEMP}/github_env", "GITHUB_OUTPUT": f"{TEMP}/github_output",
           "GITHUB_PATH": f"{TEMP}/github_path", "GITHUB_STEP_SUMMARY": f"{TEMP}/summary.md",
           "RUNNER_TEMP": TEMP, "GITHUB_ACTIONS": "true", "GITHUB_TOKEN": TOKEN,
           "GH_NO_UPDATE_NOTIFIER": "1", "GH_PROMPT_DISABLED": "1"}
    env.update(extra or {})
    return env


def step_env(box: Runner) -> dict[str, str]:
    """A later step's environment: the job's, plus GITHUB_ENV as the runner applies it."""
    return job_env(parse_env_file(box.read(f"{TEMP}/github_env")))


def start(box: Runner, bootstrap: str = "") -> tuple[float, str]:
    box.exec(f"rm -f {TEMP}/github_env {TEMP}/github_output && touch {TEMP}/github_env "
             f"{TEMP}/github_output", user="runner")
    began = time.monotonic()
    result = box.exec(
        f"{VENV}/p2pcache actions start --transparent --port 9000 --http 127.0.0.1:9180",
        user="runner", check=False, timeout=180, env=job_env({
            "GH_TOKEN": TOKEN, "P2P_CACHE_SECRET": FLEET_SECRET,
            "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "MCP_P2P_BOOTSTRAP_PEERS": bootstrap,
            "P2P_CACHE_LISTEN_HOST": "127.0.0.1"}))
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Transparent mode: https://api.github.com goes through the node" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    return took, result.stdout


CLIENTS = {
    "curl": "bash /opt/clients/curl.sh repos/{repo}",
    "gh": "bash /opt/clients/gh.sh repos/{repo}",
    "actions-github": "node --use-bundled-ca /opt/clients/actions_github.js {repo}",
    "octokit-rest": "node --use-bundled-ca /opt/clients/octokit_rest.mjs {repo}",
    "node-fetch": "node --use-bundled-ca /opt/clients/fetch.mjs repos/{repo}",
    "requests-debian": "/usr/bin/python3 /opt/clients/requests_get.py repos/{repo}",
    "requests-pip": "/opt/pyrequests/bin/python /opt/clients/requests_get.py repos/{repo}",
}


def call(box: Runner, client: str, repo: str, env: dict[str, str]) -> dict:
    env = {**env, "GH_TOKEN": TOKEN}
    return box.json(CLIENTS[client].format(repo=repo), user="runner", env=env)


def test_every_client_is_captured_by_a_later_step(runner, before, server, tmp_path):
    took, output = start(runner, bootstrap=server)
    env = step_env(runner)
    assert env["NODE_EXTRA_CA_CERTS"] == env["REQUESTS_CA_BUNDLE"] == \
        "/etc/ssl/certs/ca-certificates.crt"
    seen_before = fake_stats(runner)["by_path"]
    results = {}
    for client in CLIENTS:
        repo = f"transparent/{client}"
        first, second = call(runner, client, repo, env), call(runner, client, repo, env)
        results[client] = (first, second)
    problems = {c: r for c, r in results.items()
                if r[0].get("status") != 200 or r[0].get("cache") not in ("miss", "peer")
                or r[1].get("cache") != "hit"}
    assert not problems, json.dumps(problems, indent=1) + runner.read(
        f"{TEMP}/p2pcache/p2pcache-node.log")[-3000:]
    seen = fake_stats(runner)["by_path"]
    for client in CLIENTS:
        path = f"/repos/transparent/{client}"
        assert seen.get(path, 0) - seen_before.get(path, 0) == 1, (client, seen)
    # GitHub's bytes, unchanged: what curl, fetch and requests got is what GitHub sends
    direct = runner.exec(f"{DIRECT} -H 'authorization: Bearer {TOKEN}' "
                         "https://api.github.com/repos/transparent/curl | sha256sum").stdout[:64]
    assert results["curl"][1]["sha256"] == direct
    for client in ("node-fetch", "requests-debian", "requests-pip"):
        repo_direct = runner.exec(
            f"{DIRECT} -H 'authorization: Bearer {TOKEN}' "
            f"https://api.github.com/repos/transparent/{client} | sha256sum").stdout[:64]
        assert results[client][1]["sha256"] == repo_direct, client
    assert results["requests-pip"][1]["certifi"] is True  # really the certifi flavour
    ready = re.search(r"ready in ([\d.]+) s; trust store ([\d.]+) s", output)
    assert ready, output
    runnerlab.record(start_transparent_with_bootstrap_s=round(took, 2),
                     start_transparent_ready_s=float(ready.group(1)),
                     update_ca_certificates_s=float(ready.group(2)),
                     images_s=runner.took)  # type: ignore[attr-defined]


def test_node_without_the_extra_ca_variable_is_not_captured(runner, server):
    """Why NODE_EXTRA_CA_CERTS is exported: GitHub's Node ignores the system store."""
    env = step_env(runner)
    env.pop("NODE_EXTRA_CA_CERTS")
    refused = call(runner, "node-fetch", "transparent/no-extra-ca", env)
    assert "error" in refused, refused


def test_a_peer_hit_through_the_interception(runner, server):
    # Repository content is the fleet's (a repository object is each caller's own: it
    # carries the caller's permissions).
    warm = runner.exec("curl -sf http://127.0.0.1:9181/repos/transparent/fleet/commits "
                       "-o /dev/null -w '%{http_code}'")
    assert warm.stdout == "200"
    answer = call(runner, "curl", "transparent/fleet/commits", step_env(runner))
    assert answer["cache"] == "peer", answer
    assert fake_stats(runner)["by_path"]["/repos/transparent/fleet/commits"] == 1


def test_writes_and_graphql_pass_through(runner):
    env = {**step_env(runner), "GH_TOKEN": TOKEN}
    created = runner.exec("gh api -X POST repos/transparent/writes/issues -f title=hello "
                          "--jq .title", user="runner", env=env, check=False)
    assert created.returncode == 0 and created.stdout.strip() == "hello", created.stderr
    graphql = runner.exec("gh api graphql -f query='{ viewer { login } }'", user="runner",
                          env=env, check=False)
    assert graphql.returncode == 0, graphql.stdout + graphql.stderr


def test_summary_puts_everything_back(runner, before):
    env = step_env(runner)
    result = runner.exec(f"{VENV}/p2pcache actions summary --port 9000 --http 127.0.0.1:9180",
                         user="runner", env=env, check=False, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Transparent mode undone" in result.stdout
    assert not differences(before, system_state(runner))
    direct = call(runner, "curl", "transparent/after-summary", step_env(runner))
    assert direct["status"] == 200 and direct["cache"] == "", direct  # GitHub itself
    again = runner.exec(f"{VENV}/p2pcache actions summary --port 9000 --http 127.0.0.1:9180",
                        user="runner", env=env, check=False, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr  # idempotent
    assert not differences(before, system_state(runner))


def test_a_killed_node_takes_the_redirection_with_it(runner, before):
    took, _ = start(runner)
    runnerlab.record(start_transparent_s=round(took, 2))
    env = step_env(runner)
    assert call(runner, "curl", "transparent/kill", env)["cache"] == "miss"
    pid = runner.read(f"{TEMP}/p2pcache/p2pcache-node.pid").split()[0]
    runner.exec(f"kill -9 {pid}")
    killed = time.monotonic()
    while "p2pcache-intercept" in runner.read("/etc/hosts"):
        assert time.monotonic() - killed < 30, runner.read("/etc/hosts")
        time.sleep(0.05)
    gone_s = time.monotonic() - killed
    assert gone_s < GUARD_BOUND_S * 2, gone_s  # generous: the bound is measured, not timed
    answer = call(runner, "curl", "transparent/kill", step_env(runner))
    assert answer["status"] == 200 and answer["cache"] == "", answer  # straight to GitHub
    # the trust store is cleaned too, and summary after it has nothing left to do
    deadline = time.monotonic() + 30
    while differences(before, system_state(runner)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not differences(before, system_state(runner))
    done = runner.exec(f"{VENV}/p2pcache actions summary --http 127.0.0.1:9180",
                       user="runner", env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not differences(before, system_state(runner))
    runnerlab.record(redirect_gone_after_kill_9_s=round(gone_s, 2))


def test_without_sudo_it_says_so_in_one_line_and_uses_base_url_mode(runner, before):
    runner.exec("useradd --create-home nosudo || true")
    runner.exec("install -d -o nosudo -m 700 /home/nosudo/_temp && "
                "touch /home/nosudo/_temp/env && chown nosudo /home/nosudo/_temp/env")
    env = {"RUNNER_TEMP": "/home/nosudo/_temp", "GITHUB_ENV": "/home/nosudo/_temp/env",
           "GH_TOKEN": TOKEN, "P2P_CACHE_LISTEN_HOST": "127.0.0.1"}
    began = time.monotonic()
    result = runner.exec(f"{VENV}/p2pcache actions start --transparent --port 9005 "
                         "--http 127.0.0.1:9185", user="nosudo", env=env, check=False,
                         timeout=120)
    runnerlab.record(start_base_url_mode_s=round(time.monotonic() - began, 2))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "Transparent mode" in line]
    assert lines == ["⚠️  Transparent mode needs root (passwordless sudo, or the sudoers rule "
                     "of README's \"Transparent mode without giving jobs root\"); falling back "
                     "to base-URL mode: send API calls to $P2P_CACHE_API_URL"]
    assert "P2P_CACHE_API_URL=http://127.0.0.1:9185" in runner.read("/home/nosudo/_temp/env")
    assert not differences(before, system_state(runner))
    runner.exec(f"{VENV}/p2pcache actions summary --http 127.0.0.1:9185", user="nosudo",
                env=env, check=False)


def test_link_headers_come_back_as_github_sent_them(runner):
    """The client used GitHub's own host, so nothing is rewritten to the node's base."""
    start(runner)
    env = step_env(runner)
    path = "repos/transparent/links/issues?per_page=30"
    through = runner.exec(f"curl -sS -D - -o /dev/null -H 'authorization: Bearer {TOKEN}' "
                          f"'https://api.github.com/{path}' | tr -d '\\r' | grep -i '^link:'",
                          user="runner", env=env).stdout
    direct = runner.exec(f"{DIRECT} -D - -o /dev/null -H 'authorization: Bearer {TOKEN}' "
                         f"'https://api.github.com/{path}' | tr -d '\\r' | grep -i '^link:'"
                         ).stdout
    # the value byte for byte (a header's name is case-insensitive; h11 sends lower case)
    assert through and through.split(":", 1)[1] == direct.split(":", 1)[1]
    runner.exec(f"{VENV}/p2pcache actions summary --http 127.0.0.1:9180", user="runner",
                env=env, check=False, timeout=120)
