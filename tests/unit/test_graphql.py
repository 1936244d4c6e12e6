"""p2pcache.graphql: reading a GraphQL body within limits, who may share its answer, its key,
its estimated cost and what a mutation touches. Pure: no sockets.

The documents are the ones gh 2.23 really sends (tests/gh_graphql/gh_queries.json, recorded
from GH_DEBUG and the fake's request log by tests/gh_graphql/ghcli.py), plus hostile ones."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pcache import graphql
from p2pcache.graphql import (
    LIMITS,
    GraphQLRequest,
    Limits,
    Passthrough,
    Repository,
    cache_key,
    classify,
    estimated_cost,
    mutation_targets,
    parse_request,
    repository_database_id,
)

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from fakegithub import _GqlParser, _gql_cost, _num  # noqa: E402  (the fake's own reading)

RECORDED = json.loads((TESTS / "gh_graphql" / "gh_queries.json").read_text())
GQL = Repository("octo", "gql")
GH_HEADERS = RECORDED[0]["headers"]
# Generous: the suite runs on a loaded 2-core box. Speed is measured in bench/graphql_parse.py.
SLOW_S = 2.0


def body(query: str, variables: object = None, **extra: object) -> bytes:
    doc = {"query": query, **extra}
    if variables is not None:
        doc["variables"] = variables
    return json.dumps(doc).encode()


def read(query: str, variables: object = None, headers: dict | None = None,
         **extra: object) -> GraphQLRequest:
    got = parse_request(body(query, variables, **extra), headers or {})
    assert isinstance(got, GraphQLRequest), got
    return got


def passthrough(raw: bytes, headers: dict | None = None, limits: Limits = LIMITS) -> str:
    started = time.perf_counter()
    got = parse_request(raw, headers or {}, limits)
    assert time.perf_counter() - started < SLOW_S
    assert isinstance(got, Passthrough), got
    return got.reason


def recorded(command: str, index: int = 0) -> dict:
    return [r for r in RECORDED if r["command"] == command][index]


def gh_request(command: str, index: int = 0) -> GraphQLRequest:
    r = recorded(command, index)
    got = parse_request(json.dumps(r["body"]).encode(), r["headers"])
    assert isinstance(got, GraphQLRequest), (command, got)
    return got


# --------------------------------------------------------------------------------------- #
# What gh really sends
# --------------------------------------------------------------------------------------- #

SHARED = ["pr list", "pr list --state all --limit 5", "pr list --label bug", "pr list --search 9",
          "issue list", "issue list --label bug", "issue list --author octo",
          "pr view 1 --json title,body", "pr view 1 --json number,title,state,author,labels,url",
          "repo view", "release list"]
PER_IDENTITY = {
    "pr list --author @me": "search(@me)",
    "pr view 1": "viewerDidAuthor",
    "issue view 1": "projectCards",
    "api graphql viewer": "viewer",
}


def test_every_recorded_request_is_read():
    assert len(RECORDED) >= 20
    for r in RECORDED:
        got = parse_request(json.dumps(r["body"]).encode(), r["headers"])
        assert isinstance(got, GraphQLRequest), (r["command"], got)
        # gh names no operation; the only one in the document is the one it means.
        assert r["body"].get("operationName") is None


@pytest.mark.parametrize("command", SHARED)
def test_gh_reads_ci_scripts_use_are_shared_per_repository(command):
    c = classify(gh_request(command))
    assert (c.kind, c.caller_dependent, c.repositories, c.shared) == ("query", (), {GQL}, True)


@pytest.mark.parametrize(("command", "why"), PER_IDENTITY.items())
def test_gh_reads_that_depend_on_the_caller_are_not(command, why):
    c = classify(gh_request(command))
    assert c.kind == "query" and not c.shared and why in c.caller_dependent


def test_the_comment_commands_read_shared_then_write():
    for command in ("issue comment", "pr comment"):
        lookup, write = classify(gh_request(command, 0)), classify(gh_request(command, 1))
        assert lookup.shared and lookup.repositories == {GQL}
        assert write.kind == "mutation" and not write.shared


def test_comments_by_node_id_cannot_be_told_apart():
    """gh issue view --comments pages comments through node(id:): per identity."""
    c = classify(gh_request("issue view 1 --comments", 1))
    assert not c.shared and "node(): repository not told" in c.caller_dependent


def test_gh_mutations_name_their_repository_by_the_subjects_node_id():
    repository_id = _num("repo:octo/gql", 10**9)  # the fake's database id of octo/gql
    for command in ("issue comment", "pr comment"):
        touched = mutation_targets(gh_request(command, 1))
        assert touched == graphql.Touched(repository_ids=frozenset({repository_id}))


@pytest.mark.parametrize("r", RECORDED, ids=[r["command"] for r in RECORDED])
def test_estimated_cost_agrees_with_the_fakes_reading(r):
    """Two independent readings (graphql-core here, the fake's own parser there) of
    GitHub's algorithm give the same points for every document gh sends."""
    operations, fragments = _GqlParser(r["body"]["query"]).document()
    variables = r["body"].get("variables") or {}
    mine = parse_request(json.dumps(r["body"]).encode(), r["headers"])
    assert estimated_cost(mine) == _gql_cost(operations[0].selections, fragments, variables)


def test_gh_documents_are_well_inside_the_limits():
    for r in RECORDED:
        got = parse_request(json.dumps(r["body"]).encode(), r["headers"],
                            Limits(tokens=LIMITS.tokens // 2, depth=LIMITS.depth // 2))
        assert isinstance(got, GraphQLRequest), r["command"]


# --------------------------------------------------------------------------------------- #
# The key
# --------------------------------------------------------------------------------------- #

PR_LIST = recorded("pr list")["body"]


def key_of(query: str = PR_LIST["query"], variables: object = PR_LIST["variables"],
           headers: dict | None = None, host: str = "api.github.com", **extra) -> str:
    return cache_key(read(query, variables, GH_HEADERS if headers is None else headers,
                          **extra), host)


def test_key_ignores_whitespace_commas_comments_and_variable_order():
    respaced = "# gh's pr list\n" + " ".join(PR_LIST["query"].split()).replace(",", " , ")
    shuffled = dict(reversed(list(PR_LIST["variables"].items())))
    assert key_of(respaced, shuffled) == key_of()


def test_key_names_the_operation_sent_or_chosen():
    assert key_of(operationName="PullRequestList") == key_of()
    assert "PullRequestList" in key_of()


def test_key_changes_with_what_changes_the_answer():
    base = key_of()
    assert key_of(variables={**PR_LIST["variables"], "limit": 31}) != base
    assert key_of(PR_LIST["query"].replace("isDraft,", "")) != base
    assert key_of(host="ghe.example.com") != base
    assert key_of(headers={**GH_HEADERS, "graphql-features": "merge_queue,issue_types"}) != base
    assert key_of(headers={**GH_HEADERS, "accept": "application/vnd.github.bane-preview+json"}) \
        != base
    assert key_of(headers={**GH_HEADERS, "time-zone": "Europe/Paris"}) != base
    assert key_of(headers={**GH_HEADERS, "x-github-next-global-id": "1"}) != base
    request = read(PR_LIST["query"], PR_LIST["variables"], GH_HEADERS)
    assert cache_key(request, "api.github.com", identity="a") != cache_key(
        request, "api.github.com", identity="b") != base


def test_key_treats_default_accepts_and_feature_order_as_one():
    plain = {"time-zone": "UTC"}
    assert key_of(headers=plain) == key_of(headers={**plain, "accept": "*/*"}) == key_of(
        headers={**plain, "accept": "application/vnd.github+json, application/json"})
    assert key_of(headers={"graphql-features": "a, b"}) == key_of(
        headers={"graphql-features": "b,a"})


def test_key_is_short_and_holds_no_document_or_variable():
    secret = "value-that-must-not-appear"
    key = key_of(variables={**PR_LIST["variables"], "repo": secret})
    assert secret not in key and "fragment" not in key and len(key) < 160


def test_key_survives_lone_surrogates_and_non_ascii():
    assert key_of(variables={"owner": "\ud800", "repo": "ünï"})  # no UnicodeEncodeError
    assert key_of('{ repository(owner: "ünï", name: "日本") { name } }', {})


# --------------------------------------------------------------------------------------- #
# Who may share the answer
# --------------------------------------------------------------------------------------- #

def shared(query: str, variables: object = None) -> graphql.Classification:
    return classify(read(query, variables))


def test_repository_told_by_literals_or_variables_or_defaults():
    assert shared('{ repository(owner: "Octo", name: "GQL") { name } }').repositories == {GQL}
    q = "query($o: String!, $n: String! = \"gql\") { repository(owner: $o, name: $n) { name } }"
    assert shared(q, {"o": "octo"}).repositories == {GQL}
    c = shared(q, {})
    assert not c.shared and "repository(owner:, name:) not told" in c.caller_dependent
    assert not shared('{ repository(owner: "a/b", name: "..") { name } }').shared


def test_several_repositories_in_one_document():
    c = shared('{ a: repository(owner: "o", name: "a") { name } '
               'b: repository(owner: "o", name: "b") { name } }')
    assert c.shared and c.repositories == {Repository("o", "a"), Repository("o", "b")}


@pytest.mark.parametrize(("query", "why"), [
    ("{ viewer { login } }", "viewer"),
    ('{ repository(owner: "o", name: "r") { viewerPermission } }', "viewerPermission"),
    ('{ repository(owner: "o", name: "r") { issue(number: 1) { viewerCanUpdate } } }',
     "viewerCanUpdate"),
    ('{ repository(owner: "o", name: "r") { ...F } } fragment F on Repository { '
     'pullRequest(number: 1) { ... on PullRequest { reactionGroups { viewerHasReacted } } } }',
     "viewerHasReacted"),
    ('{ repository(owner: "o", name: "r") { owner { ... on User { isViewer } } } }',
     "isViewer"),
    ('{ repository(owner: "o", name: "r") { issue(number: 1) { timelineItems(first: 5) '
     '{ totalCount } } } }', "timelineItems"),
    ('{ repository(owner: "o", name: "r") { collaborators(first: 5) { totalCount } } }',
     "collaborators"),
    ('{ repository(owner: "o", name: "r") { owner { ... on User { issues(first: 5) '
     '{ totalCount } } } } }', "issues"),
    ('{ repository(owner: "o", name: "r") { issues(first: 5, filterBy: {assignee: "@me"}) '
     '{ totalCount } } }', "issues(@me)"),
    ('{ repository(owner: "o", name: "r") { issues(first: 5, filterBy: {viewerSubscribed: '
     'true}) { totalCount } } }', "issues(viewerSubscribed:)"),
    ("{ rateLimit { remaining } }", "rateLimit"),
    ('{ user(login: "octocat") { name } }', "root field user"),
    ('{ node(id: "R_kgDOABPHjQ") { id } }', "node(): repository not told"),
    ('{ nodes(ids: ["R_kgDOABPHjQ"]) { id } }', "nodes(): repository not told"),
    ('{ search(query: "is:open", type: ISSUE, first: 5) { issueCount } }',
     "search without repo:"),
    ('{ search(query: "repo:o/r org:other", type: ISSUE, first: 5) { issueCount } }',
     "search qualifier org:other"),
    ('{ search(query: "repo:o/r -repo:o/x", type: ISSUE, first: 5) { issueCount } }',
     "search qualifier -repo:o/x"),
    ('{ search(query: "repo:o/r OR is:private", type: ISSUE, first: 5) { issueCount } }',
     "search with OR or grouping"),
    ('{ search(query: "repo:o/r", type: USER, first: 5) { userCount } }',
     "search of type USER"),
    ("{ __typename }", "names no repository"),
])
def test_answers_that_depend_on_the_caller(query, why):
    c = shared(query)
    assert not c.shared
    assert why is None or why in c.caller_dependent, c.caller_dependent


def test_what_looks_like_viewer_but_is_not():
    c = shared('{ repository(owner: "o", name: "r") { pullRequest(number: 1) { '
               "reviewRequests(first: 5) { nodes { requestedReviewer { __typename } } } "
               "reviewDecision issues: comments(first: 1) { totalCount } "
               "commits(last: 1) { nodes { commit { status { state } } } } } } }")
    assert c.shared, c.caller_dependent


def test_only_the_selected_operation_and_its_fragments_count():
    q = ('query Mine { viewer { login } } query Theirs { repository(owner: "o", name: "r") '
         "{ ...Used } } fragment Used on Repository { name } "
         "fragment Unused on Repository { viewerPermission }")
    assert classify(read(q, operationName="Theirs")).shared
    assert not classify(read(q, operationName="Mine")).shared


def test_search_repositories_rules():
    found, why = graphql.search_repositories('repo:o/a repo:"o/b" is:open label:"x y"', "ISSUE")
    assert found == {Repository("o", "a"), Repository("o", "b")} and why == ""
    assert graphql.search_repositories("repo:o/r author:@ME", "ISSUE")[1] == "search(@me)"
    assert graphql.search_repositories(None, "ISSUE")[1] == "search query not told"
    assert graphql.search_repositories("repo:o/r (a)", "ISSUE")[1].endswith("grouping")
    assert graphql.search_repositories("repo:bad", "ISSUE")[1] == "search qualifier repo:bad"


def test_mutations_and_subscriptions_are_never_shared():
    assert classify(read('mutation { addStar(input: {starrableId: "R_kgDOABPHjQ"}) '
                         "{ clientMutationId } }")).kind == "mutation"
    c = classify(read('subscription { repository(owner: "o", name: "r") { name } }'))
    assert c.kind == "subscription" and not c.shared and c.repositories == frozenset()


# --------------------------------------------------------------------------------------- #
# Estimated cost (GitHub's documented algorithm)
# --------------------------------------------------------------------------------------- #

GITHUB_EXAMPLE = """query {
  viewer {
    login
    repositories(first: 100) {
      edges {
        repository: node {
          name
          issues(first: 50) {
            edges {
              node {
                title
                labels(first: 60) {
                  edges {
                    node {
                      name
}}}}}}}}}}}"""


def test_githubs_own_example_costs_51():
    # 1 (repositories) + 100 (issues, one per repository) + 100*50 (labels) = 5101 -> 51
    assert estimated_cost(read(GITHUB_EXAMPLE)) == 51
    assert estimated_cost(read(GITHUB_EXAMPLE).document) == 51  # a document alone, too


def test_cost_from_variables_defaults_and_fragments():
    q = ("query($n: Int = 100, $m: Int!) { repository(owner: \"o\", name: \"r\") { ...F } } "
         "fragment F on Repository { issues(first: $n) { nodes { comments(last: $m) "
         "{ nodes { body } } labels(first: 100) { nodes { name } } } } }")
    # issues 1 + comments 100 + labels 100 = 201 -> 2
    assert estimated_cost(read(q, {"m": 5})) == 2
    assert estimated_cost(read(q, {"m": 5, "n": 10})) == 1  # 1 + 10 + 10 = 21 -> 0 -> 1
    assert estimated_cost(read(q, {"m": "x", "n": 10**300})) == 2  # untold and huge: 100


def test_cost_is_capped_where_github_would_refuse_the_query():
    deep = '{ repository(owner: "o", name: "r") ' + "{ a(first: 100) " * 20 + "{ b }" + " }" * 21
    assert estimated_cost(read(deep)) == graphql.MAX_COST


def test_cost_is_at_least_one_and_of_any_document():
    assert estimated_cost(read("{ __typename }")) == 1
    assert estimated_cost(read('mutation { addComment(input: {subjectId: "x", body: "y"}) '
                               "{ clientMutationId } }")) == 1
    from graphql import parse

    assert estimated_cost(parse("{ a { ...A } } fragment A on T { ...A }")) == 1  # a cycle
    assert estimated_cost(parse("query A { a } query B { b }")) == 1  # no operation chosen


# --------------------------------------------------------------------------------------- #
# What a mutation touches
# --------------------------------------------------------------------------------------- #

HELLO_WORLD = "R_kgDOABPHjQ"  # octocat/Hello-World: msgpack [0, 1296269]


def test_node_ids_tell_repository_database_ids():
    assert repository_database_id(HELLO_WORLD) == 1296269
    assert repository_database_id("MDEwOlJlcG9zaXRvcnkxMjk2MjY5") == 1296269  # legacy form
    for opaque in ("MDU6SXNzdWUx", "U_kgDOABPHjQ", "I_kgDOABPHjQ", "R_!!!!", "", "R_kgDO",
                   "R_kwDOABPHjQ", "x" * 10_000):
        assert repository_database_id(opaque) is None, opaque


@pytest.mark.parametrize(("mutation", "variables", "expected"), [
    ('mutation { createIssue(input: {repositoryId: "R_kgDOABPHjQ", title: "t", '
     'labelIds: ["LA_x"]}) { issue { id } } }', None,
     graphql.Touched(repository_ids=frozenset({1296269}))),
    ("mutation($input: AddCommentInput!) { addComment(input: $input) { clientMutationId } }",
     {"input": {"subjectId": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "body": "b"}},
     graphql.Touched(repository_ids=frozenset({1296269}))),
    ("mutation($input: AddCommentInput!) { addComment(input: $input) { clientMutationId } }",
     {"input": {"subjectId": "MDU6SXNzdWUx", "body": "b"}}, graphql.Touched(unknown=True)),
    ("mutation($input: AddCommentInput!) { addComment(input: $input) { clientMutationId } }",
     {}, graphql.Touched(unknown=True)),
    ('mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: "Octo/GQL", '
     'branchName: "main"}, message: {headline: "x"}, expectedHeadOid: "0"}) '
     "{ commit { oid } } }", None,
     graphql.Touched(repositories=frozenset({GQL}), unknown=True)),
    ('mutation { mergePullRequest(input: {pullRequestId: "R_kgDOABPHjQ"}) '
     "{ clientMutationId } }", None,
     graphql.Touched(repository_ids=frozenset({1296269}), unknown=True)),
    ('mutation { followUser(input: {userId: "U_kgDOABPHjQ"}) { clientMutationId } }', None,
     graphql.Touched(unknown=True)),
    ('mutation { a: addStar(input: {starrableId: "x"}) { clientMutationId } '
     'b: createIssue(input: {repositoryId: "R_kgDOABPHjQ", title: "t"}) { issue { id } } }',
     None, graphql.Touched(repository_ids=frozenset({1296269}), unknown=True)),
])
def test_mutation_targets(mutation, variables, expected):
    assert mutation_targets(read(mutation, variables)) == expected


def test_a_query_touches_nothing():
    assert mutation_targets(gh_request("pr list")) == graphql.Touched()


# --------------------------------------------------------------------------------------- #
# What may be stored
# --------------------------------------------------------------------------------------- #

def test_only_clean_200_answers_are_storable():
    assert graphql.is_storable(200, b'{"data":{"repository":{"name":"r"}}}')
    assert graphql.is_storable(200, b'{"data":{"label":"\\"errors\\""}}')  # a value, not a key
    for status, raw in [
        (200, b'{"data":{"repository":null},"errors":[{"type":"NOT_FOUND"}]}'),
        (200, b'{"errors":[{"type":"RATE_LIMIT","message":"API rate limit exceeded"}]}'),
        (200, b'{"data":null}'), (200, b'{"data":[]}'), (200, b"[]"), (200, b"not json"),
        (200, b"\xff"), (200, b"[" * 100_000), (502, b'{"data":{"a":1}}'),
        (401, b'{"message":"Bad credentials"}'), (304, b""),
    ]:
        assert not graphql.is_storable(status, raw), (status, raw[:40])


def test_an_empty_operation_name_is_no_name():
    assert isinstance(parse_request(body("{ a }", operationName=""), {}), GraphQLRequest)


# --------------------------------------------------------------------------------------- #
# Hostile bodies: each passes through, quickly, and never raises
# --------------------------------------------------------------------------------------- #

@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "body is not JSON"),
    (b"{not json", "body is not JSON"),
    (b"\xff\xfe\x00garbage", "body is not JSON"),
    (b"[1, 2]", "body is not a JSON object"),
    (b'{"query": 1}', "query is not a string"),
    (b'{"query": "{a}", "operationName": 5}', "operationName is not a string"),
    (b'{"query": "{a}", "variables": [1]}', "variables is not an object"),
    (b'{"query": "{a}", "variables": "{}"}', "variables is not an object"),
    (b'{"query": "{a}", "extensions": {"persistedQuery": {}}}',
     "body has members other than query, operationName, variables"),
    (b'{"query": "{a"}', "does not parse"),
    (b'{"query": "type T { a: Int }"}', "a definition that is not executable"),
    (b'{"query": "query A { a } query B { b }"}', "no operationName"),
    (b'{"query": "query A { a } query B { b }", "operationName": "C"}',
     "no single operation named C"),
    (b'{"query": "{ a } query B { b }", "operationName": "B"}', "an anonymous operation"),
    (b'{"query": "query A { a } query A { b }", "operationName": "A"}',
     "no single operation named A"),
    (b'{"query": "{ ...F } fragment F on Q { a } fragment F on Q { b }"}',
     "fragment F defined twice"),
    (b'{"query": "{ ...Missing }"}', "unknown fragment Missing"),
    (b'{"query": "{ ...A } fragment A on Q { b { ...B } } fragment B on Q { ...A }"}',
     "spreads itself"),
    (b'{"query": "[[[["}', "does not parse"),
])
def test_malformed_bodies_pass_through(raw, reason):
    assert reason in passthrough(raw)


