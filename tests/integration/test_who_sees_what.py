"""Shared content, individual authorization (issue 19; docs/security.md §8.1), on a real
server and runner against the fake GitHub with identities: every answer through the node
is compared with the same request made directly, by the same caller."""

from __future__ import annotations

import httpx
import pytest

from conftest import FLEET_TOKEN

JOB = "ghs_jobtoken00000000000000000000000000000"  # the job's GITHUB_TOKEN
OTHER = "ghp_othertoken000000000000000000000000000"  # someone else's, on the same runner
EXPIRED = "ghs_expired000000000000000000000000000000"  # valid once, refused now


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def fleet(nodes, fake):
    fake.add_token(JOB, "github-actions[bot]")
    fake.add_token(OTHER, "someone-else")
    fake.logins[FLEET_TOKEN] = "fleet-bot"
    fake.set_permission("o/shared", FLEET_TOKEN, "admin")
    server = nodes("server")
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)
    return server, runner


def direct(fake, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(fake.url + path, headers=headers or {})


def body(response: httpx.Response, base: str) -> bytes:
    """The body with the base the client used written as {BASE} (hypermedia URLs)."""
    return response.content.replace(base.encode(), b"{BASE}")


def same(through: httpx.Response, direct_answer: httpx.Response, node_url: str,
         fake_url: str) -> None:
    assert through.status_code == direct_answer.status_code
    assert body(through, node_url) == body(direct_answer, fake_url)


def log_of(fake) -> list[tuple[str, str]]:
    return [(e["path"], e["login"]) for e in fake.request_log()]


def test_identity_paths_answer_the_caller_never_the_fleet(fleet, fake):
    server, runner = fleet
    me = runner.get("/user", headers=auth(JOB))
    assert me.json()["login"] == "github-actions[bot]" == direct(fake, "/user", auth(JOB)).json()[
        "login"]
    other = runner.get("/user", headers=auth(OTHER))
    assert other.json()["login"] == "someone-else", "one caller's entry is not another's"
    assert runner.get("/user").status_code == 401  # anonymous: GitHub's 401, not the fleet's
    assert runner.get("/user", headers=auth(JOB)).headers["x-p2p-cache"] == "hit"

    limits = runner.get("/rate_limit", headers=auth(JOB)).json()
    mine = direct(fake, "/rate_limit", auth(JOB)).json()
    assert limits["resources"]["core"] == mine["resources"]["core"], "the job's budget"
    fleet_used = direct(fake, "/rate_limit", auth(FLEET_TOKEN)).json()["rate"]["used"]
    assert limits["rate"]["used"] != fleet_used or fleet_used == mine["rate"]["used"]

    # The repository object carries the caller's permissions: its own, never the fleet's.
    repo = runner.get("/repos/o/shared", headers=auth(JOB))
    same(repo, direct(fake, "/repos/o/shared", auth(JOB)), runner.url, fake.url)
    assert repo.json()["permissions"]["admin"] is False
    assert server.get("/repos/o/shared", headers=auth(FLEET_TOKEN)).json()[
        "permissions"]["admin"] is True
    assert "permissions" not in runner.get("/repos/o/shared").json()  # anonymous
    stats = runner.stats()
    assert stats["peer_hits"] == 0, "nothing identity-scoped came from a peer"
    assert stats["identity_requests"] >= 5
    assert ("/user", "fleet-bot") not in log_of(fake)


def test_an_answer_tells_each_caller_about_its_own_token_never_the_fleets(fleet, fake):
    """GitHub sends, with every answer to a token, what that token may do (X-OAuth-Scopes,
    beside what the endpoint accepts) and when it expires; clients read them (gh's hint on a
    missing scope, tools checking `public_repo` on /users/NAME). The fleet's entries are
    fetched with the fleet's token: each caller must still see its own, as direct, and a
    peer none of the fleet's."""
    server, runner = fleet
    fake.set_scopes(FLEET_TOKEN, "admin:org, repo, workflow")
    fake.set_expiration(FLEET_TOKEN, "2027-03-01 00:00:00 UTC")
    fake.set_scopes(OTHER, "public_repo")
    fake.set_expiration(OTHER, "2026-12-31 23:59:59 UTC")
    names = ("x-oauth-scopes", "x-accepted-oauth-scopes", "github-authentication-token-expiration",
             "cache-control")  # (GitHub's answer to a token is private, to anonymous public)
    callers = {"other": auth(OTHER), "job": auth(JOB), "anonymous": {}}
    for path in ("/repos/o/shared/issues/1", "/users/octocat", "/licenses/mit"):
        runner.get(path)  # the fleet fetches it, with its token
        for who, headers in callers.items():
            for _ in range(2):  # the first answer (a miss or a peer's), then a local hit
                through = runner.get(path, headers=headers)
                straight = direct(fake, path, headers)
                assert through.status_code == straight.status_code == 200
                for name in names:
                    assert through.headers.get(name) == straight.headers.get(name), (
                        path, who, name, through.headers.get("x-p2p-cache"))
    assert runner.get("/licenses/mit", headers=auth(OTHER)).headers["x-oauth-scopes"] \
        == "public_repo"
    # The server fetched them with the fleet's token; what it stored holds nothing of it.
    assert "admin:org" not in server.get("/licenses/mit").headers.get("x-oauth-scopes", "")
    assert runner.stats()["peer_hits"] >= 1


def test_a_token_not_authorized_for_an_organizations_sso_gets_githubs_403(fleet, fake):
    """An organization enforcing SAML SSO: the fleet's token is authorized, the job's is
    not. The job must get GitHub's 403 and its X-GitHub-SSO (gh prints where to authorize
    the token), never the fleet's entry."""
    _, runner = fleet
    fake.make_private("sso-org/app", readers=[FLEET_TOKEN, OTHER])
    fake.require_sso("sso-org", authorized=[FLEET_TOKEN])
    path = "/repos/sso-org/app/issues/1"
    assert runner.get(path).status_code == 404  # anonymous: GitHub's 404
    fleet_view = direct(fake, path, auth(FLEET_TOKEN))
    assert fleet_view.status_code == 200
    for _ in range(2):
        through = runner.get(path, headers=auth(OTHER))
        straight = direct(fake, path, auth(OTHER))
        assert through.status_code == straight.status_code == 403
        assert through.json()["message"] == straight.json()["message"]
        assert through.headers["x-github-sso"] == straight.headers["x-github-sso"]
        assert through.headers["x-oauth-scopes"] == straight.headers["x-oauth-scopes"]


def test_an_expired_token_gets_401_as_direct(fleet, fake):
    """A job whose token GitHub refuses must fail as it would direct, not go green on the
    fleet's answers: repository content, a shared path and an identity path alike."""
    _, runner = fleet
    runner.get("/repos/o/shared/issues/1", headers=auth(JOB))  # the fleet holds it
    runner.get("/licenses/mit")
    for path in ("/repos/o/shared/issues/1", "/licenses/mit", "/user"):
        through = runner.get(path, headers=auth(EXPIRED))
        straight = direct(fake, path, auth(EXPIRED))
        assert through.status_code == straight.status_code == 401, path
        assert through.json()["message"] == straight.json()["message"] == "Bad credentials"
    stats = runner.stats()
    assert stats["credential_checks"] == 1 + 1, "the job's token and the expired one, once"
    assert stats["refused_requests"] == 2 and stats["identity_requests"] >= 1


def test_a_private_repository_is_seen_only_with_credentials_that_may(fleet, fake):
    server, runner = fleet
    fake.make_private("o/secret", readers=[FLEET_TOKEN, JOB])
    path = "/repos/o/secret/issues/1"
    # Anyone on the runner without a token: GitHub's 404, not the fleet's 200.
    anonymous = runner.get(path)
    same(anonymous, direct(fake, path), runner.url, fake.url)
    assert anonymous.status_code == 404
    nosy = runner.get(path, headers=auth(OTHER))
    assert nosy.status_code == 404 == direct(fake, path, auth(OTHER)).status_code
    # The job's token may: the fleet's entry, after one check with the job's token.
    expected = direct(fake, path, auth(JOB))
    fake.reset()
    mine = runner.get(path, headers=auth(JOB))
    same(mine, expected, runner.url, fake.url)
    again = [runner.get(f"/repos/o/secret/issues/{n}", headers=auth(JOB)) for n in range(1, 6)]
    assert all(r.status_code == 200 for r in again)
    job_requests = [p for p, login in log_of(fake) if login == "github-actions[bot]"]
    assert job_requests == ["/repos/o/secret"], "one check per caller and repository"
    # Someone else still gets 404 after the job's check, and the entry stays the fleet's.
    assert runner.get(path, headers=auth(OTHER)).status_code == 404
    assert runner.get("/repos/o/secret/issues/2").status_code == 404


def test_cost_of_a_job_reading_fifty_paths(fleet, fake):
    """Issue 19's figures: requests made with the job's token and with the server's."""
    server, runner = fleet
    fake.make_private("o/private", readers=[FLEET_TOKEN, JOB])
    fake.reset()
    paths = [f"/repos/o/private/issues/{n}" for n in range(1, 51)]
    assert all(runner.get(p, headers=auth(JOB)).status_code == 200 for p in paths)
    logins = [login for _, login in log_of(fake)]
    assert logins.count("github-actions[bot]") == 1, "the job's token: one check"
    assert logins.count("fleet-bot") == 51, "the server's: the 50 paths and the repository"

    fake.reset()
    public = [f"/repos/o/public/issues/{n}" for n in range(1, 51)]
    assert all(runner.get(p).status_code == 200 for p in public)  # an anonymous client
    logins = [login for _, login in log_of(fake)]
    assert logins.count("anonymous") == 0, "public data needs no check"
    assert logins.count("fleet-bot") == 51


def test_the_fleet_cannot_see_it_costs_one_request_a_window(fleet, fake):
    """A private repository the job can read and the server cannot: the fleet's 404 is
    remembered; the job's own answers are its own entries."""
    server, runner = fleet
    fake.make_private("o/jobonly", readers=[JOB])
    fake.reset()
    for _ in range(5):
        answer = runner.get("/repos/o/jobonly/commits", headers=auth(JOB))
        assert answer.status_code == 200
    log = log_of(fake)
    assert log.count(("/repos/o/jobonly", "fleet-bot")) == 1, "the fleet asked once"
    assert log.count(("/repos/o/jobonly/commits", "github-actions[bot]")) == 1
    assert ("/repos/o/jobonly/commits", "fleet-bot") not in log
    stats = runner.stats()
    assert stats["peer_hits"] == 0 and stats["fleet_blind_requests"] == 1
    assert stats["local_hits"] == 4  # the job's own entry, on this node only


def test_a_refused_server_token_leaves_anonymous_callers_githubs_anonymous_answer(
        nodes, fake):
    server = nodes("server")
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)
    fake.revoke(FLEET_TOKEN)
    path = "/repos/o/r/releases/latest"
    through = runner.get(path)
    same(through, direct(fake, path), runner.url, fake.url)
    assert through.status_code == 200
    assert runner.get(path).headers["x-p2p-cache"] == "hit"  # its own (anonymous) entry
    assert runner.stats()["fleet_blind_requests"] == 1


