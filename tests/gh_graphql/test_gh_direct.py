"""The real gh against the fake GitHub directly (no node): the GraphQL commands CI scripts use
print what they would print against GitHub, from the same state REST shows. This is the
"direct" half of the later through-the-node comparison (issue 23)."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from conftest import require  # tests/conftest.py
from fakegithub import FakeGitHub

from .ghcli import FULL, RECORDED, Gh, record

TOKEN = "ghp_recordgraphql000000000000000000000"  # the token the recording was made with
AUTH = {"Authorization": f"token {TOKEN}"}


@pytest.fixture
def fake(tmp_path):
    server = FakeGitHub(tokens=[TOKEN], unix_socket=tmp_path / "gh.sock").start()
    yield server
    server.stop()


@pytest.fixture
def gh(fake):
    require(shutil.which("gh") is not None, "gh is not installed (tests/conformance/setup.sh)")
    client = Gh(str(fake.unix_socket), TOKEN)
    yield client
    client.close()


def rest(fake, path: str) -> httpx.Response:
    return httpx.get(fake.url + path, headers=AUTH)


def rows(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines()]


def operations(fake) -> dict[str, int]:
    return fake.stats()["graphql"]["operations"]


def test_pr_list(fake, gh):
    listed = rows(gh.ok("pr", "list", "-R", FULL))
    open_pulls = [p for p in rest(fake, f"/repos/{FULL}/pulls?per_page=100").json()
                  if p["state"] == "open"][:30]
    assert [(int(r[0]), r[1], r[2]) for r in listed] == [
        (p["number"], p["title"], p["head"]["ref"]) for p in open_pulls]
    assert {r[3] for r in listed} == {"OPEN", "DRAFT"}
    assert operations(fake) == {"PullRequestList": 1}
    assert rows(gh.ok("pr", "list", "-R", FULL, "--search", "9", "--limit", "3"))[0][:2] == [
        "95", f"Pull request 95 of {FULL}"]
    assert gh.ok("pr", "list", "-R", FULL, "--label", "bug") == ""  # nothing is labelled
    assert operations(fake)["PullRequestSearch"] == 2


def test_issue_list_shows_what_rest_made(fake, gh):
    made = gh.ok("api", "-X", "POST", f"repos/{FULL}/issues", "-f", "title=Made over REST",
                 "--jq", ".number")
    listed = rows(gh.ok("issue", "list", "-R", FULL, "--limit", "5"))
    assert listed[0][:3] == [made.strip(), "OPEN", "Made over REST"]
    open_issues = [i for i in rest(fake, f"/repos/{FULL}/issues?per_page=100").json()
                   if i["state"] == "open"][:5]
    assert [(int(r[0]), r[2]) for r in listed] == [(i["number"], i["title"])
                                                  for i in open_issues]
    assert operations(fake) == {"IssueList": 1}


def test_pr_view(fake, gh):
    shown = gh.ok("pr", "view", "1", "-R", FULL)
    pull = rest(fake, f"/repos/{FULL}/pulls/1").json()
    assert f"title:\t{pull['title']}\n" in shown and "state:\tOPEN\n" in shown
    assert "number:\t1\n" in shown and pull["body"] in shown
    as_json = json.loads(gh.ok("pr", "view", "1", "-R", FULL, "--json", "title,body"))
    assert as_json == {"title": pull["title"], "body": pull["body"]}
    assert operations(fake) == {"PullRequestByNumber": 2}
    missing = gh.run("pr", "view", "999", "-R", FULL)
    assert missing.returncode == 1
    assert "Could not resolve to a PullRequest with the number of 999" in missing.stderr


def test_repo_view(fake, gh):
    shown = gh.ok("repo", "view", FULL)
    assert shown.startswith(f"name:\t{FULL}\ndescription:\tFake repository {FULL}\n")
    assert f"Fake repository {FULL}." in shown  # the README, over REST
    assert operations(fake) == {"RepositoryInfo": 1}
    missing = gh.run("repo", "view", "octo/missing-repo")
    assert missing.returncode == 1 and "Could not resolve to a Repository" in missing.stderr


def test_release_list(fake, gh):
    listed = rows(gh.ok("release", "list", "-R", FULL))
    assert [r[:3] for r in listed] == [["v1.2.0", "Latest", "v1.2.0"], ["v1.1.0", "", "v1.1.0"],
                                       ["v1.0.0", "", "v1.0.0"]]
    assert operations(fake) == {"RepositoryReleaseList": 1}


def test_viewer_is_the_tokens_login(fake, gh):
    viewer = json.loads(gh.ok("api", "graphql", "-f", "query={viewer{login}}"))
    assert viewer == {"data": {"viewer": {"login": gh.ok("api", "user", "--jq", ".login")
                                          .strip()}}}


def test_issue_comment_then_view_shows_it(fake, gh):
    before = rest(fake, f"/repos/{FULL}/issues/1").json()["comments"]
    url = gh.ok("issue", "comment", "1", "-R", FULL, "--body", "A comment from gh").strip()
    assert url.startswith(f"https://github.com/{FULL}/issues/1#issuecomment-")
    shown = gh.ok("issue", "view", "1", "-R", FULL, "--comments")
    login = gh.ok("api", "user", "--jq", ".login").strip()
    assert shown.rstrip().endswith(f"author:\t{login}\nassociation:\tnone\nedited:\tfalse\n"
                                   "status:\tnone\n--\nA comment from gh\n--")
    assert rest(fake, f"/repos/{FULL}/issues/1").json()["comments"] == before + 1
    assert operations(fake)["CommentCreate"] == 1


def test_pr_comment_then_view_shows_it(fake, gh):
    gh.ok("pr", "comment", "2", "-R", FULL, "--body", "Reviewed by gh")
    shown = gh.ok("pr", "view", "2", "-R", FULL, "--comments")
    assert shown.rstrip().endswith("Reviewed by gh\n--")
    assert operations(fake)["CommentCreate"] == 1


def test_gh_still_sends_the_recorded_queries(fake, gh):
    """gh_queries.json (what the unit tests of p2pcache.graphql read) is what this gh sends;
    re-record with `python tests/gh_graphql/ghcli.py --write` when gh changes."""
    assert record(fake, gh) == json.loads(RECORDED.read_text())