def test_encoded_bodies_pass_through():
    assert passthrough(body("{ a }"), {"content-encoding": "gzip"}) == "encoded body"


def test_over_the_body_and_query_sizes():
    assert "body over" in passthrough(body("{ a }", {"x": "y" * LIMITS.body_bytes}))
    assert "query over" in passthrough(body("{ a }" + " " * LIMITS.query_chars))


def test_a_hundred_thousand_tokens():
    flood = body("{ " + "a " * 100_000 + "}")
    assert "query over" in passthrough(flood)
    # past the size limit, the token limit stops the parser early
    assert f"more than {LIMITS.tokens}" in passthrough(flood, limits=Limits(query_chars=1 << 20))


def test_comments_are_bounded_too():
    assert "does not parse" in passthrough(body("#\n" * (LIMITS.tokens + 1) + "{ a }"))


def test_deep_nesting():
    assert passthrough(body("{a" * 5000 + "}" * 5000), limits=Limits(tokens=20_000)) \
        .startswith("does not parse")  # graphql-core's own nesting guard
    deep = "{ repository(owner: \"o\", name: \"r\") " + "{ a " * 40 + "}" * 41
    assert "nested deeper" in passthrough(body(deep))
    inner = "{ x " * 10 + "}" * 10
    hidden = ("{ ...F0 } " + " ".join(f"fragment F{i} on T {{ a {{ ...F{i + 1} }} }}"
                                      for i in range(20)) + f" fragment F20 on T {inner}")
    assert "nested deeper" in passthrough(body(hidden))  # depth through fragments
    assert "variables nested deeper" in passthrough(
        body("{ a }", {"v": json.loads("[" * 40 + "]" * 40)}))
    assert "values in variables" in passthrough(body("{ a }", {"v": [0] * 100_000}))
    assert "values in variables" in passthrough(body("{ a }", {str(i): i for i in range(20_000)}))
    assert isinstance(parse_request(body("{ a }", {"v": [0] * 9_000}), {}), GraphQLRequest)
    nested = b'{"query": "{a}", "variables": {"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert passthrough(nested) == "too deeply nested"  # json's RecursionError, caught


