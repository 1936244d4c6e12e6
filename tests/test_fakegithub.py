"""Tests of the fake GitHub API itself.

The node's tests and the benchmarks trust this fake to behave like GitHub, so
the behaviours they rely on (ETag/304 accounting, rate limits, paging, fault
injection, write invalidation) are pinned down here.  Everything runs
in-process on a free port with zero latency, so the module stays fast.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
# Import by file location so this works whether or not tests/ is a package.
sys.path.insert(0, str(HERE))
from fakegithub import FakeGitHub  # noqa: E402

TOKEN = "ghp_good_token"
AUTH = {"Authorization": f"token {TOKEN}"}
LINK_RE = re.compile(r'<([^>]+)>; rel="(\w+)"')


@pytest.fixture
def fake():
    with FakeGitHub("127.0.0.1", 0, latency_ms=0, tokens=[TOKEN], rate_limit=5000) as f:
        yield f


@pytest.fixture
def client(fake):
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        yield c


def stats(client: httpx.Client) -> dict:
    return client.get("/_fake/stats").json()


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in LINK_RE.findall(response.headers.get("Link", ""))}


# --------------------------------------------------------------------------- #
# Shapes and headers
# --------------------------------------------------------------------------- #

def test_repo_shape_and_github_headers(client):
    r = client.get("/repos/octo/widget")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "widget"
    assert body["full_name"] == "octo/widget"
    assert body["owner"]["login"] == "octo"
    assert isinstance(body["id"], int) and isinstance(body["stargazers_count"], int)
    assert "updated_at" in body

    h = r.headers
    assert h["Content-Type"] == "application/json; charset=utf-8"
    assert h["ETag"] == 'W/"%s"' % hashlib.sha256(r.content).hexdigest()
    assert h["Last-Modified"].endswith("GMT")
    assert h["X-GitHub-Request-Id"]
    assert h["X-RateLimit-Limit"] == "60"
    assert h["X-RateLimit-Remaining"] == "59"
    assert h["X-RateLimit-Used"] == "1"
    assert int(h["X-RateLimit-Reset"]) > time.time()
    assert h["X-RateLimit-Resource"] == "core"
    assert h["Cache-Control"].endswith("max-age=60, s-maxage=60")
    assert h["Vary"] == "Accept, Authorization, Cookie, X-GitHub-OTP"
    assert int(h["Content-Length"]) == len(r.content)

    # Deterministic: same body (and ETag) on a second read.
    assert client.get("/repos/octo/widget").content == r.content


def test_authenticated_answers_are_private_anonymous_public(client):
    assert client.get("/repos/o/r").headers["Cache-Control"].startswith("public")
    assert client.get("/repos/o/r", headers=AUTH).headers["Cache-Control"].startswith("private")


def test_user_generic_and_head(client):
    assert client.get("/users/alice").json()["login"] == "alice"
    assert client.get("/orgs/acme/teams").json() == {"path": "/orgs/acme/teams", "n": 0}
    get = client.get("/repos/o/r/branches/main")
    head = client.head("/repos/o/r/branches/main")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(get.content))


def test_not_found_spends_a_unit(client):
    for path in ("/notfound/x", "/repos/o/missing-thing", "/repos/o/missing-x/issues"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["message"] == "Not Found"
        assert r.json()["documentation_url"].startswith("https://docs.github.com/")
        assert "ETag" not in r.headers  # errors carry no validators on GitHub
    assert stats(client)["units"] == 3


# --------------------------------------------------------------------------- #
# Conditional requests
# --------------------------------------------------------------------------- #

def test_etag_304_spends_nothing(client):
    first = client.get("/repos/o/r", headers=AUTH)
    etag = first.headers["ETag"]
    assert first.headers["X-RateLimit-Remaining"] == "4999"

    for inm in (etag, etag[2:], f'"nope", {etag}', "*"):
        r = client.get("/repos/o/r", headers={**AUTH, "If-None-Match": inm})
        assert r.status_code == 304, inm
        assert r.content == b""
        assert r.headers["ETag"] == etag
        assert r.headers["X-RateLimit-Remaining"] == "4999"
        assert r.headers["X-RateLimit-Limit"] == "5000"

    miss = client.get("/repos/o/r", headers={**AUTH, "If-None-Match": 'W/"stale"'})
    assert miss.status_code == 200
    assert miss.headers["X-RateLimit-Remaining"] == "4998"

    s = stats(client)
    assert s["requests"] == 6 and s["not_modified"] == 4 and s["units"] == 2


def test_an_etag_belongs_to_the_token_that_asked(fake, client):
    """As GitHub: the same body has another ETag for another token (or none), and one
    token's ETag gets another token a 200."""
    fake.add_token("ghp_other")
    other = {"Authorization": "token ghp_other"}
    mine = client.get("/repos/o/r/issues/1", headers=AUTH)
    theirs = client.get("/repos/o/r/issues/1", headers=other)
    anonymous = client.get("/repos/o/r/issues/1")
    assert mine.content == theirs.content == anonymous.content
    assert len({mine.headers["ETag"], theirs.headers["ETag"], anonymous.headers["ETag"]}) == 3
    crossed = client.get("/repos/o/r/issues/1", headers={**other, "If-None-Match": mine.headers["ETag"]})
    assert crossed.status_code == 200 and crossed.headers["ETag"] == theirs.headers["ETag"]
    same = client.get("/repos/o/r/issues/1", headers={**AUTH, "If-None-Match": mine.headers["ETag"]})
    assert same.status_code == 304


def test_if_modified_since(client):
    r = client.get("/repos/o/r")
    lm = r.headers["Last-Modified"]
    assert client.get("/repos/o/r", headers={"If-Modified-Since": lm}).status_code == 304
    client.post("/_fake/mutate", params={"path": "/repos/o/r"})
    assert client.get("/repos/o/r", headers={"If-Modified-Since": lm}).status_code == 200


