"""gh's GraphQL reads through the fleet (issue 23, docs/graphql.md): the real gh (Debian's)
through each runner's Unix socket, as a job uses it, against the fake GitHub. A shared query
reaches GitHub once for the whole fleet and prints what it prints direct; a mutation passes
through with the job's token and is read back; `viewer` is each caller's own; an `errors`
answer is never stored; a private repository stays private to whoever GitHub refuses."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import FLEET_TOKEN, require
from fakegithub import FakeGitHub

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gh_graphql.ghcli import FULL, Gh  # noqa: E402

JOB = "ghs_jobtokenforgraphql00000000000000000"
OTHER = "ghs_othertokenforgraphql000000000000000"
COMMANDS = {  # the five commands of issue 23, in the form CI scripts use them
    "pr list": ["pr", "list", "-R", FULL],
    "issue list": ["issue", "list", "-R", FULL],
    "pr view": ["pr", "view", "1", "-R", FULL, "--json", "number,title,state,author,labels"],
    "repo view": ["repo", "view", FULL],
    "release list": ["release", "list", "-R", FULL],
}


@pytest.fixture
def fake(tmp_path):
    """The conftest fake, with a Unix socket too: gh direct, for what GitHub would print."""
    server = FakeGitHub("127.0.0.1", 0, latency_ms=20,
                        tokens={FLEET_TOKEN: "fleet-bot", JOB: "github-actions[bot]",
                                OTHER: "someone-else"},
                        unix_socket=tmp_path / "fake.sock")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fleet(nodes, tmp_path):
    """A server and three runners, each runner's local API also on a Unix socket."""
    require(shutil.which("gh") is not None, "gh is not installed (tests/conformance/setup.sh)")
    server = nodes("server")
    runners = [nodes(f"r{i}", start=False, bootstrap=server.multiaddr(),
                     env={"P2P_CACHE_UNIX_SOCKET": str(tmp_path / f"r{i}.sock")})
               for i in range(3)]
    for runner in runners:
        runner.start()
        runner.wait_for_peers(1)
    clients: list[Gh] = []

    def gh(where, token: str = JOB) -> Gh:
        socket = where.unix_socket if isinstance(where, FakeGitHub) \
            else str(tmp_path / f"{where.name}.sock")
        client = Gh(str(socket), token)
        clients.append(client)
        return client

    yield server, runners, gh
    for client in clients:
        client.close()


def operations(fake) -> dict[str, int]:
    return dict(fake.stats()["graphql"]["operations"])


def graphql_logins(fake) -> list[str]:
    return [e.get("login") for e in fake.request_log() if "graphql_body" in e]


def test_each_command_prints_what_it_prints_direct_and_reaches_github_once(fleet, fake):
    server, runners, gh = fleet
    direct = gh(fake)
    for name, args in COMMANDS.items():
        expected = direct.ok(*args)
        before = operations(fake)
        printed = [gh(runner).ok(*args) for runner in runners]
        assert printed == [expected] * 3, name
        asked = {op: n - before.get(op, 0) for op, n in operations(fake).items()
                 if n != before.get(op, 0)}
        assert sum(asked.values()) == 1, f"{name}: {asked} {[r.stats() for r in runners]}"
    # Asked with the fleet's token: GitHub saw the server's, never a runner's, for these.
    fake.reset()
    for runner in runners:
        gh(runner).ok(*COMMANDS["pr list"])
    assert graphql_logins(fake) == []  # all three answered from the fleet (fresh entries)
    stats = [r.stats() for r in runners]
    assert sum(s["graphql_hits"] for s in stats) >= 2 * len(COMMANDS) + 3
    assert sum(s["graphql_points_saved"] for s in stats) >= 2 * len(COMMANDS) + 3
    assert server.stats()["graphql_misses"] == len(COMMANDS)
    # The job summary says it (points: gh's queries cost 1 each).
    from p2pcache.actions import summary_markdown

    last = stats[-1]
    assert f"| GraphQL queries shared (points saved) | {last['graphql_hits']} " \
           f"({last['graphql_points_saved']}) |" in summary_markdown(last, 9000)
    assert last["graphql_hits"] == len(COMMANDS) + 1


def test_a_mutation_passes_through_with_the_jobs_token_and_is_read_back(fleet, fake):
    server, (writer, other, _), gh = fleet
    view = ["pr", "view", "1", "-R", FULL, "--json", "comments", "--jq", ".comments[].body"]
    before = gh(writer).ok(*view)
    assert gh(other).ok(*view) == before  # both hold the answer
    fake.reset()
    gh(writer).ok("pr", "comment", "1", "-R", FULL, "--body", "from the job")
    # The mutation went to GitHub as the job (its token), not as the fleet.
    assert "github-actions[bot]" in graphql_logins(fake)
    assert any("addComment" in e["graphql_body"] for e in fake.request_log()
               if "graphql_body" in e)
    # The writer reads its write at once, and another runner too (dropped fleet-wide).
    assert gh(writer).ok(*view) == before + "from the job\n"
    assert gh(other).ok(*view) == before + "from the job\n"
    assert writer.stats()["graphql_mutation_drops"] == 1