def test_api_version_default_is_one_entry(fleet, fake):
    _, runner = fleet
    path = "/repos/o/r/pulls"
    first = runner.get(path)  # octokit sends no version
    second = runner.get(path, headers={"x-github-api-version": "2022-11-28"})  # githubkit
    assert second.headers["x-p2p-cache"] == "hit" and second.content == first.content
    other = runner.get(path, headers={"x-github-api-version": "2026-03-10"})
    assert other.headers["x-p2p-cache"] == "peer"


def test_writes_and_graphql_go_out_as_the_client_sent_them(fleet, fake):
    _, runner = fleet
    headers = {**auth(JOB), "user-agent": "sticky-comment-action/1.0",
               "time-zone": "Europe/Amsterdam", "graphql-features": "sub_issues",
               "x-custom": "kept", "if-match": '"abc"'}
    runner.http.post("/repos/o/r/issues", json={"title": "t"}, headers=headers)
    runner.http.post("/graphql", json={"query": "{ viewer { login } }"}, headers=headers)
    for entry in fake.request_log()[-2:]:
        sent = entry["headers"]
        assert entry["login"] == "github-actions[bot]"
        for name in ("user-agent", "time-zone", "graphql-features", "x-custom", "if-match"):
            assert sent.get(name) == headers[name], (entry["path"], name)
        assert sent["host"] != f"127.0.0.1:{runner.http_port}", "GitHub's Host, not ours"


def test_counters_and_summary_say_which_calls_needed_the_clients_credentials(fleet, fake):
    from p2pcache.actions import summary_markdown

    _, runner = fleet
    fake.make_private("o/jobonly", readers=[JOB])
    runner.get("/user", headers=auth(JOB))
    runner.get("/repos/o/jobonly/commits", headers=auth(JOB))
    runner.get("/repos/o/r/issues/1", headers=auth(JOB))
    stats = runner.stats()
    assert stats["client_credential_requests"] == (
        stats["identity_requests"] + stats["credential_checks"] + stats["authorization_checks"]
        + stats["fleet_blind_requests"] + stats["refused_requests"])
    assert stats["api_calls_saved"] == stats["local_hits"] + stats["peer_hits"] + stats[
        "coalesced"] + stats["not_modified"]
    text = summary_markdown(stats, 9000)
    row = next(line for line in text.splitlines() if "own credentials" in line)
    assert f"| {stats['client_credential_requests']} (" in row
    assert "a repository the fleet cannot read: 1" in row
    assert "the answer depends on who asks: 1" in row
