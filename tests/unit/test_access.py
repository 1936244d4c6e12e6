"""Who may see what (access.py): scopes of paths, callers, grants: pure, no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache import access
from p2pcache.access import ANONYMOUS, Callers, Grants, Scope


@pytest.mark.parametrize("path,scope,repo", [
    # repository content: the same for everyone who can read the repository
    ("/repos/o/r/issues", Scope.REPOSITORY, "/repos/o/r"),
    ("/repos/o/r/issues/5/comments", Scope.REPOSITORY, "/repos/o/r"),
    ("/repos/o/r/contents/src/a.py", Scope.REPOSITORY, "/repos/o/r"),
    ("/repos/o/r/releases/latest", Scope.REPOSITORY, "/repos/o/r"),
    ("/repos/o/r/branches/main", Scope.REPOSITORY, "/repos/o/r"),
    ("/repos/o/r/environments", Scope.REPOSITORY, "/repos/o/r"),
    ("/repositories/42/issues", Scope.REPOSITORY, "/repositories/42"),
    # the repository object (its `permissions`), forks, admin-only settings, secrets
    ("/repos/o/r", Scope.IDENTITY, "/repos/o/r"),
    ("/repositories/42", Scope.IDENTITY, "/repositories/42"),
    ("/repos/o/r/forks", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/collaborators", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/hooks/1", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/actions/secrets/public-key", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/branches/main/protection", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/environments/prod/secrets", Scope.IDENTITY, "/repos/o/r"),
    ("/repos/o/r/subscription", Scope.IDENTITY, "/repos/o/r"),
    # outside repositories: identity unless the answer cannot depend on the caller
    ("/user", Scope.IDENTITY, None),
    ("/user/repos", Scope.IDENTITY, None),
    ("/rate_limit", Scope.IDENTITY, None),
    ("/notifications", Scope.IDENTITY, None),
    ("/installation/repositories", Scope.IDENTITY, None),
    ("/users/octocat", Scope.IDENTITY, None),  # asked by octocat: the private view
    ("/users/octocat/repos", Scope.IDENTITY, None),  # repository objects: `permissions`
    ("/orgs/acme", Scope.IDENTITY, None),  # members see more
    ("/search/issues", Scope.IDENTITY, None),  # results depend on what one may read
    ("/gists/abc", Scope.IDENTITY, None),
    ("/licenses/mit", Scope.SHARED, None),
    ("/gitignore/templates/Python", Scope.SHARED, None),
    ("/meta", Scope.SHARED, None),
    ("/users/octocat/followers", Scope.SHARED, None),
    ("/repos/o", Scope.IDENTITY, None),  # not a repository path: unsure, so identity
])
def test_scope_of_paths(path, scope, repo):
    place = access.place(path)
    assert (place.scope, place.repo) == (scope, repo)


def test_repository_names_are_case_blind_in_grants():
    assert access.place("/repos/Octo/Repo/issues").repo_key == "/repos/octo/repo"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="/abcor0123.-_~%", max_size=60))
def test_place_never_raises_and_repository_roots_are_prefixes(path):
    place = access.place("/" + path)
    if place.repo is not None:
        assert ("/" + path).startswith(place.repo)


def test_draft_releases_depend_on_who_can_push():
    published = json.dumps([{"id": 1, "draft": False}]).encode()
    with_draft = json.dumps([{"id": 1, "draft": False}, {"id": 2, "draft": True}]).encode()
    assert not access.depends_on_caller("/repos/o/r/releases", published)
    assert access.depends_on_caller("/repos/o/r/releases", with_draft)
    assert access.depends_on_caller("/repos/o/r/releases/2", b'{"id":2, "draft": true}')
    assert not access.depends_on_caller("/repos/o/r/issues", with_draft)


@pytest.mark.parametrize("body,seen", [
    (b'{"private": false, "visibility": "public"}', "public"),
    (b'{"private": false}', "public"),
    (b'{"private": true, "visibility": "private"}', "private"),
    (b'{"private": false, "visibility": "internal"}', "private"),  # not for anonymous
    (b'{"name": "x"}', None),
    (b'[1, 2]', None),
    (b'not json', None),
    (b'[' * 100_000, None),
])
def test_visibility_of_a_repository_object(body, seen):
    assert access.visibility(body) == seen


def test_callers_are_keyed_hashes_never_the_token():
    callers = Callers(b"k" * 32)
    token = "ghp_" + "x" * 36
    one = callers.of({"authorization": f"token {token}"})
    assert one == callers.of({"authorization": f"Bearer  {token}"})  # one credential
    assert token not in one.key_suffix and one.digest and len(one.digest) == 32
    assert callers.of({}) is ANONYMOUS and ANONYMOUS.anonymous
    assert callers.of({"authorization": "   "}) is ANONYMOUS
    assert one != callers.of({"authorization": "token other"})
    assert one != Callers(b"j" * 32).of({"authorization": f"token {token}"}), \
        "another node's key names the caller differently"
    basic = callers.of({"authorization": "Basic dXNlcjpwYXNz"})
    assert basic.digest and basic != callers.of({"authorization": "Basic b3RoZXI="})


def test_grants_hold_for_their_window_and_are_bounded():
    grants = Grants(max_entries=3)
    me, other = Caller("a" * 32), Caller("b" * 32)
    assert grants.granted(me, "/repos/o/r", 0) is None
    grants.grant(me, "/repos/o/r", True, until=60)
    grants.grant(other, "/repos/o/r", False, until=60)
    assert grants.granted(me, "/repos/o/r", 59) is True
    assert grants.granted(other, "/repos/o/r", 59) is False
    assert grants.granted(me, "/repos/o/r", 60) is None, "asked again after the window"
    for n in range(5):
        grants.grant(me, f"/repos/o/r{n}", True, until=60)
    assert grants.granted(other, "/repos/o/r", 1) is None, "the oldest word is forgotten"
    assert grants.valid(ANONYMOUS, 0) is True
    grants.validated(me, False, until=10)
    assert grants.valid(me, 5) is False and grants.valid(me, 10) is None


def test_the_fleet_refused_or_blind_and_public_views():
    grants = Grants()
    grants.blind("/repos/o/secret", until=60)
    assert grants.is_blind("/repos/o/secret", 30) and not grants.is_blind("/repos/o/r", 30)
    grants.refuse_fleet(until=100)
    assert grants.is_blind("/repos/o/r", 30), "a refused token sees nothing"
    assert grants.fleet_refused(99) and not grants.fleet_refused(100)
    grants.public("/repos/o/r", vouched_at=10)
    assert grants.public_since("/repos/o/r", 69, ttl=60) == 10
    assert grants.public_since("/repos/o/r", 70, ttl=60) is None


def test_forgetting_a_repository_forgets_every_word_about_it_and_nothing_else():
    grants = Grants()
    me, other = Caller("a" * 32), Caller("b" * 32)
    for caller in (me, other):
        grants.grant(caller, "/repos/o/r", True, until=60)
        grants.grant(caller, "/repos/o/other", True, until=60)
    grants.public("/repos/o/r", vouched_at=10)
    grants.blind("/repos/o/r", until=60)
    grants.forget("/repos/o/r")
    assert grants.granted(me, "/repos/o/r", 1) is None
    assert grants.granted(other, "/repos/o/r", 1) is None
    assert grants.public_since("/repos/o/r", 11, ttl=60) is None
    assert not grants.is_blind("/repos/o/r", 1)
    assert grants.granted(me, "/repos/o/other", 1) is True
    grants.forget("/repos/o/never-seen")  # nothing to forget is fine


@pytest.mark.parametrize("status,limited,blind", [
    (401, False, True), (404, False, True), (403, False, True), (403, True, False),
    (429, True, False), (500, False, False), (200, False, False)])
def test_what_says_the_fleet_cannot_see(status, limited, blind):
    assert access.fleet_cannot_see(status, limited) is blind


def test_budgets_are_each_callers_own():
    budgets = access.Budgets(max_callers=2)
    me = Caller("a" * 32)
    budgets.seen(me, {"x-ratelimit-remaining": "4999", "x-ratelimit-limit": "5000",
                      "x-ratelimit-resource": "core"})
    assert budgets.of(me)["core"].remaining == 4999
    assert budgets.of(ANONYMOUS) == {}
    for n in range(3):
        budgets.seen(Caller(str(n) * 32), {"x-ratelimit-remaining": "1"})
    assert budgets.of(me) == {}, "bounded: the oldest caller is forgotten"


def test_each_caller_is_told_about_its_own_credential_and_the_anonymous_of_none():
    budgets = access.Budgets(max_callers=2)
    me, other = Caller("a" * 32), Caller("b" * 32)
    budgets.seen(me, {"x-oauth-scopes": "repo", "x-accepted-oauth-scopes": "",
                      "github-authentication-token-expiration": "2027-01-01 00:00:00 UTC",
                      "etag": '"e"'})
    assert budgets.credential(me) == {"x-oauth-scopes": "repo",
                                      "github-authentication-token-expiration":
                                      "2027-01-01 00:00:00 UTC"}
    assert budgets.credential(other) == {} and budgets.credential(ANONYMOUS) == {}
    budgets.seen(me, {}, status=502)  # a proxy's error page says nothing about the token
    assert budgets.credential(me)["x-oauth-scopes"] == "repo"
    budgets.seen(me, {}, status=401)  # GitHub refuses it now: nothing to show
    assert budgets.credential(me) == {}
    budgets.seen(ANONYMOUS, {"x-oauth-scopes": "forged"})
    assert budgets.credential(ANONYMOUS) == {}
    # Kept per caller, so bounded: a 16 KiB field (the most one may be) is not remembered.
    budgets.seen(me, {"x-oauth-scopes": "repo, " * 2800, "x-oauth-client-id": "Iv1.abc"})
    assert budgets.credential(me) == {"x-oauth-client-id": "Iv1.abc"}
    # X-GitHub-SSO speaks of one answer (this organization, this list): never replayed.
    budgets.seen(me, {"x-oauth-scopes": "repo",
                      "x-github-sso": "required; url=https://github.com/orgs/o/sso"})
    assert budgets.credential(me) == {"x-oauth-scopes": "repo"}


Caller = access.Caller


def test_a_repository_object_names_both_spellings_of_its_root():
    facts = access.repository_facts(b'{"id": 42, "private": false, "visibility": "public"}')
    assert facts.visibility == "public" and facts.id == 42
    assert facts.roots("/repos/Octo/Repo") == ["/repos/octo/repo", "/repositories/42"]
    for bad in (b'{"id": true}', b'{"id": -1}', b'{"id": "42"}', b'{"id": 1e30}'):
        assert access.repository_facts(bad).id is None
    assert access.repository_facts(b"nope").roots("/repos/o/r") == ["/repos/o/r"]