def test_many_aliases_and_definitions():
    aliased = "{ " + " ".join(f"a{i}: a" for i in range(LIMITS.aliases + 1)) + " }"
    assert "aliases" in passthrough(body(aliased))
    many = "{ a } " + " ".join(f"fragment F{i} on T {{ a }}" for i in range(LIMITS.definitions))
    assert "definitions" in passthrough(body(many))


def test_fragments_that_double_at_every_level_cost_their_length():
    # 2^30 selections once expanded; each fragment is summarized once, so this is quick.
    levels = 30
    q = "{ ...F0 } " + " ".join(f"fragment F{i} on T {{ ...F{i + 1} ...F{i + 1} }}"
                                 for i in range(levels)) + f" fragment F{levels} on T {{ a }}"
    started = time.perf_counter()
    got = parse_request(body(q), {}, Limits(definitions=64))
    c = classify(got)
    assert time.perf_counter() - started < SLOW_S
    assert isinstance(got, GraphQLRequest) and not c.shared


def test_never_raises_on_json_of_any_shape():
    for raw in (b"null", b"1", b'"s"', b"true", b'{"query": null}', b'{"query": "{a}", '
                b'"variables": null, "operationName": null}', b'{"query": "\\ud800"}'):
        assert isinstance(parse_request(raw, {}), (Passthrough, GraphQLRequest))