def test_mutate_changes_etag(client):
    before = client.get("/repos/o/r")
    m = client.post("/_fake/mutate", params={"path": "/repos/o/r"})
    assert m.status_code == 200 and m.json()["n"] == 1
    after = client.get("/repos/o/r", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.json()["updated_at"] != before.json()["updated_at"]
    # Other resources are untouched.
    assert client.post("/_fake/mutate", params={"path": "/x/y"}).json()["n"] == 1
    assert client.get("/repos/o/r", headers={"If-None-Match": after.headers["ETag"]}).status_code == 304


# --------------------------------------------------------------------------- #
# Auth and rate limits
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("auth", ["token bad", "Bearer bad", "Basic Zm9vOmJhcg=="])
def test_bad_token_is_401_and_free(client, auth):
    r = client.get("/repos/o/r", headers={"Authorization": auth})
    assert r.status_code == 401
    assert r.json()["message"] == "Bad credentials"
    assert "documentation_url" in r.json()
    assert stats(client)["units"] == 0


def test_bearer_token_accepted(client):
    r = client.get("/repos/o/r", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5000"


def test_anonymous_limit_60_then_403(client):
    for i in range(60):
        r = client.get(f"/repos/o/r{i}")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Remaining"] == str(59 - i)
    r = client.get("/repos/o/r")
    assert r.status_code == 403
    assert r.json()["message"].startswith("API rate limit exceeded for 127.0.0.1")
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in r.headers  # primary limits have no Retry-After
    # The exhausted request spent nothing; a token's budget is separate.
    assert stats(client)["units"] == 60
    ok = client.get("/repos/o/r", headers=AUTH)
    assert ok.status_code == 200 and ok.headers["X-RateLimit-Remaining"] == "4999"
    # /rate_limit stays free and reports the state.
    rl = client.get("/rate_limit").json()
    assert rl["resources"]["core"] == {
        "limit": 60, "used": 60, "remaining": 0, "reset": rl["rate"]["reset"]}


def test_token_budget_from_rate_limit():
    with FakeGitHub("127.0.0.1", 0, 0, [TOKEN], rate_limit=3) as fake:
        with httpx.Client(base_url=fake.url, headers=AUTH) as c:
            assert [c.get("/repos/o/r").status_code for _ in range(4)] == [200, 200, 200, 403]
            assert "user ID" in c.get("/repos/o/r").json()["message"]


def test_rate_limit_endpoint_costs_nothing(client):
    for _ in range(3):
        r = client.get("/rate_limit", headers=AUTH)
        assert r.status_code == 200
    core = r.json()["resources"]["core"]
    assert core["limit"] == 5000 and core["remaining"] == 5000 and core["used"] == 0
    s = stats(client)
    assert s["requests"] == 3 and s["units"] == 0


# --------------------------------------------------------------------------- #
# Paging
# --------------------------------------------------------------------------- #

def test_issue_paging_link_header(fake, client):
    # GitHub names list pages by repository id, the id in the repo's JSON.
    repo_id = client.get("/repos/o/r").json()["id"]
    base = f"{fake.url}/repositories/{repo_id}/issues?per_page=30&page="

    p1 = client.get("/repos/o/r/issues", params={"per_page": 30})
    assert len(p1.json()) == 30
    assert links(p1) == {"next": base + "2", "last": base + "4"}
    # GitHub's exact formatting.
    assert p1.headers["Link"] == f'<{base}2>; rel="next", <{base}4>; rel="last"'

    p2 = client.get("/repos/o/r/issues", params={"per_page": 30, "page": 2})
    assert links(p2) == {"prev": base + "1", "next": base + "3",
                         "last": base + "4", "first": base + "1"}

    p4 = client.get("/repos/o/r/issues", params={"per_page": 30, "page": 4})
    assert len(p4.json()) == 5
    assert links(p4) == {"prev": base + "3", "first": base + "1"}

    # Following rel="next" visits all 95 issues exactly once.
    seen, url = [], "/repos/o/r/issues?per_page=30"
    while url:
        r = client.get(url)
        seen += [i["number"] for i in r.json()]
        url = links(r).get("next")
    assert sorted(seen) == list(range(1, 96))
    assert p1.headers["ETag"] != p2.headers["ETag"]  # each page is its own representation


def test_paging_defaults_and_caps(client):
    r = client.get("/repos/o/r/pulls")
    assert len(r.json()) == 30
    repo_id = client.get("/repos/o/r").json()["id"]
    assert links(r)["last"].endswith(f"/repositories/{repo_id}/pulls?page=4")
    big = client.get("/repos/o/r/commits", params={"per_page": 500})
    assert len(big.json()) == 95 and "Link" not in big.headers
    assert client.get("/repos/o/r/issues", params={"page": 9}).json() == []


# --------------------------------------------------------------------------- #
# Fault injection and latency
# --------------------------------------------------------------------------- #

def test_fail_503_then_normal(client):
    assert client.post("/_fake/fail", params={"status": 503, "count": 2}).status_code == 200
    for _ in range(2):
        r = client.get("/repos/o/r")
        assert r.status_code == 503
        assert r.json() == {"message": "Server Error"}
    assert client.get("/repos/o/r").status_code == 200
    s = stats(client)
    assert s["requests"] == 3 and s["units"] == 1


def test_fail_429_secondary_limit_with_retry_after(client):
    client.post("/_fake/fail", params={"status": 429, "retry_after": 7})
    r = client.get("/repos/o/r", headers=AUTH)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert "secondary rate limit" in r.json()["message"]
    assert int(r.headers["X-RateLimit-Remaining"]) > 0  # not the primary limit
    client.post("/_fake/fail", params={"status": 403})
    r = client.get("/repos/o/r")
    assert r.status_code == 403 and r.headers["Retry-After"] == "60"
    assert client.get("/repos/o/r").status_code == 200


def test_past_the_concurrency_limit_github_refuses_at_once(fake, client):
    assert client.post("/_fake/limits", params={"concurrent": 3}).json()["max_concurrent"] == 3
    fake.set_latency(1000)
    answers: list[httpx.Response] = []

    def one(path: str) -> None:
        answers.append(httpx.get(fake.url + path, headers=AUTH, timeout=10))

    threads = [threading.Thread(target=one, args=(f"/repos/o/r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # arrivals in order: the 4th finds 3 in flight
    for t in threads:
        t.join()
    refused = [r for r in answers if r.status_code == 403]
    assert sorted(r.status_code for r in answers) == [200] * 3 + [403] * 3
    for r in refused:
        assert "secondary rate limit" in r.json()["message"]
        assert r.json()["documentation_url"].endswith("#about-secondary-rate-limits")
        assert "Retry-After" not in r.headers, "GitHub's message only: wait a minute"
        assert int(r.headers["X-RateLimit-Remaining"]) > 0, "not the primary limit"
    s = stats(client)
    assert s["secondary_limited"] == {"concurrent": 3}
    assert s["max_in_flight"][fake.login_of(TOKEN)] >= 4
    assert s["units"] == 3, "a refusal costs no primary unit"
    # Another credential has limits of its own; and once answers are out, room again.
    assert httpx.get(fake.url + "/repos/o/x").status_code == 200
    assert client.get("/repos/o/y", headers=AUTH).status_code == 200


def test_past_900_points_a_minute_on_one_endpoint_github_refuses(fake, client):
    fake.set_limits(endpoint_points=6)
    for i in range(6):  # six repositories: one endpoint, GET /repos/{owner}/{repo}
        assert client.get(f"/repos/o/r{i}", headers=AUTH).status_code == 200
    r = client.get("/repos/other/r", headers=AUTH)
    assert r.status_code == 403 and "secondary rate limit" in r.json()["message"]
    assert 55 <= int(r.headers["Retry-After"]) <= 60, "until the minute has room again"
    # Other endpoints and other credentials keep their own minute.
    assert client.get("/repos/o/r0/issues", headers=AUTH).status_code == 200
    assert client.get("/users/octocat", headers=AUTH).status_code == 200
    assert client.get("/repos/o/r0").status_code == 200
    # A write costs 5: one fits in a fresh endpoint's 6, a second does not.
    assert client.post("/repos/o/r0/issues/1/comments", headers=AUTH,
                       json={"body": "x"}).status_code in (200, 201, 404)
    r = client.post("/repos/o/r1/issues/2/comments", headers=AUTH, json={"body": "x"})
    assert r.status_code == 403 and r.headers["Retry-After"]
    assert stats(client)["secondary_limited"] == {"points": 2}
    client.post("/_fake/reset")
    assert client.get("/repos/o/r9", headers=AUTH).status_code == 200, "reset: a new minute"


def test_endpoints_are_routes_with_placeholders():
    from fakegithub import _endpoint

    assert _endpoint("GET", "/repos/o/r") == _endpoint("HEAD", "/repos/a/b") == \
        "GET /repos/{owner}/{repo}"
    assert _endpoint("GET", "/repos/o/r/issues/7/comments") == \
        "GET /repos/{owner}/{repo}/issues/{id}/comments"
    assert _endpoint("GET", "/users/octocat") == "GET /users/{id}"
    assert _endpoint("GET", "/user/repos") == "GET /user/repos"
    assert _endpoint("POST", "/repos/o/r/issues") == "POST /repos/{owner}/{repo}/issues"


def test_secondary_limits_from_the_command_line(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "fakegithub.py"), "--port-file",
                             str(port_file), "--max-concurrent", "7", "--endpoint-points", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        assert [httpx.get(f"{url}/users/u{i}").status_code for i in range(3)] == [200, 200, 403]
        limits = httpx.post(f"{url}/_fake/limits").json()
        assert limits == {"max_concurrent": 7, "endpoint_points": 2}
        assert httpx.post(f"{url}/_fake/limits", params={"points": 0}).status_code == 400
    finally:
        proc.terminate()
        proc.wait(10)


def test_latency_overlaps_across_threads(fake, client):
    # One second per answer: serial would take 5 s, overlapping ~1 s. The bounds are
    # that wide so a loaded machine cannot fail the test (no timing is measured here).
    assert client.post("/_fake/latency", params={"ms": 1000}).json()["latency_ms"] == 1000
    codes: list[int] = []

    def one() -> None:
        codes.append(httpx.get(fake.url + "/repos/o/r", headers=AUTH, timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(5)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert codes == [200] * 5
    assert 1.0 <= elapsed < 3.5  # concurrent, not 5 x 1 s
    t0 = time.monotonic()
    client.get("/_fake/stats")  # control API is never delayed
    assert time.monotonic() - t0 < 0.9


# --------------------------------------------------------------------------- #
# Writes
# --------------------------------------------------------------------------- #

def test_writes_need_a_token(client):
    r = client.post("/repos/o/r/issues", json={"title": "x"})
    assert r.status_code == 401 and r.json()["message"] == "Requires authentication"
    assert client.post("/graphql", json={"query": "{viewer{login}}"}).status_code == 401
    assert stats(client)["units"] == 0


def test_writes_status_codes_and_version_bumps(client):
    item, parent = "/repos/o/r/issues/5", "/repos/o/r/issues"
    etag_item = client.get(item, headers=AUTH).headers["ETag"]
    etag_list = client.get(parent, headers=AUTH).headers["ETag"]

    created = client.post(parent, json={"title": "hi"}, headers=AUTH)
    assert created.status_code == 201
    assert created.json()["title"] == "hi" and created.json()["number"] == 96

    patched = client.patch(item, json={"state": "closed"}, headers=AUTH)
    assert patched.status_code == 200
    # The item and the collection it is listed in both became stale.
    for path, old in ((item, etag_item), (parent, etag_list)):
        r = client.get(path, headers={**AUTH, "If-None-Match": old})
        assert r.status_code == 200 and r.headers["ETag"] != old

    assert client.put("/repos/o/r/contents/a.txt", json={"c": 1}, headers=AUTH).status_code == 201
    assert client.put("/repos/o/r/contents/a.txt", json={"c": 2}, headers=AUTH).status_code == 200
    deleted = client.delete("/repos/o/r/contents/a.txt", headers=AUTH)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get("/repos/o/r/contents/a.txt", headers=AUTH).json()["n"] == 3

    bad = client.post(parent, content=b"{not json", headers=AUTH)
    assert bad.status_code == 400 and bad.json()["message"] == "Problems parsing JSON"

    s = stats(client)
    assert s["methods"] == {"GET": 5, "POST": 2, "PATCH": 1, "PUT": 2, "DELETE": 1}
    assert s["units"] == 11  # every write and read above spent one


# --------------------------------------------------------------------------- #
# GraphQL
# --------------------------------------------------------------------------- #

GH_QUERIES = json.loads((HERE / "gh_graphql" / "gh_queries.json").read_text())


def gql(client, query: str, variables: dict | None = None, headers: dict | None = None,
        **extra) -> httpx.Response:
    doc = {"query": query, **extra}
    if variables is not None:
        doc["variables"] = variables
    return client.post("/graphql", json=doc, headers=AUTH if headers is None else headers)


def gh_query(command: str, index: int = 0, **variables) -> tuple[str, dict]:
    found = [r["body"] for r in GH_QUERIES if r["command"] == command][index]
    return found["query"], {**(found.get("variables") or {}), **variables}


def test_graphql_viewer_is_the_tokens_rest_user(fake, client):
    r = gql(client, "query { viewer { login } }")
    assert r.status_code == 200 and r.headers["X-RateLimit-Resource"] == "graphql"
    assert r.json() == {"data": {"viewer": {"login": client.get("/user", headers=AUTH)
                                            .json()["login"]}}}
    assert "ETag" not in r.headers and "Last-Modified" not in r.headers  # no validators
    other = FakeGitHub(tokens=["another"]).start()
    try:
        theirs = httpx.post(other.url + "/graphql", json={"query": "{viewer{login}}"},
                            headers={"Authorization": "bearer another"}).json()
    finally:
        other.stop()
    assert theirs["data"]["viewer"]["login"] != r.json()["data"]["viewer"]["login"]


def test_graphql_refuses_bad_and_missing_credentials(client):
    bad = gql(client, "{viewer{login}}", headers={"Authorization": "bearer nope"})
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
    anonymous = gql(client, "{viewer{login}}", headers={})
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "This endpoint requires you to be authenticated."
    assert stats(client)["units"] == 0


def test_graphql_pr_list_pages_like_github(client):
    query, variables = gh_query("pr list", limit=10)
    first = gql(client, query, variables).json()["data"]["repository"]["pullRequests"]
    rest_open = [p["number"] for p in client.get(
        "/repos/octo/gql/pulls?per_page=100", headers=AUTH).json() if p["state"] == "open"]
    assert first["totalCount"] == len(rest_open)
    assert [p["number"] for p in first["nodes"]] == rest_open[:10]  # newest first, like REST
    assert first["pageInfo"]["hasNextPage"] is True
    rest = client.get("/repos/octo/gql/pulls/95", headers=AUTH).json()
    assert first["nodes"][0]["title"] == rest["title"]
    assert first["nodes"][0]["isDraft"] == rest["draft"]
    second = gql(client, query, {**variables, "endCursor": first["pageInfo"]["endCursor"]})
    nodes = second.json()["data"]["repository"]["pullRequests"]["nodes"]
    assert [p["number"] for p in nodes] == rest_open[10:20]


def test_graphql_issue_list_shows_issues_made_over_rest(client):
    made = client.post("/repos/octo/gql/issues", json={"title": "Made by REST"}, headers=AUTH)
    assert made.status_code == 201
    query, variables = gh_query("issue list", limit=3)
    issues = gql(client, query, variables).json()["data"]["repository"]["issues"]
    assert issues["nodes"][0]["number"] == made.json()["number"] == 96
    assert issues["nodes"][0]["title"] == "Made by REST"
    rest_open = [i for i in client.get("/repos/octo/gql/issues?per_page=100&page=1",
                                       headers=AUTH).json() if i["state"] == "open"]
    assert issues["totalCount"] >= len(rest_open)


def test_graphql_node_ids_are_the_rest_node_ids(client):
    query, variables = gh_query("issue comment", 0)
    issue = gql(client, query, variables).json()["data"]["repository"]["issue"]
    assert issue["id"] == client.get("/repos/octo/gql/issues/1", headers=AUTH).json()["node_id"]
    repo = gql(client, '{ repository(owner: "octo", name: "gql") { id databaseId } }').json()
    rest = client.get("/repos/octo/gql", headers=AUTH).json()
    assert repo["data"]["repository"] == {"id": rest["node_id"], "databaseId": rest["id"]}


def test_graphql_add_comment_shows_in_the_next_query_and_in_rest(client):
    query, variables = gh_query("issue comment", 0)
    subject = gql(client, query, variables).json()["data"]["repository"]["issue"]["id"]
    before = client.get("/repos/octo/gql/issues/1", headers=AUTH)
    mutation, _ = gh_query("issue comment", 1)
    done = gql(client, mutation, {"input": {"subjectId": subject, "body": "hello"}}).json()
    assert "#issuecomment-" in done["data"]["addComment"]["commentEdge"]["node"]["url"]
    view, view_vars = gh_query("issue view 1 --comments", 1, id=subject)
    comments = gql(client, view, view_vars).json()["data"]["node"]["comments"]
    assert comments["nodes"][-1]["body"] == "hello"
    assert comments["nodes"][-1]["viewerDidAuthor"] is True
    after = client.get("/repos/octo/gql/issues/1", headers={**AUTH, "If-None-Match":
                                                            before.headers["ETag"]})
    assert after.status_code == 200 and after.json()["comments"] == before.json()["comments"] + 1
    missing = gql(client, mutation, {"input": {"subjectId": "I_nope", "body": "x"}}).json()
    assert missing["data"] == {"addComment": None}
    assert missing["errors"][0]["type"] == "NOT_FOUND"


def test_graphql_errors_have_githubs_shapes(client):
    syntax = gql(client, "{ viewer { login }")
    assert syntax.status_code == 200 and "data" not in syntax.json()
    assert syntax.json()["errors"][0]["message"].startswith("Parse error on end of file")
    unknown = gql(client, "query Q { viewer { nope } }").json()
    assert unknown == {"errors": [{
        "path": ["query Q", "viewer", "nope"],
        "extensions": {"code": "undefinedField", "typeName": "User", "fieldName": "nope"},
        "locations": [{"line": 1, "column": 20}],
        "message": "Field 'nope' doesn't exist on type 'User'"}]}
    query, variables = gh_query("repo view", owner="octo", name="missing-repo")
    missing = gql(client, query, variables).json()
    assert missing["data"] == {"repository": None}
    assert missing["errors"][0]["type"] == "NOT_FOUND"
    assert missing["errors"][0]["path"] == ["repository"]
    required = gql(client, query, {"name": "gql"}).json()
    assert "data" not in required
    assert required["errors"][0]["message"] == \
        "Variable $owner of type String! was provided invalid value"
    assert gql(client, "{ a } fragment F on Q { ...F }").json()["errors"][0]["message"] == \
        "Fragment F contains an infinite loop"
    assert gql(client, "query A { viewer { login } } query B { viewer { login } }").json()[
        "errors"][0]["message"] == "An operation name is required"
    paged = gql(client, '{ repository(owner: "o", name: "r") { issues(first: 101) '
                        "{ totalCount } } }").json()
    assert paged["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    assert gql(client, None).json()["errors"][0]["message"].startswith("A query attribute")


def test_graphql_private_repositories_per_token(fake, client):
    fake.add_token("reader-token", "reader")
    fake.make_private("octo/secret", readers=["reader-token"])
    fake.set_permission("octo/secret", "reader-token", "push")
    query, variables = gh_query("repo view", name="secret")
    query = query.replace("description}", "description,isPrivate,viewerPermission}")
    hidden = gql(client, query, variables).json()
    assert hidden["data"] == {"repository": None}
    assert hidden["errors"][0]["message"] == \
        "Could not resolve to a Repository with the name 'octo/secret'."
    seen = gql(client, query, variables, headers={"Authorization": "bearer reader-token"})
    assert seen.json()["data"]["repository"]["isPrivate"] is True
    assert seen.json()["data"]["repository"]["viewerPermission"] == "WRITE"
    search, search_vars = gh_query("pr list --label bug", q="repo:octo/secret type:pr")
    assert gql(client, search, search_vars).json()["data"]["search"]["issueCount"] == 0
    assert gql(client, search, search_vars, headers={"Authorization": "bearer reader-token"}
               ).json()["data"]["search"]["issueCount"] > 0


def test_graphql_hostile_bodies_get_errors_not_dropped_connections(client):
    for doc in ({"query": "{", "operationName": {"a": 1}}, {"query": "{a" * 50_000 + "}" * 50_000},
                {"query": "query($v: String) { viewer { login } }",
                 "variables": json.loads("[" * 900 + "]" * 900)},
                {"query": "{ viewer { login } }", "variables": {"v": json.loads(
                    "[" * 900 + "]" * 900)}},
                {"query": "{ ...A } " + " ".join(f"fragment {c} on Query {{ ...{n} ...{n} }}"
                                                 for c, n in zip("ABCDEFGHIJKLMNOPQRST",
                                                                 "BCDEFGHIJKLMNOPQRSTU"))
                 + " fragment U on Query { viewer { login } }"}):
        r = client.post("/graphql", json=doc, headers=AUTH)
        # an unused variable, however nested, is no error; the others are
        assert r.status_code == 200 and (r.json().get("errors") or "variables" in doc and
                                         doc["query"].startswith("{ viewer")), doc["query"][:40]
    assert stats(client)["graphql"]["points"] >= 5


def test_graphql_spends_the_estimated_cost(fake, client):
    # pullRequests 1 + comments 100, issues 1 + comments 100: 202 requests, 2 points
    query = ('{ repository(owner: "o", name: "r") { '
             "pullRequests(first: 100) { nodes { comments(first: 50) { totalCount } } } "
             "issues(first: 100) { nodes { comments(first: 100) { totalCount } } } } "
             "rateLimit { cost used remaining } }")
    r = gql(client, query)
    assert r.json()["data"]["rateLimit"] == {"cost": 2, "used": 2, "remaining": 4998}
    assert (r.headers["X-RateLimit-Used"], r.headers["X-RateLimit-Remaining"]) == ("2", "4998")
    assert client.get("/rate_limit", headers=AUTH).json()["resources"]["graphql"]["used"] == 2


def test_graphql_budget_runs_out_with_a_200_and_an_error():
    with FakeGitHub(tokens=[TOKEN], rate_limit=3) as fake, \
            httpx.Client(base_url=fake.url) as client:
        query = ('{ repository(owner: "o", name: "r") { pullRequests(first: 100) { nodes { '
                 "comments(first: 100) { totalCount } } } } }")  # 101 requests: 1 point
        assert all("data" in gql(client, query).json() for _ in range(3))
        spent = gql(client, query)
        assert spent.status_code == 200 and spent.headers["X-RateLimit-Remaining"] == "0"
        assert spent.json()["errors"][0]["type"] == "RATE_LIMIT"
        assert "data" not in spent.json()


def test_graphql_counts_requests_per_operation(client):
    for command in ("pr list", "pr list", "repo view"):
        query, variables = gh_query(command)
        gql(client, query, variables)
    gql(client, "{ viewer { login } }")
    counted = stats(client)["graphql"]
    assert counted["operations"] == {"PullRequestList": 2, "RepositoryInfo": 1,
                                     "(anonymous)": 1}
    assert counted["points"] == 4
    log = client.get("/_fake/requests").json()
    assert json.loads(log[-1]["graphql_body"]) == {"query": "{ viewer { login } }"}
    assert log[-1]["path"] == "/graphql"


def test_graphql_answers_every_query_gh_sends(client):
    """What gh 2.23 sends for pr/issue list/view, repo view, release list: data, no errors."""
    subject = None
    for recorded in GH_QUERIES:
        variables = dict(recorded["body"].get("variables") or {})
        if "input" in variables or "id" in variables:
            variables = {**variables, **({"input": {**variables["input"], "subjectId": subject}}
                                         if "input" in variables else {"id": subject})}
        r = client.post("/graphql", json={**recorded["body"], "variables": variables},
                        headers={**AUTH, **recorded["headers"]})
        assert r.status_code == 200 and "errors" not in r.json(), (recorded["command"], r.text)
        data = r.json()["data"]
        issue = (data.get("repository") or {}).get("issue")
        subject = issue["id"] if issue and "id" in issue else subject


# --------------------------------------------------------------------------- #
# Control API
# --------------------------------------------------------------------------- #

def test_stats_requests_log_and_reset(fake, client):
    client.get("/repos/o/r", headers=AUTH)
    etag = client.get("/repos/o/r", headers=AUTH).headers["ETag"]
    client.get("/repos/o/r", headers={**AUTH, "If-None-Match": etag})
    client.get("/repos/o/r/issues?page=2")
    client.get("/notfound")
    client.get("/repos/o/r", headers={"Authorization": "token nope"})
    client.delete("/repos/o/r/labels/bug", headers=AUTH)

    s = stats(client)
    assert s["requests"] == 7           # /_fake calls are not counted
    assert s["units"] == 5              # not the 304, not the 401
    assert s["not_modified"] == 1
    assert s["by_path"] == {"/repos/o/r": 4, "/repos/o/r/issues?page=2": 1,
                            "/notfound": 1, "/repos/o/r/labels/bug": 1}
    assert s["methods"] == {"GET": 6, "DELETE": 1}

    log = client.get("/_fake/requests").json()
    assert [e["status"] for e in log] == [200, 200, 304, 200, 404, 401, 204]
    assert log[2]["if_none_match"] == etag
    assert log[0]["authorization_present"] is True
    assert log[3]["authorization_present"] is False
    assert set(log[0]) == {"method", "path", "if_none_match", "authorization_present",
                           "login", "headers", "status"}
    assert [e["login"] for e in log[3:6]] == ["anonymous", "anonymous", "bad credentials"]
    assert log[0]["login"] == fake.login_of(TOKEN)
    assert "authorization" not in log[0]["headers"] and "host" in log[0]["headers"]
    assert TOKEN not in json.dumps(log) and "nope" not in json.dumps(log)

    client.post("/_fake/mutate", params={"path": "/repos/o/r"})
    assert client.post("/_fake/reset").status_code == 200
    assert stats(client) == {"requests": 0, "units": 0, "not_modified": 0,
                             "by_path": {}, "methods": {}, "by_status": {},
                             "max_in_flight": {}, "secondary_limited": {},
                             "graphql": {"operations": {}, "points": 0}}
    assert client.get("/_fake/requests").json() == []
    again = client.get("/repos/o/r", headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 304      # version back to 0
    assert again.headers["X-RateLimit-Remaining"] == "5000"  # budget refilled


def test_control_api_errors(client):
    assert client.post("/_fake/mutate").status_code == 400
    assert client.post("/_fake/fail", params={"status": 200}).status_code == 400
    assert client.get("/_fake/reset").status_code == 405
    assert client.get("/_fake/nope").status_code == 404


def test_keep_alive_reuses_one_connection(fake):
    # Raw HTTP/1.1: two requests (one with a body) on one socket.
    with socket.create_connection(("127.0.0.1", fake.port)) as sock:
        f = sock.makefile("rb")
        for req in (
            b"POST /repos/o/r/issues HTTP/1.1\r\nHost: x\r\nAuthorization: token "
            + TOKEN.encode() + b"\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /repos/o/r HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            sock.sendall(req)
            status = f.readline()
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.lower()] = v.strip()
            body = f.read(int(headers["content-length"]))
            assert status.startswith(b"HTTP/1.1 20"), status
            assert json.loads(body)


def test_command_line(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fakegithub.py"), "--host", "127.0.0.1", "--port", "0",
         "--latency-ms", "0", "--token", TOKEN, "--rate-limit", "7",
         "--port-file", str(port_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"fakegithub listening on http://127\.0\.0\.1:(\d+)\n", line)
        assert m, line
        assert port_file.read_text().strip() == m.group(1)
        r = httpx.get(f"http://127.0.0.1:{m.group(1)}/repos/o/r", headers=AUTH)
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "7"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=5)
    assert out == "" and err == ""  # quiet: nothing per request


# --------------------------------------------------------------------------- #
# Where clients look: hypermedia, ids, media types, versions, rate-limit buckets
# --------------------------------------------------------------------------- #

def test_bodies_name_the_base_the_fake_was_reached_at(fake, client):
    repo = client.get("/repos/octo/widget").json()
    base = fake.url
    assert repo["url"] == f"{base}/repos/octo/widget"
    assert repo["issues_url"] == f"{base}/repos/octo/widget/issues{{/number}}"
    assert repo["contents_url"] == f"{base}/repos/octo/widget/contents/{{+path}}"
    assert repo["owner"]["url"] == f"{base}/users/octo"
    assert repo["html_url"] == "https://github.com/octo/widget"  # web, not API
    # Every API URL in every body is on the base, so lazy loading stays there.
    for path in ("/repos/octo/widget", "/repos/octo/widget/issues", "/repos/octo/widget/pulls/3",
                 "/repos/octo/widget/commits", "/users/octo"):
        found = _api_urls(client.get(path).json())
        assert found and all(u.startswith(base + "/") for u in found), path
    # Lazy loading works: the issue's user URL answers the full user.
    issue = client.get("/repos/octo/widget/issues/4").json()
    user = client.get(issue["user"]["url"].removeprefix(base)).json()
    assert user["login"] == "octo" and "followers" in user
    # Another Host (as a node forwarding under its own name) is named back.
    other = client.get("/repos/octo/widget", headers={"Host": "elsewhere:1"}).json()
    assert other["url"] == "http://elsewhere:1/repos/octo/widget"


def _api_urls(value: object) -> list[str]:
    """String values of url / *_url keys that are not web (github.com) URLs."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str) and (k == "url" or k.endswith("_url")) \
                    and v.startswith("http") and "github" not in v.split("/")[2]:
                out.append(v)
            else:
                out += _api_urls(v)
    elif isinstance(value, list):
        for v in value:
            out += _api_urls(v)
    return out


def test_repositories_by_id_answer_like_the_repository(fake, client):
    repo = client.get("/repos/octo/widget").json()
    by_id = client.get(f"/repositories/{repo['id']}")
    assert by_id.status_code == 200 and by_id.json() == repo
    page2 = client.get(f"/repositories/{repo['id']}/issues", params={"page": 2}).json()
    same = client.get("/repos/octo/widget/issues", params={"page": 2}).json()
    assert page2 == same and len(page2) == 30
    # The id GitHub would not know, and an unknown one, are 404.
    assert client.get("/repositories/12").status_code == 404
    assert client.get("/repositories/x/issues").status_code == 404
    # One resource, two names: a write through one is seen through the other.
    etag = client.get(f"/repositories/{repo['id']}/issues", headers=AUTH).headers["ETag"]
    client.post("/repos/octo/widget/issues", json={"title": "new"}, headers=AUTH)
    again = client.get(f"/repositories/{repo['id']}/issues",
                       headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 200 and again.json()[0]["title"] == "new"


def test_unknown_paths_are_github_404s(client):
    for path in ("/nope", "/repos", "/repos/o", "/repos/o/r/not-a-thing", "/api/v3/repos/o/r"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json() == {"message": "Not Found",
                            "documentation_url": "https://docs.github.com/rest",
                            "status": "404"}
        assert "ETag" not in r.headers and r.headers["X-GitHub-Request-Id"]
    assert client.get("/repos/o/r/issues/96").status_code == 404  # only 95 exist
    assert client.get("/repos/o/r/commits/zzzz").status_code == 422


def test_create_issue_then_read_it_back_and_see_it_listed(client):
    anonymous = client.post("/repos/o/r/issues", json={"title": "x"})
    assert anonymous.status_code == 401
    before = client.get("/repos/o/r", headers=AUTH).json()["open_issues_count"]
    created = client.post("/repos/o/r/issues", json={"title": "Bug", "body": "It broke"},
                          headers=AUTH)
    assert created.status_code == 201
    issue = created.json()
    me = client.get("/user", headers=AUTH).json()["login"]
    assert issue["number"] == 96 and issue["user"]["login"] == me
    assert created.headers["Location"] == issue["url"]
    assert client.get("/repos/o/r/issues/96", headers=AUTH).json()["title"] == "Bug"
    first = client.get("/repos/o/r/issues", headers=AUTH).json()[0]
    assert (first["number"], first["title"], first["body"]) == (96, "Bug", "It broke")
    assert client.get("/repos/o/r", headers=AUTH).json()["open_issues_count"] == before + 1
    # Paging to the end shows 96 issues, each once.
    numbers, url = [], "/repos/o/r/issues?per_page=50"
    while url:
        r = client.get(url, headers=AUTH)
        numbers += [i["number"] for i in r.json()]
        url = links(r).get("next")
    assert sorted(numbers) == list(range(1, 97))
    edited = client.patch("/repos/o/r/issues/96", json={"state": "closed"}, headers=AUTH)
    assert edited.status_code == 200 and edited.json()["state"] == "closed"
    assert client.get("/repos/o/r/issues/96", headers=AUTH).json()["state"] == "closed"


def test_accept_variants_have_their_own_bodies_and_media_type(client):
    plain = client.get("/repos/o/r/issues/2")
    assert plain.headers["X-GitHub-Media-Type"] == "github.v3; format=json"
    for accept in ("application/vnd.github.v3+json", "application/vnd.github+json",
                   "application/json", "*/*"):
        same = client.get("/repos/o/r/issues/2", headers={"Accept": accept})
        assert same.content == plain.content and same.headers["ETag"] == plain.headers["ETag"]
        assert same.headers["X-GitHub-Media-Type"] == "github.v3; format=json"

    raw = client.get("/repos/o/r/issues/2", headers={"Accept": "application/vnd.github.raw+json"})
    assert raw.headers["X-GitHub-Media-Type"] == "github.v3; param=raw; format=json"
    assert "body" in raw.json()
    full = client.get("/repos/o/r/issues/2",
                      headers={"Accept": "application/vnd.github.v3.full+json"})
    assert full.headers["X-GitHub-Media-Type"] == "github.v3; param=full; format=json"
    assert {"body", "body_text", "body_html"} <= set(full.json())
    assert full.headers["ETag"] != plain.headers["ETag"]

    diff = client.get("/repos/o/r/pulls/3", headers={"Accept": "application/vnd.github.diff"})
    assert diff.status_code == 200 and diff.text.startswith("diff --git ")
    assert diff.headers["Content-Type"] == "application/vnd.github.diff; charset=utf-8"
    assert diff.headers["X-GitHub-Media-Type"] == "github.v3; param=diff"
    sha = client.get("/repos/o/r/commits").json()[0]["sha"]
    commit_diff = client.get(f"/repos/o/r/commits/{sha}",
                             headers={"Accept": "application/vnd.github.v3.diff"})
    assert commit_diff.status_code == 200 and sha in commit_diff.text
    patch = client.get("/repos/o/r/pulls/3", headers={"Accept": "application/vnd.github.patch"})
    assert patch.text.startswith("From ") and patch.headers["ETag"] != diff.headers["ETag"]
    file = client.get("/repos/o/r/contents/README.md",
                      headers={"Accept": "application/vnd.github.raw"})
    assert file.text.startswith("contents of README.md")
    assert file.headers["X-GitHub-Media-Type"] == "github.v3; param=raw"

    refused = client.get("/repos/o/r", headers={"Accept": "application/vnd.github.diff"})
    assert refused.status_code == 415 and "Unsupported 'Accept'" in refused.json()["message"]


def test_api_version_header(client):
    for version in ("2022-11-28", "2026-03-10"):
        ok = client.get("/repos/o/r", headers={"X-GitHub-Api-Version": version})
        assert ok.status_code == 200
        assert ok.headers["X-GitHub-Api-Version-Selected"] == version
    bad = client.get("/repos/o/r", headers={"X-GitHub-Api-Version": "2021-01-01"})
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("Unsupported 'X-GitHub-Api-Version' header")
    assert stats(client)["units"] == 2  # the refusal is free


def test_every_answer_has_githubs_headers_and_its_own_request_id(client):
    answers = [client.get("/repos/o/r"), client.get("/repos/o/r"), client.get("/nope"),
               client.get("/repos/o/r", headers={"Authorization": "token bad"})]
    ids = [r.headers["X-GitHub-Request-Id"] for r in answers]
    assert len(set(ids)) == len(ids)
    for r in answers:
        assert r.headers["Server"] == "github.com"
        assert r.headers["Date"].endswith(" GMT")
        assert r.headers["Vary"] == "Accept, Authorization, Cookie, X-GitHub-OTP"
    authed = client.get("/repos/o/r", headers=AUTH)
    assert authed.headers["Cache-Control"] == "private, max-age=60, s-maxage=60"
    not_modified = client.get("/repos/o/r", headers={**AUTH,
                                                     "If-None-Match": authed.headers["ETag"]})
    assert not_modified.status_code == 304
    assert "Content-Length" not in not_modified.headers  # RFC 9110 15.4.5


def test_rate_limit_buckets_move_per_resource(client):
    first = client.get("/rate_limit", headers=AUTH)
    assert first.headers["Cache-Control"] == "no-cache"
    resources = first.json()["resources"]
    assert {"core", "search", "graphql", "code_search", "integration_manifest"} <= set(resources)
    assert resources["search"]["limit"] == 30 and resources["core"]["used"] == 0

    search = client.get("/search/issues", params={"q": "repo:o/r is:open"}, headers=AUTH)
    assert search.status_code == 200 and search.headers["X-RateLimit-Resource"] == "search"
    assert search.json()["total_count"] == 95 and len(search.json()["items"]) == 30
    assert search.headers["X-RateLimit-Limit"] == "30"
    gql = client.post("/graphql", json={"query": "{ viewer { login } }"}, headers=AUTH)
    assert gql.headers["X-RateLimit-Resource"] == "graphql"
    core = client.get("/repos/o/r", headers=AUTH)
    assert core.headers["X-RateLimit-Resource"] == "core"
    assert core.headers["X-RateLimit-Used"] == "1"  # search and graphql spent elsewhere

    after = client.get("/rate_limit", headers=AUTH)
    moved = after.json()["resources"]
    assert (moved["core"]["used"], moved["search"]["used"], moved["graphql"]["used"]) == (1, 1, 1)
    assert after.json()["rate"] == moved["core"]
    assert after.headers["ETag"] != first.headers["ETag"]
    # Anonymous search gets 10 a minute; anonymous code search is refused.
    assert client.get("/search/issues", params={"q": "x"}).headers["X-RateLimit-Limit"] == "10"
    assert client.get("/search/code", params={"q": "x"}).status_code == 401


def test_identity_follows_the_token(fake):
    other = "ghp_other_token"
    with FakeGitHub("127.0.0.1", 0, tokens=[TOKEN, other]) as two, \
            httpx.Client(base_url=two.url) as c:
        me = c.get("/user", headers=AUTH).json()["login"]
        them = c.get("/user", headers={"Authorization": f"Bearer {other}"}).json()["login"]
        assert me != them and me.startswith("user-")
        assert c.get("/user").status_code == 401
        assert c.get("/user", headers={"Authorization": "token nope"}).status_code == 401
        assert c.get("/repos/o/r").headers["X-RateLimit-Limit"] == "60"  # anonymous read


def test_unix_socket_plays_api_github_com(tmp_path):
    path = tmp_path / "gh.sock"
    with FakeGitHub("127.0.0.1", 0, tokens=[TOKEN], unix_socket=path) as fake:
        assert path.stat().st_mode & 0o777 == 0o600
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://api.github.com") as c:
            repo = c.get("/repos/o/r", headers=AUTH)
            assert repo.status_code == 200
            assert repo.json()["url"] == "https://api.github.com/repos/o/r"
            issues = c.get("/repos/o/r/issues", headers=AUTH)
            assert links(issues)["next"] == (
                f"https://api.github.com/repositories/{repo.json()['id']}/issues?page=2")
            # Same state as the TCP listener, which names its own base.
            c.post("/repos/o/r/issues", json={"title": "via socket"}, headers=AUTH)
        tcp = httpx.get(fake.url + "/repos/o/r/issues/96", headers=AUTH).json()
        assert tcp["title"] == "via socket" and tcp["url"].startswith(fake.url)
        assert fake.stats()["requests"] == 4
    assert not path.exists()


# --------------------------------------------------------------------------- #
# Identities: logins, private repositories, permissions, revoked tokens
# --------------------------------------------------------------------------- #

OTHER = "ghp_other_token"


def test_private_repository_is_seen_only_by_its_readers():
    with FakeGitHub("127.0.0.1", 0, tokens={TOKEN: "fleet-bot", OTHER: "job-bot"}) as fake, \
            httpx.Client(base_url=fake.url, timeout=5) as client:
        fake.make_private("o/secret", readers=[TOKEN])
        mine = client.get("/repos/o/secret/issues/1", headers=AUTH)
        assert mine.status_code == 200
        repo = client.get("/repos/O/Secret", headers=AUTH).json()  # names are case-blind
        assert repo["private"] is True and repo["visibility"] == "private"
        for headers in ({}, {"Authorization": f"token {OTHER}"}):
            hidden = client.get("/repos/o/secret/issues/1", headers=headers)
            assert hidden.status_code == 404 and hidden.json()["message"] == "Not Found"
        rid = repo["id"]
        assert client.get(f"/repositories/{rid}/issues", headers=AUTH).status_code == 200
        assert client.get(f"/repositories/{rid}/issues").status_code == 404
        search = client.get("/search/issues", params={"q": "repo:o/secret bug"})
        assert search.status_code == 422
        assert client.get("/search/issues", params={"q": "repo:o/secret bug"},
                          headers=AUTH).status_code == 200
        fake.make_public("o/secret")
        assert client.get("/repos/o/secret/issues/1").status_code == 200


def test_logins_permissions_and_revocation():
    with FakeGitHub("127.0.0.1", 0, tokens={TOKEN: "fleet-bot", OTHER: "job-bot"}) as fake, \
            httpx.Client(base_url=fake.url, timeout=5) as client:
        other = {"Authorization": f"Bearer {OTHER}"}
        assert client.get("/user", headers=AUTH).json()["login"] == "fleet-bot"
        assert client.get("/user", headers=other).json()["login"] == "job-bot"
        fake.set_permission("o/r", TOKEN, "admin")
        assert client.get("/repos/o/r", headers=AUTH).json()["permissions"]["admin"] is True
        assert client.get("/repos/o/r", headers=other).json()["permissions"] == {
            "admin": False, "maintain": False, "push": False, "triage": False, "pull": True}
        assert "permissions" not in client.get("/repos/o/r").json()  # anonymous
        fake.revoke(OTHER)
        refused = client.get("/repos/o/r", headers=other)
        assert refused.status_code == 401 and refused.json()["message"] == "Bad credentials"
        assert client.get("/repos/o/r").status_code == 200  # anonymous still reads public
        fake.add_token(OTHER, "job-bot")
        assert client.get("/user", headers=other).status_code == 200
        log = client.get("/_fake/requests").json()
        assert [e["login"] for e in log][:2] == ["fleet-bot", "job-bot"]
        assert "bad credentials" in [e["login"] for e in log]


# -- conversations: issue comments and labels ---------------------------------------------

@pytest.fixture
def writer(fake):
    with httpx.Client(base_url=fake.url, timeout=5, headers=AUTH) as c:
        yield c


def test_comments_change_the_issue_its_pull_request_and_the_lists(writer):
    before = {p: writer.get(p) for p in ("/repos/o/r/issues/7", "/repos/o/r/pulls/7",
                                          "/repos/o/r/issues", "/repos/o/r/issues/7/comments")}
    assert before["/repos/o/r/issues/7/comments"].json() == []
    made = writer.post("/repos/o/r/issues/7/comments", json={"body": "sticky <!-- ci -->"})
    assert made.status_code == 201
    comment = made.json()
    assert comment["body"] == "sticky <!-- ci -->" and comment["user"]["login"].startswith("user-")
    assert comment["issue_url"].endswith("/repos/o/r/issues/7")
    assert made.headers["location"].endswith(f"/repos/o/r/issues/comments/{comment['id']}")
    for path, old in before.items():
        new = writer.get(path, headers={"if-none-match": old.headers["etag"]})
        assert new.status_code == 200, f"{path} must show the new comment"
    assert writer.get("/repos/o/r/issues/7").json()["comments"] == 1
    assert writer.get("/repos/o/r/pulls/7").json()["comments"] == 1
    listed = [i for i in writer.get("/repos/o/r/issues?per_page=100").json() if i["number"] == 7]
    assert listed[0]["comments"] == 1

    edited = writer.patch(f"/repos/o/r/issues/comments/{comment['id']}", json={"body": "v2"})
    assert edited.status_code == 200 and edited.json()["body"] == "v2"
    assert [c["body"] for c in writer.get("/repos/o/r/issues/7/comments").json()] == ["v2"]
    assert writer.get(f"/repos/o/r/issues/comments/{comment['id']}").json()["body"] == "v2"
    everything, url = [], "/repos/o/r/issues/comments?per_page=100"
    while url:  # every comment of the repository (each issue starts with n % 7)
        page = writer.get(url)
        everything += page.json()
        url = links(page).get("next")
    assert sum(c["id"] == comment["id"] for c in everything) == 1
    assert len(everything) == sum(n % 7 for n in range(1, 96)) + 1

    assert writer.delete(f"/repos/o/r/issues/comments/{comment['id']}").status_code == 204
    assert writer.get("/repos/o/r/issues/7/comments").json() == []
    assert writer.get(f"/repos/o/r/issues/comments/{comment['id']}").status_code == 404
    assert writer.get("/repos/o/r/issues/7").json()["comments"] == 0


def test_comment_lists_page_oldest_first(writer):
    for i in range(35):
        writer.post("/repos/o/r/issues/7/comments", json={"body": f"c{i}"})
    first = writer.get("/repos/o/r/issues/7/comments")
    assert [c["body"] for c in first.json()][:2] == ["c0", "c1"] and len(first.json()) == 30
    second = writer.get(links(first)["next"])
    assert [c["body"] for c in second.json()] == [f"c{i}" for i in range(30, 35)]


def test_issues_start_with_comments_that_rest_and_the_count_agree_on(writer):
    listed = writer.get("/repos/o/r/issues/5/comments").json()
    assert [c["body"] for c in listed] == [f"Comment {i} on issue 5 of o/r." for i in range(1, 6)]
    assert writer.get("/repos/o/r/issues/5").json()["comments"] == 5
    edited = writer.patch(f"/repos/o/r/issues/comments/{listed[0]['id']}", json={"body": "x"})
    assert edited.status_code == 200
    assert [c["body"] for c in writer.get("/repos/o/r/issues/5/comments").json()][:2] == \
        ["x", "Comment 2 on issue 5 of o/r."]


def test_comments_refused_like_github(writer):
    assert writer.get("/repos/o/r/issues/999/comments").status_code == 404
    assert writer.post("/repos/o/r/issues/5/comments", json={}).status_code == 422
    assert writer.patch("/repos/o/r/issues/comments/1", json={"body": "x"}).status_code == 404


def test_labels_show_on_the_issue_its_pull_request_and_the_lists(writer):
    added = writer.post("/repos/o/r/issues/5/labels", json={"labels": ["bug", "ci"]})
    assert [label["name"] for label in added.json()] == ["bug", "ci"]
    assert [label["name"] for label in writer.get("/repos/o/r/pulls/5").json()["labels"]] == \
        ["bug", "ci"]
    assert [label["name"] for label in writer.get("/repos/o/r/issues/5/labels").json()] == \
        ["bug", "ci"]
    pulls = {p["number"]: p for p in writer.get("/repos/o/r/pulls?per_page=100").json()}
    assert [label["name"] for label in pulls[5]["labels"]] == ["bug", "ci"]
    replaced = writer.put("/repos/o/r/issues/5/labels", json={"labels": ["docs"]})
    assert [label["name"] for label in replaced.json()] == ["docs"]
    assert writer.delete("/repos/o/r/issues/5/labels/bug").status_code == 404
    assert writer.delete("/repos/o/r/issues/5/labels/docs").json() == []
    writer.post("/repos/o/r/issues/5/labels", json=["a"])  # the bare-list form
    assert writer.delete("/repos/o/r/issues/5/labels").status_code == 204
    assert writer.get("/repos/o/r/issues/5").json()["labels"] == []


def test_the_date_header_is_githubs_clock(fake, writer):
    from email.utils import parsedate_to_datetime

    fake.clock_offset_s = -3600
    date = parsedate_to_datetime(writer.get("/repos/o/r").headers["date"]).timestamp()
    assert abs(date - (time.time() - 3600)) < 5
