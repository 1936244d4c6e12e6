"""Unit tests for the pure part of p2pcache.webhooks: the signature, the replay guard, and
which paths each event changed (hostile payloads included). No sockets."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache import webhooks
from p2pcache.targets import parse
from p2pcache.webhooks import (
    EVENTS,
    Outcome,
    PayloadError,
    ReplayGuard,
    changed_paths,
    examine,
    minimal,
    signature,
    signature_valid,
)

SECRET = b"It's a Secret to Everybody"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
REPO_ID = 1296269
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def repository(owner: str = "Octo", name: str = "Hello-World", rid: object = REPO_ID) -> dict:
    return {"id": rid, "name": name, "full_name": f"{owner}/{name}",
            "owner": {"login": owner, "id": 1}, "private": False}


def payload(**fields: object) -> dict:
    out: dict = {"repository": repository(), "sender": {"login": "octocat"}}
    out.update(fields)
    return out


def covered(path: str, paths: list[str]) -> bool:
    """Whether dropping `paths` (prefix-matched, as the store does) drops `path`."""
    return any(path == p or path.startswith(p + "/") for p in paths)


# -- signature ---------------------------------------------------------------------------


def test_githubs_documented_example_signature_verifies() -> None:
    # docs.github.com, "Validating webhook deliveries": secret and payload and the result.
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature(SECRET, body) == expected
    assert signature_valid(SECRET, body, expected)


def test_a_signature_over_another_body_or_under_another_secret_is_refused() -> None:
    body = json.dumps(payload(action="created")).encode()
    good = signature(SECRET, body)
    assert signature_valid(SECRET, body, good)
    assert not signature_valid(SECRET, body + b" ", good)
    assert not signature_valid(SECRET, body[:-1] + b"X", good)
    assert not signature_valid(b"another secret", body, good)


@pytest.mark.parametrize("header", [
    None, "", "sha256=", "sha256", "sha1=" + hashlib.sha1(b"x").hexdigest(),
    "SHA256=" + "0" * 64, " sha256=" + "0" * 64, "sha256=" + "0" * 63, "sha256=" + "0" * 65,
    "sha256=" + "g" * 64, "sha256=" + "٠" * 64, "sha256=" + "0" * 62 + " 0",
])
def test_missing_or_misshapen_signatures_are_refused(header: str | None) -> None:
    assert not signature_valid(SECRET, b"{}", header)


def test_the_wrong_prefix_is_refused_even_with_the_right_digest() -> None:
    digest = hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()
    assert signature_valid(SECRET, b"{}", "sha256=" + digest)
    assert not signature_valid(SECRET, b"{}", "SHA256=" + digest)
    assert not signature_valid(SECRET, b"{}", "sha512=" + digest)
    assert not signature_valid(SECRET, b"{}", digest)


def test_hex_digits_in_upper_case_mean_the_same_digest() -> None:
    digest = hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()
    assert signature_valid(SECRET, b"{}", "sha256=" + digest.upper())


def test_an_empty_secret_verifies_nothing() -> None:
    assert not signature_valid(b"", b"{}", signature(b"", b"{}"))


def test_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    assert not signature_valid(SECRET, b"{}", "sha256=" + "0" * 64)
    assert calls and all(len(a) == len(b) == 32 for a, b in calls)


# -- replay guard ------------------------------------------------------------------------


def test_a_guid_is_claimed_once() -> None:
    guard = ReplayGuard()
    assert guard.claim(GUID, 0.0)
    assert not guard.claim(GUID, 1.0)
    assert guard.claim("another-guid", 1.0)


def test_a_released_claim_can_be_claimed_again() -> None:
    guard = ReplayGuard()
    assert guard.claim(GUID, 0.0)
    guard.release(GUID)
    assert guard.claim(GUID, 0.0)


def test_the_guard_holds_a_bounded_number_of_guids() -> None:
    guard = ReplayGuard(size=100, window=1e9)
    for i in range(10_000):
        assert guard.claim(f"guid-{i}", float(i))
    assert len(guard) <= 100
    assert not guard.claim("guid-9999", 10_000.0)  # the newest are kept
    assert guard.claim("guid-0", 10_000.0)  # the oldest went


def test_guids_older_than_the_window_are_forgotten() -> None:
    guard = ReplayGuard(size=100, window=60.0)
    assert guard.claim(GUID, 0.0)
    assert not guard.claim(GUID, 59.0)
    guard.claim("later", 200.0)
    assert len(guard) == 1
    assert guard.claim(GUID, 200.0)


# -- event -> paths ----------------------------------------------------------------------


def test_an_issue_comment_drops_the_issue_its_lists_and_the_repositorys_issue_lists() -> None:
    paths = changed_paths("issue_comment", payload(
        action="created", issue={"number": 7}, comment={"id": 1}))
    assert paths is not None
    for path in ("/repos/Octo/Hello-World/issues", "/repos/Octo/Hello-World/issues/7",
                 "/repos/Octo/Hello-World/issues/7/comments",
                 "/repos/Octo/Hello-World/issues/7/timeline",
                 "/repos/Octo/Hello-World/issues/comments",
                 f"/repositories/{REPO_ID}/issues/7/comments",
                 "/repos/octo/hello-world/issues/7/comments"):
        assert covered(path, paths), path
    # A comment moves no count of the repository itself: its other entries stay.
    for path in ("/repos/Octo/Hello-World", "/repos/Octo/Hello-World/contents/README.md",
                 "/repos/Octo/Hello-World/pulls", "/repos/Octo/Other/issues"):
        assert not covered(path, paths), path


def test_a_comment_on_a_pull_request_also_drops_the_pull_request() -> None:
    paths = changed_paths("issue_comment", payload(
        action="created", issue={"number": 7, "pull_request": {"url": "..."}}))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/pulls/7", paths)
    assert covered("/repos/Octo/Hello-World/pulls", paths)


@pytest.mark.parametrize("action", ["opened", "closed", "reopened", "deleted", "transferred"])
def test_issue_actions_that_move_open_issues_count_drop_the_repository(action: str) -> None:
    paths = changed_paths("issues", payload(action=action, issue={"number": 3}))
    assert paths is not None and covered("/repos/Octo/Hello-World", paths)
    assert covered(f"/repositories/{REPO_ID}", paths)


@pytest.mark.parametrize("action", ["labeled", "unlabeled", "edited", "assigned"])
def test_other_issue_actions_leave_the_repository_alone(action: str) -> None:
    paths = changed_paths("issues", payload(action=action, issue={"number": 3}))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/issues/3/labels", paths)
    assert not covered("/repos/Octo/Hello-World", paths)


def test_a_labeled_pull_request_drops_the_pull_request_and_its_issue() -> None:
    """The event-driven workflow of the issue: `on: pull_request: types: [labeled]`."""
    paths = changed_paths("pull_request", payload(
        action="labeled", number=5, pull_request={"number": 5}, label={"name": "bug"}))
    assert paths is not None
    for path in ("/repos/Octo/Hello-World/pulls/5", "/repos/Octo/Hello-World/pulls",
                 "/repos/Octo/Hello-World/issues/5/labels", "/repos/Octo/Hello-World/issues"):
        assert covered(path, paths), path
    assert not covered("/repos/Octo/Hello-World/branches", paths)


def test_a_merged_pull_request_drops_the_whole_repository() -> None:
    paths = changed_paths("pull_request", payload(
        action="closed", number=5, pull_request={"number": 5, "merged": True}))
    assert paths is not None and covered("/repos/Octo/Hello-World/branches/main", paths)


def test_a_synchronized_pull_request_drops_refs_and_compare() -> None:
    paths = changed_paths("pull_request", payload(action="synchronize",
                                                  pull_request={"number": 5}))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/compare/main...feature", paths)
    assert covered("/repos/Octo/Hello-World/git/refs/heads/feature", paths)


def test_a_push_drops_the_whole_repository_in_every_spelling() -> None:
    paths = changed_paths("push", payload(ref="refs/heads/main", after=SHA))
    assert paths == sorted(["/repos/Octo/Hello-World", "/repos/octo/hello-world",
                            f"/repositories/{REPO_ID}"])


def test_a_status_drops_its_commit_and_its_branches_in_both_spellings() -> None:
    paths = changed_paths("status", payload(
        sha=SHA, state="success", branches=[{"name": "main"}, {"name": "feature/x"}]))
    assert paths is not None
    for path in (f"/repos/Octo/Hello-World/commits/{SHA}/status",
                 f"/repos/Octo/Hello-World/commits/{SHA}/check-runs",
                 f"/repos/Octo/Hello-World/statuses/{SHA}",
                 "/repos/Octo/Hello-World/commits/main/status",
                 "/repos/Octo/Hello-World/commits/feature/x/status",
                 "/repos/Octo/Hello-World/commits/feature%2Fx/status"):
        assert covered(path, paths), path
    # Other commits and the commit lists are not touched by a status.
    assert not covered("/repos/Octo/Hello-World/commits", paths)
    assert not covered("/repos/Octo/Hello-World/commits/" + "1" * 40, paths)


def test_a_check_run_drops_its_commit_run_suite_and_pull_requests() -> None:
    paths = changed_paths("check_run", payload(action="completed", check_run={
        "id": 4, "head_sha": SHA, "check_suite": {"id": 5, "head_branch": "main"},
        "pull_requests": [{"number": 2}]}))
    assert paths is not None
    for path in (f"/repos/Octo/Hello-World/commits/{SHA}/check-runs",
                 "/repos/Octo/Hello-World/commits/main/check-runs",
                 "/repos/Octo/Hello-World/check-runs/4/annotations",
                 "/repos/Octo/Hello-World/check-suites/5", "/repos/Octo/Hello-World/pulls/2"):
        assert covered(path, paths), path


def test_a_workflow_run_drops_the_runs_lists() -> None:
    paths = changed_paths("workflow_run", payload(action="completed", workflow_run={
        "id": 30433642, "head_sha": SHA, "head_branch": "main", "workflow_id": 159038,
        "pull_requests": []}))
    assert paths is not None
    for path in ("/repos/Octo/Hello-World/actions/runs",
                 "/repos/Octo/Hello-World/actions/runs/30433642/jobs",
                 "/repos/Octo/Hello-World/actions/workflows/159038/runs",
                 "/repos/Octo/Hello-World/actions/workflows/ci.yml/runs"):
        assert covered(path, paths), path


def test_a_renamed_repository_drops_the_old_name_too() -> None:
    paths = changed_paths("repository", payload(
        action="renamed", changes={"repository": {"name": {"from": "Old-Name"}}}))
    assert paths is not None and covered("/repos/Octo/Old-Name/issues", paths)


def test_a_transferred_issue_drops_the_new_repositorys_issues() -> None:
    paths = changed_paths("issues", payload(action="transferred", issue={"number": 1}, changes={
        "new_repository": repository("Other", "Place", 99), "new_issue": {"number": 4}}))
    assert paths is not None
    assert covered("/repos/Other/Place/issues", paths)
    assert covered("/repositories/99/issues/4", paths)


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_event_in_the_table_drops_something_of_its_repository(event: str) -> None:
    paths = changed_paths(event, payload(action="created"))
    assert paths, event
    assert all(p.startswith(("/repos/Octo/Hello-World", "/repos/octo/hello-world",
                             f"/repositories/{REPO_ID}")) for p in paths), paths


def test_an_event_not_in_the_table_is_none() -> None:
    assert changed_paths("gollum", payload()) is None
    assert changed_paths("installation", {}) is None


def test_minimal_drops_only_what_another_path_covers() -> None:
    assert minimal(["/a/b", "/a", "/a-b/c", "/a-b", "/a/b/c", "/ab"]) == ["/a", "/a-b", "/ab"]
    assert minimal(["/repos/O/R-x/issues", "/repos/O/R", "/repos/O/R/issues"]) == \
        ["/repos/O/R", "/repos/O/R-x/issues"]


# -- hostile payloads --------------------------------------------------------------------


@pytest.mark.parametrize("repo", [
    None, "Octo/Hello-World", [], {"name": "x"}, {"owner": {"login": "o"}},
    repository(owner="a/b"), repository(owner=".."), repository(owner="o?x"),
    repository(owner="o%2F.."), repository(owner="ö"), repository(owner=""),
    repository(owner="a" * 101), repository(name=".."), repository(name="."),
    repository(name="a/b"), repository(name="x?y=1"), repository(name="x#y"),
    repository(name="r%2e%2e"), repository(name="résumé"), repository(name="a\nb"),
    repository(name=7), {"name": "r", "owner": {"login": ["o"]}},
    {**repository(), "full_name": "Evil/Other"},
])
def test_a_payload_without_a_usable_repository_drops_nothing(repo: object) -> None:
    with pytest.raises(PayloadError):
        changed_paths("issues", {"action": "opened", "repository": repo,
                                 "issue": {"number": 1}})


@pytest.mark.parametrize("body", [[], "issues", 7, None])
def test_a_payload_that_is_no_object_drops_nothing(body: object) -> None:
    with pytest.raises(PayloadError):
        changed_paths("push", body)


@pytest.mark.parametrize("number", [True, 1.5, "7", "../../x", -1, 0, 2**63, 10**40, None,
                                    [7], {"n": 7}])
def test_a_number_that_is_no_number_falls_back_to_the_list(number: object) -> None:
    paths = changed_paths("check_run", payload(action="completed", check_run={
        "id": number, "head_sha": SHA, "check_suite": {"id": number, "head_branch": None}}))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/check-runs", paths)
    assert covered("/repos/Octo/Hello-World/check-suites", paths)
    assert all(re.fullmatch(r"[A-Za-z0-9/._%-]+", p) for p in paths), paths


@pytest.mark.parametrize("name", [
    "..", "a/../../../x", "./x", "a//b", "/x", "x/", "a?b", "a#b", "a%2e%2e", "ü", "a b",
    "a\\b", "", "x" * 256, 7, None,
])
def test_a_branch_name_unsafe_to_spell_drops_every_commit_instead(name: object) -> None:
    paths = changed_paths("status", payload(sha=SHA, branches=[{"name": name}]))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/commits", paths)
    assert not any(".." in p or "?" in p or "#" in p for p in paths), paths


@pytest.mark.parametrize("sha", ["../x", SHA.upper(), SHA[:-1], SHA + "0", 1234, None, "z" * 40])
def test_a_sha_that_is_no_sha_drops_every_commits_statuses(sha: object) -> None:
    paths = changed_paths("status", payload(sha=sha, branches=[]))
    assert paths is not None
    assert covered("/repos/Octo/Hello-World/commits", paths)
    assert covered("/repos/Octo/Hello-World/statuses", paths)


def test_a_flood_of_branches_in_one_status_is_one_broad_drop() -> None:
    paths = changed_paths("status", payload(sha=SHA, branches=[{"name": f"b{i}"}
                                                               for i in range(10_000)]))
    assert paths is not None and len(paths) < 10
    assert covered("/repos/Octo/Hello-World/commits/b9999", paths)


def test_an_action_that_is_no_string_is_no_action() -> None:
    for action in ([], {}, 1, None):
        paths = changed_paths("issues", payload(action=action, issue={"number": 1}))
        assert paths is not None and not covered("/repos/Octo/Hello-World", paths)


def test_a_huge_repository_id_is_left_out() -> None:
    for rid in (10**40, -5, "123", True, 1.0):
        paths = changed_paths("push", payload(repository=repository(rid=rid)))
        assert paths is not None and not any(p.startswith("/repositories/") for p in paths)


def test_a_renamed_repository_with_a_hostile_old_name_drops_only_the_current_one() -> None:
    for old in ("..", "../../x", "a/b", "ü", 7):
        paths = changed_paths("repository", payload(
            action="renamed", changes={"repository": {"name": {"from": old}}}))
        assert paths == sorted(["/repos/Octo/Hello-World", "/repos/octo/hello-world",
                                f"/repositories/{REPO_ID}"])


SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._+=@-]+|[A-Za-z0-9._+=@-]*(%2F[A-Za-z0-9._+=@-]*)+")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=20)
field_names = st.sampled_from(["action", "issue", "pull_request", "number", "sha",
                               "branches", "check_run", "check_suite", "workflow_run",
                               "workflow_job", "comment", "changes", "name", "id",
                               "head_sha", "head_branch", "pull_requests", "merged"])


@st.composite
def hostile_payloads(draw: st.DrawFn) -> dict:
    """Fields GitHub uses, filled with anything: nested at two levels too."""
    out = draw(st.dictionaries(field_names, json_values | st.dictionaries(
        field_names, json_values, max_size=4), max_size=6))
    out["repository"] = draw(st.sampled_from([repository(), repository("o", "r", None)]))
    return out


@settings(max_examples=300, deadline=None)
@given(event=st.sampled_from(sorted(EVENTS)), body=hostile_payloads())
def test_no_payload_names_a_path_outside_its_repository(event: str, body: dict) -> None:
    roots = {"/repos/Octo/Hello-World", "/repos/octo/hello-world", f"/repositories/{REPO_ID}",
             "/repos/o/r"}
    paths = changed_paths(event, body)
    assert paths is not None
    for path in paths:
        root = next((r for r in roots if path == r or path.startswith(r + "/")), None)
        assert root is not None, path
        rest = path[len(root):]
        assert all(SAFE_SEGMENT.fullmatch(s) and s not in (".", "..")
                   for s in rest.split("/")[1:]), path
        assert parse(path).path == path and not parse(path).query, path


# -- examine: a verified delivery's payload ------------------------------------------------


def body_of(data: object) -> bytes:
    return json.dumps(data).encode()


def test_ping_is_answered_and_drops_nothing() -> None:
    verdict = examine("ping", GUID, "application/json", body_of({"zen": "Keep it simple."}))
    assert verdict.outcome is Outcome.PING and not verdict.paths


def test_an_unknown_event_is_ignored_with_202() -> None:
    verdict = examine("gollum", GUID, "application/json", body_of(payload()))
    assert verdict.outcome is Outcome.IGNORED and verdict.outcome.status == 202


def test_a_known_event_is_applied_with_its_paths_and_a_reason() -> None:
    verdict = examine("issue_comment", GUID, "application/json",
                      body_of(payload(action="created", issue={"number": 7})))
    assert verdict.outcome is Outcome.APPLIED and verdict.outcome.status == 200
    assert covered("/repos/Octo/Hello-World/issues/7/comments", verdict.paths)
    assert verdict.reason == f"webhook issue_comment.created {GUID}"


def test_the_form_encoded_content_type_github_offers_is_understood() -> None:
    data = body_of(payload(action="created", issue={"number": 7}))
    body = urlencode({"payload": data.decode()}).encode()
    verdict = examine("issue_comment", GUID, "application/x-www-form-urlencoded", body)
    assert verdict.outcome is Outcome.APPLIED


@pytest.mark.parametrize("content_type,body", [
    ("application/json", b"not json"),
    ("application/json", b"\xff\xfe{}"),
    ("application/json", b"[" * 100_000 + b"]" * 100_000),  # deeper than the recursion limit
    ("application/json", b'{"n": ' + b"9" * 5000 + b"}"),  # over Python's int digits limit
    ("application/json", b""),
    ("application/x-www-form-urlencoded", b"payload=%ZZ&&"),
    ("application/x-www-form-urlencoded", b"payload=1&payload=2"),
    ("application/x-www-form-urlencoded", b"other=1"),
    ("application/x-www-form-urlencoded", "payload=ü".encode()),
])
def test_a_body_that_is_not_a_payload_is_malformed(content_type: str, body: bytes) -> None:
    verdict = examine("push", GUID, content_type, body)
    assert verdict.outcome is Outcome.MALFORMED and not verdict.paths


@pytest.mark.parametrize("event", [None, "", "Push", "push\n", "is-sues", "x" * 65, "ü"])
def test_a_missing_or_odd_event_header_is_malformed(event: str | None) -> None:
    assert examine(event, GUID, "application/json", body_of(payload())).outcome \
        is Outcome.MALFORMED


@pytest.mark.parametrize("guid", [None, "", "a b", "x" * 65, "../x", "ü"])
def test_a_missing_or_odd_delivery_guid_is_malformed(guid: str | None) -> None:
    assert examine("push", guid, "application/json", body_of(payload())).outcome \
        is Outcome.MALFORMED