def test_viewer_is_each_callers_own(fleet, fake):
    _, (runner, *_), gh = fleet
    query = ["api", "graphql", "-f", "query={viewer{login}}", "--jq", ".data.viewer.login"]
    assert gh(runner, JOB).ok(*query) == "github-actions[bot]\n"
    assert gh(runner, OTHER).ok(*query) == "someone-else\n"
    assert gh(runner, JOB).ok(*query) == "github-actions[bot]\n"
    assert runner.stats()["graphql_hits"] == 0  # never shared, never stored
    assert graphql_logins(fake).count("github-actions[bot]") == 2


def test_an_errors_answer_is_asked_again(fleet, fake):
    _, (runner, *_), gh = fleet
    args = ["pr", "view", "999", "-R", FULL, "--json", "title"]
    for _ in range(2):
        done = gh(runner).run(*args)
        assert done.returncode != 0 and "999" in done.stderr
    assert operations(fake)["PullRequestByNumber"] == 2  # not stored: asked each time


def test_a_private_repository_stays_private_to_a_token_github_refuses(fleet, fake):
    private = "octo/secret"
    fake.make_private(private, readers=[FLEET_TOKEN, JOB])
    _, (reader, refused, _), gh = fleet
    args = ["issue", "list", "-R", private]
    listed = gh(reader, JOB).ok(*args)
    assert listed.strip()  # the reader lists its issues (and the fleet now holds them)
    assert gh(refused, JOB).ok(*args) == listed  # another runner, same token: the fleet's
    done = gh(refused, OTHER).run(*args)  # GitHub's own answer for this token: not found
    assert done.returncode != 0 and "Could not resolve to a Repository" in done.stderr
    done = gh(reader, OTHER).run(*args)  # on the node that holds it, too
    assert done.returncode != 0 and "Could not resolve to a Repository" in done.stderr
    assert "someone-else" in graphql_logins(fake) or any(
        e.get("login") == "someone-else" for e in fake.request_log())


def test_a_hostile_body_passes_through_and_the_node_goes_on(fleet, fake):
    _, (runner, *_), _ = fleet
    auth = {"authorization": f"bearer {JOB}", "content-type": "application/json"}
    deep = "{" + "a{" * 500 + "b" + "}" * 501
    for body in (b"not json", b"\xff\xfe", json.dumps({"query": deep}).encode(),
                 json.dumps({"query": "query { " + "x " * 20000 + "}"}).encode(),
                 json.dumps({"query": 5}).encode()):
        response = runner.http.post("/graphql", content=body, headers=auth)
        assert response.status_code in (200, 400, 422), response.text  # GitHub's answer
    assert runner.stats()["graphql_hits"] == 0
    assert runner.http.get("/-/healthz").status_code == 200


def test_the_event_floor_asks_github_again_for_a_graphql_answer_once(nodes, fake, tmp_path):
    """GraphQL has no 304: under a runner's event floor the server's older answer is asked
    for again, once for the fleet, and counted as a floor revalidation."""
    require(shutil.which("gh") is not None, "gh is not installed (tests/conformance/setup.sh)")
    server = nodes("server")
    before = nodes("before", bootstrap=server.multiaddr(),
                   env={"P2P_CACHE_UNIX_SOCKET": str(tmp_path / "before.sock")})
    before.wait_for_peers(1)
    args = COMMANDS["pr list"]
    listed = Gh(str(tmp_path / "before.sock"), JOB).ok(*args)
    assert operations(fake)["PullRequestList"] == 1
    time.sleep(1.1)  # the event comes a second after GitHub answered (its Date: seconds)
    floor = str(int(time.time()))
    time.sleep(1.1)  # what GitHub answers from now on is dated after the floor
    after = [nodes(f"after{i}", start=False, bootstrap=server.multiaddr(),
                   env={"P2P_CACHE_UNIX_SOCKET": str(tmp_path / f"after{i}.sock"),
                        "P2P_CACHE_NOT_BEFORE": floor}) for i in range(2)]
    for runner in after:
        runner.start().wait_for_peers(1)
        assert Gh(str(tmp_path / f"{runner.name}.sock"), JOB).ok(*args) == listed
    assert operations(fake)["PullRequestList"] == 2  # asked again once, for both runners
    stats = server.stats()
    # The query (asked again: no 304 in GraphQL), and the repository's view that says who
    # may read it (a free 304), once each for both runners.
    assert stats["floor_revalidations"] == 2 and stats["not_modified"] == 1