# --------------------------------------------------------------------------------------- #
# Fuzz: whatever arrives, parse_request answers, quickly, and what it reads can be
# classified, keyed and costed without an exception
# --------------------------------------------------------------------------------------- #

TOKENS = ["{", "}", "(", ")", "[", "]", ":", "$", "!", "=", "@", "...", "|", "&", ",",
          "query", "mutation", "subscription", "fragment", "on", "viewer", "repository",
          "search", "node", "owner", "name", "first", "last", "a", "F", "T", '"o"', '"r"',
          "1", "100", "-1", "1e9", "true", "null", '"repo:o/r"', "#c\n", '"""b"""', "$v",
          "ISSUE", "__typename", "\\u0000", "\u00e9"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
documents = st.lists(st.sampled_from(TOKENS), max_size=120).map(" ".join)
bodies = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda q, v, n: json.dumps({"query": q, "variables": v, "operationName": n}),
              documents, st.dictionaries(st.sampled_from(["v", "o", "n"]), json_values),
              st.none() | st.sampled_from(["A", "F", ""])).map(str.encode),
    st.builds(lambda d: json.dumps(d).encode(), json_values),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bodies, headers=st.dictionaries(st.sampled_from(
    ["accept", "graphql-features", "time-zone", "content-encoding"]), st.text(max_size=40)))
def test_fuzz_parse_request_never_raises_and_stays_quick(raw, headers):
    started = time.perf_counter()
    got = parse_request(raw, headers)
    if isinstance(got, GraphQLRequest):
        classify(got)
        estimated_cost(got)
        mutation_targets(got)
        cache_key(got, "api.github.com")
    else:
        assert isinstance(got, Passthrough) and got.reason
    assert time.perf_counter() - started < SLOW_S


def test_a_spent_budget_and_a_draft_release_are_told_apart_from_answers():
    spent = json.dumps({"data": None, "errors": [{"type": "RATE_LIMITED",
                                                  "message": "API rate limit exceeded"}]})
    assert graphql.spent_budget(spent.encode())
    assert not graphql.spent_budget(b'{"data":{"x":"RATE_LIMITED"}}')
    assert not graphql.spent_budget(b'{"errors":[{"type":"NOT_FOUND"}]}')
    assert not graphql.spent_budget(b"RATE_LIMIT not json")
    releases = graphql.parse_request(json.dumps({"query": (
        '{repository(owner:"o",name:"r"){releases(first:5){nodes{name isDraft}}}}')}).encode(),
        {})
    pulls = graphql.parse_request(json.dumps({"query": (
        '{repository(owner:"o",name:"r"){pullRequests(first:5){nodes{isDraft}}}}')}).encode(),
        {})
    draft = b'{"data":{"repository":{"releases":{"nodes":[{"name":"v1","isDraft": true}]}}}}'
    assert graphql.shows_drafts(releases, draft)
    assert not graphql.shows_drafts(releases, draft.replace(b"true", b"false"))
    assert not graphql.shows_drafts(pulls, draft)  # a draft pull request is shown to anyone
