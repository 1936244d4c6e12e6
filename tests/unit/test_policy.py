"""Unit tests for p2pcache.policy: pure cache decisions, no I/O."""

from __future__ import annotations

import pytest

from p2pcache.models import ApiRequest, ApiResponse, Entry
from p2pcache.policy import (
    DEFAULT_ACCEPT,
    REFRESH_PAUSE_S,
    SECONDARY_LIMIT_WAIT_S,
    Action,
    Liveness,
    RateLimit,
    blocked_until,
    cache_key,
    conditional_headers,
    decide,
    entry_from,
    for_caller,
    invalidated_paths,
    is_cacheable_request,
    is_cacheable_response,
    is_rate_limited,
    not_modified_for,
    not_modified_response,
    refresh_due,
    refresh_lead,
    refresh_pause_until,
    refreshable,
    refreshed,
    rewrite_hypermedia,
    rewrite_links,
    seen_rate_limits,
    serve_stale_instead,
    stored_headers,
)
from p2pcache.targets import parse

NOW = 1_700_000_000.0


def req(target: str, method: str = "GET", **headers: str) -> ApiRequest:
    return ApiRequest(method, parse(target),
                      {k.replace("_", "-"): v for k, v in headers.items()})


def resp(status: int = 200, body: bytes = b"{}", **headers: str) -> ApiResponse:
    return ApiResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def entry(fetched_at: float = NOW, **headers: str) -> Entry:
    return Entry(key="GET /x accept=a", path="/x", status=200,
                 headers={k.replace("_", "-"): v for k, v in headers.items()},
                 body=b'{"a":1}', fetched_at=fetched_at)


# -- keys ---------------------------------------------------------------------------------

class TestCacheKey:
    def test_exact_format(self):
        assert cache_key(req("/repos/o/r")) == f"GET /repos/o/r accept={DEFAULT_ACCEPT}"

    def test_query_order_does_not_matter(self):
        a = cache_key(req("/repos/o/r/issues?state=open&page=2&per_page=100"))
        b = cache_key(req("/repos/o/r/issues?per_page=100&page=2&state=open"))
        assert a == b
        assert a == f"GET /repos/o/r/issues?page=2&per_page=100&state=open accept={DEFAULT_ACCEPT}"

    def test_different_query_values_differ(self):
        assert cache_key(req("/r?page=1")) != cache_key(req("/r?page=2"))
        assert cache_key(req("/r?page=1")) != cache_key(req("/r"))

    def test_query_encoding_is_preserved_without_collisions(self):
        # "a&b" as one value must not collide with two parameters.
        one = cache_key(req("/search?q=a%26b"))
        two = cache_key(req("/search?q=a&b="))
        assert one != two
        assert "q=a%26b" in one

    def test_head_shares_get_entry(self):
        assert cache_key(req("/repos/o/r", "HEAD")) == cache_key(req("/repos/o/r", "GET"))
        assert cache_key(req("/repos/o/r", "HEAD")).startswith("GET ")

    def test_accept_selects_a_different_key(self):
        raw = cache_key(req("/repos/o/r/readme", accept="application/vnd.github.raw+json"))
        default = cache_key(req("/repos/o/r/readme"))
        assert raw != default
        assert raw.endswith("accept=application/vnd.github.raw+json")

    @pytest.mark.parametrize("accept", ["", "*/*", "application/json", "  */*  ",
                                        "Application/Vnd.GitHub+JSON"])
    def test_equivalent_accepts_share_the_default(self, accept):
        assert cache_key(req("/r", accept=accept)) == cache_key(req("/r"))

    def test_api_version_selects_a_different_key(self):
        v1 = cache_key(req("/r", x_github_api_version="2022-11-28"))
        v2 = cache_key(req("/r", x_github_api_version="2026-03-10"))
        none = cache_key(req("/r"))
        # No version is GitHub's default, 2022-11-28: one representation, one entry
        # (octokit sends none, githubkit the default).
        assert v1 == none and len({v1, v2}) == 2
        assert v1 == f"GET /r accept={DEFAULT_ACCEPT}"

    def test_other_headers_do_not_change_the_key(self):
        assert cache_key(req("/r", authorization="token x", user_agent="ua")) == \
            cache_key(req("/r"))

    @pytest.mark.parametrize("accept", ["application/vnd.github.v3+json",
                                        "application/vnd.github.V3+json"])
    def test_v3_media_type_is_the_same_representation(self, accept):
        assert cache_key(req("/r", accept=accept)) == cache_key(req("/r"))
        assert cache_key(req("/r", accept="application/vnd.github.v3.raw+json")) == \
            cache_key(req("/r", accept="application/vnd.github.raw+json"))

    def test_dot_segments_and_enterprise_prefix_share_the_entry(self):
        assert cache_key(req("/repos/a/../b")) == cache_key(req("/repos/b"))
        assert cache_key(req("/api/v3/repos/b")) == cache_key(req("/repos/b"))


# -- freshness ----------------------------------------------------------------------------

class TestDecide:
    def test_no_entry_fetches(self):
        assert decide(None, NOW, 60) is Action.FETCH

    def test_fresh_entry_is_served(self):
        assert decide(entry(NOW, etag='"a"'), NOW, 60) is Action.SERVE
        assert decide(entry(NOW, etag='"a"'), NOW + 59.999, 60) is Action.SERVE

    def test_at_exactly_ttl_it_is_stale(self):
        assert decide(entry(NOW, etag='"a"'), NOW + 60, 60) is Action.REVALIDATE

    def test_stale_with_etag_revalidates(self):
        assert decide(entry(NOW, etag='"a"'), NOW + 3600, 60) is Action.REVALIDATE

    def test_stale_with_last_modified_revalidates(self):
        e = entry(NOW, last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
        assert decide(e, NOW + 61, 60) is Action.REVALIDATE

    def test_stale_without_validator_fetches(self):
        assert decide(entry(NOW, content_type="application/json"), NOW + 61, 60) is Action.FETCH
        # but while fresh it is served even without a validator
        assert decide(entry(NOW), NOW + 1, 60) is Action.SERVE


class TestConditionalHeaders:
    def test_none(self):
        assert conditional_headers(None) == {}

    def test_etag(self):
        assert conditional_headers(entry(etag='W/"abc"')) == {"if-none-match": 'W/"abc"'}

    def test_etag_preferred_over_last_modified(self):
        e = entry(etag='"abc"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
        assert conditional_headers(e) == {"if-none-match": '"abc"'}

    def test_last_modified(self):
        e = entry(last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
        assert conditional_headers(e) == {"if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT"}

    def test_no_validator(self):
        assert conditional_headers(entry(content_type="x")) == {}


# -- what to keep -------------------------------------------------------------------------

class TestCacheable:
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    def test_reads_are_cacheable(self, method):
        assert is_cacheable_request(req("/repos/o/r?x=1", method))

    @pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE", "OPTIONS", "get"])
    def test_writes_are_not(self, method):
        assert not is_cacheable_request(req("/repos/o/r", method))

    def test_graphql_is_not(self):
        assert not is_cacheable_request(req("/graphql", "GET"))
        assert not is_cacheable_request(req("/graphql?x=1", "POST"))
        assert not is_cacheable_request(req("/graphql", "POST"))

    def test_200_is_cacheable(self):
        assert is_cacheable_response(resp(200, b"x" * 10), 10)

    @pytest.mark.parametrize("status", [201, 203, 204, 301, 304, 404, 403, 500])
    def test_only_200(self, status):
        assert not is_cacheable_response(resp(status, b"x"), 1000)

    @pytest.mark.parametrize("cc", ["no-store", "private, no-store", "No-Store"])
    def test_no_store(self, cc):
        assert not is_cacheable_response(resp(200, b"x", cache_control=cc), 1000)

    def test_other_cache_control_is_fine(self):
        assert is_cacheable_response(resp(200, b"x", cache_control="private, max-age=60"), 1000)

    def test_size_bound(self):
        assert is_cacheable_response(resp(200, b"x" * 100), 100)
        assert not is_cacheable_response(resp(200, b"x" * 101), 100)


class TestEntries:
    def test_stored_headers_filters(self):
        headers = {"content-type": "application/json", "etag": '"e"', "date": "today",
                   "x-ratelimit-remaining": "5", "set-cookie": "a=b", "link": "<x>"}
        assert stored_headers(headers) == {"content-type": "application/json", "etag": '"e"',
                                           "link": "<x>"}

    def test_what_describes_the_fetching_token_is_never_stored(self):
        headers = {"etag": '"e"', "x-oauth-scopes": "admin:org, repo", "x-oauth-client-id": "c",
                   "github-authentication-token-expiration": "2027-01-01 00:00:00 UTC",
                   "x-github-sso": "required; url=https://github.com/orgs/o/sso",
                   "x-accepted-oauth-scopes": "repo"}
        assert stored_headers(headers) == {"etag": '"e"', "x-accepted-oauth-scopes": "repo"}

    def test_an_answer_shows_its_callers_credential(self):
        entry = {"etag": '"e"', "x-accepted-oauth-scopes": "repo",
                 "x-oauth-scopes": "admin:org, repo"}  # (an older version stored it)
        mine = {"x-oauth-scopes": "public_repo"}
        assert for_caller(entry, mine, True) == {
            "etag": '"e"', "x-accepted-oauth-scopes": "repo", "x-oauth-scopes": "public_repo"}
        # A token without OAuth scopes (an installation token), or none at all: GitHub sends
        # neither header.
        assert for_caller(entry, {}, False) == {"etag": '"e"'}
        assert for_caller(entry, {"github-authentication-token-expiration": "x"}, True) == {
            "etag": '"e"', "github-authentication-token-expiration": "x"}

    def test_sso_state_reaches_a_caller_only_on_its_own_answer(self):
        sso = {"x-github-sso": "required; url=https://github.com/orgs/o/sso?x=1",
               "x-oauth-scopes": "repo"}
        assert for_caller(sso, {}, True, own=True) == {"x-github-sso": sso["x-github-sso"]}
        assert for_caller(sso, {"x-oauth-scopes": "gist"}, True) == {"x-oauth-scopes": "gist"}

    def test_github_marks_an_answer_to_a_token_private_and_to_anonymous_public(self):
        fetched = {"cache-control": "private, max-age=60, s-maxage=60"}
        assert for_caller(fetched, {}, False)["cache-control"] == "public, max-age=60, s-maxage=60"
        assert for_caller(fetched, {}, True) == fetched
        anonymous = {"cache-control": "public, max-age=60, s-maxage=60"}
        assert for_caller(anonymous, {}, True)["cache-control"] == \
            "private, max-age=60, s-maxage=60"
        for other in ("no-cache", "max-age=0, private", ""):
            assert for_caller({"cache-control": other}, {}, False)["cache-control"] == other
        assert "cache-control" not in for_caller({}, {}, True)

    def test_entry_from(self):
        r = req("/repos/o/r/issues?page=2")
        e = entry_from("k", r, resp(200, b"body", etag='"e"', date="d"), NOW)
        assert (e.key, e.path, e.status, e.body, e.fetched_at) == \
            ("k", "/repos/o/r/issues", 200, b"body", NOW)
        assert e.headers == {"etag": '"e"'}

    def test_refreshed_keeps_body_updates_time_and_validators(self):
        old = Entry("k", "/p", 200, {"etag": '"old"', "content-type": "application/json",
                                     "last-modified": "Mon"}, b"the body", NOW)
        not_modified = resp(304, b"", etag='"new"', last_modified="Tue",
                            x_ratelimit_remaining="4999", date="x")
        new = refreshed(old, not_modified, NOW + 500)
        assert new.body == b"the body"
        assert new.status == 200
        assert (new.key, new.path) == ("k", "/p")
        assert new.fetched_at == NOW + 500
        assert new.headers == {"etag": '"new"', "content-type": "application/json",
                               "last-modified": "Tue"}
        # the original is untouched
        assert old.headers["etag"] == '"old"' and old.fetched_at == NOW

    def test_refreshed_without_new_validators_keeps_old(self):
        old = Entry("k", "/p", 200, {"etag": '"old"'}, b"b", NOW)
        new = refreshed(old, resp(304, b""), NOW + 1)
        assert new.headers == {"etag": '"old"'}
        assert decide(new, NOW + 2, 60) is Action.SERVE


class TestInvalidatedPaths:
    @pytest.mark.parametrize("target,expected", [
        ("/repos/o/r/issues", ["/repos/o/r/issues", "/repos/o/r"]),
        ("/repos/o/r/issues/1", ["/repos/o/r/issues/1", "/repos/o/r/issues"]),
        ("/repos/o/r/issues/1?x=1", ["/repos/o/r/issues/1", "/repos/o/r/issues"]),
        ("/repos/o/r/issues/", ["/repos/o/r/issues", "/repos/o/r"]),
        ("/user", ["/user"]),
        ("/", ["/"]),
    ])
    def test_paths(self, target, expected):
        assert invalidated_paths(parse(target)) == expected


# -- rate limits --------------------------------------------------------------------------

class TestRateLimits:
    def test_429_with_retry_after(self):
        r = resp(429, b"", retry_after="30")
        assert is_rate_limited(r)
        assert blocked_until(r, NOW) == NOW + 30

    def test_429_without_headers_waits_a_minute(self):
        assert blocked_until(resp(429, b""), NOW) == NOW + SECONDARY_LIMIT_WAIT_S
        assert SECONDARY_LIMIT_WAIT_S == 60.0

    def test_403_primary_limit_waits_until_reset(self):
        r = resp(403, b'{"message":"API rate limit exceeded"}', x_ratelimit_remaining="0",
                 x_ratelimit_reset=str(int(NOW) + 1234))
        assert is_rate_limited(r)
        assert blocked_until(r, NOW) == NOW + 1234

    def test_403_primary_limit_reset_in_the_past_waits_one_second(self):
        r = resp(403, b"", x_ratelimit_remaining="0", x_ratelimit_reset=str(int(NOW) - 100))
        assert blocked_until(r, NOW) == NOW + 1

    def test_403_remaining_zero_without_reset_waits_a_minute(self):
        r = resp(403, b"", x_ratelimit_remaining="0")
        assert blocked_until(r, NOW) == NOW + 60

    def test_retry_after_wins_over_reset(self):
        r = resp(403, b"", retry_after="5", x_ratelimit_remaining="0",
                 x_ratelimit_reset=str(int(NOW) + 1000))
        assert blocked_until(r, NOW) == NOW + 5

    def test_403_secondary_without_retry_after(self):
        r = resp(403, b'{"message":"You have exceeded a secondary rate limit. Please wait"}',
                 x_ratelimit_remaining="4000")
        assert is_rate_limited(r)
        assert blocked_until(r, NOW) == NOW + 60

    def test_403_secondary_with_retry_after(self):
        r = resp(403, b'{"message":"secondary rate limit"}', retry_after="120")
        assert blocked_until(r, NOW) == NOW + 120

    def test_403_permission_is_not_a_rate_limit(self):
        r = resp(403, b'{"message":"Resource not accessible by integration"}',
                 x_ratelimit_remaining="4999", x_ratelimit_reset=str(int(NOW) + 100))
        assert not is_rate_limited(r)
        assert blocked_until(r, NOW) is None
        assert not serve_stale_instead(r)

    @pytest.mark.parametrize("status", [200, 304, 404, 500, 401])
    def test_other_statuses(self, status):
        r = resp(status, b"rate limit", retry_after="10", x_ratelimit_remaining="0")
        assert not is_rate_limited(r)
        assert blocked_until(r, NOW) is None

    @pytest.mark.parametrize("status,expected", [
        (500, True), (502, True), (503, True), (504, True), (429, True),
        (200, False), (304, False), (404, False), (422, False), (401, False),
    ])
    def test_serve_stale_instead(self, status, expected):
        assert serve_stale_instead(resp(status, b"")) is expected

    def test_serve_stale_for_403_rate_limit(self):
        assert serve_stale_instead(resp(403, b"", x_ratelimit_remaining="0"))


# -- links --------------------------------------------------------------------------------

LINK = ('<https://api.github.com/repositories/1300192/issues?page=2>; rel="next", '
        '<https://api.github.com/repositories/1300192/issues?page=515>; rel="last", '
        '<https://api.github.com/repositories/1300192/issues?page=1>; rel="first", '
        '<https://api.github.com/repositories/1300192/issues?page=1>; rel="prev"')


class TestRewriteLinks:
    @pytest.mark.parametrize("upstream", ["https://api.github.com", "https://api.github.com/"])
    @pytest.mark.parametrize("local", ["http://127.0.0.1:9180", "http://127.0.0.1:9180/"])
    def test_github_link_all_rels(self, upstream, local):
        out = rewrite_links(LINK, upstream, local)
        assert out == LINK.replace("https://api.github.com", "http://127.0.0.1:9180")
        assert out.count("http://127.0.0.1:9180/repositories/1300192/issues?page=") == 4
        assert "//repositories" not in out

    def test_only_upstream_urls_are_rewritten(self):
        link = ('<https://example.com/x?page=2>; rel="next", '
                '<https://api.github.com.evil.example/y>; rel="prev", '
                '<http://api.github.com/z>; rel="first", '
                '<https://api.github.com/ok?page=3>; rel="last"')
        out = rewrite_links(link, "https://api.github.com", "http://localhost:1")
        assert out == ('<https://example.com/x?page=2>; rel="next", '
                       '<https://api.github.com.evil.example/y>; rel="prev", '
                       '<http://api.github.com/z>; rel="first", '
                       '<http://localhost:1/ok?page=3>; rel="last"')

    def test_upstream_with_path_prefix(self):
        link = '<https://ghe.example/api/v3/repos/o/r/issues?page=2>; rel="next"'
        out = rewrite_links(link, "https://ghe.example/api/v3/", "http://127.0.0.1:9180")
        assert out == '<http://127.0.0.1:9180/repos/o/r/issues?page=2>; rel="next"'
        # a sibling path that merely shares the prefix is not ours
        other = '<https://ghe.example/api/v30/x>; rel="next"'
        assert rewrite_links(other, "https://ghe.example/api/v3", "http://l") == other

    def test_no_links(self):
        assert rewrite_links("", "https://api.github.com", "http://l") == ""


# -- rate-limit picture -------------------------------------------------------------------

class TestRateLimit:
    HEADERS = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4321",
               "x-ratelimit-used": "679", "x-ratelimit-reset": "1700003600",
               "x-ratelimit-resource": "core"}

    def test_from_headers(self):
        rl = RateLimit.from_headers(self.HEADERS)
        assert rl == RateLimit(5000, 4321, 679, 1700003600, "core")

    def test_headers_round_trip(self):
        rl = RateLimit.from_headers(self.HEADERS)
        assert rl.headers() == self.HEADERS
        assert RateLimit.from_headers(rl.headers()) == rl

    def test_missing_or_non_ascii_remaining_is_no_picture(self):
        assert RateLimit.from_headers({"x-ratelimit-limit": "60"}) is None
        assert RateLimit.from_headers({"x-ratelimit-remaining": "\u00b2"}) is None  # '²'
        assert RateLimit.from_headers({"x-ratelimit-remaining": "lots"}) is None

    def test_non_numeric_values_become_none(self):
        rl = RateLimit.from_headers({"x-ratelimit-remaining": "7", "x-ratelimit-limit": "-1",
                                     "x-ratelimit-reset": "\u0663"})  # Arabic-Indic 3
        assert rl == RateLimit(None, 7, None, None, "core")

    def test_headers_skips_none(self):
        assert RateLimit(remaining=0).headers() == {"x-ratelimit-remaining": "0",
                                                    "x-ratelimit-resource": "core"}

    def test_each_resource_is_its_own_bucket(self):
        limits = seen_rate_limits({}, self.HEADERS)
        search = {**self.HEADERS, "x-ratelimit-resource": "search", "x-ratelimit-limit": "30",
                  "x-ratelimit-remaining": "29"}
        limits = seen_rate_limits(limits, search)
        assert limits["core"].remaining == 4321 and limits["search"].remaining == 29
        graphql = {**self.HEADERS, "x-ratelimit-resource": "graphql",
                   "x-ratelimit-remaining": "4999"}
        limits = seen_rate_limits(limits, graphql)
        assert limits["core"].remaining == 4321
        assert seen_rate_limits(limits, {"content-type": "x"}) is limits

    def test_bucket_names_are_bounded(self):
        limits: dict = {}
        for i in range(100):
            limits = seen_rate_limits(limits, {**self.HEADERS, "x-ratelimit-resource": f"r{i}"})
        assert len(limits) == 32
        odd = seen_rate_limits({}, {**self.HEADERS, "x-ratelimit-resource": "a b\u00e9"})
        assert list(odd) == ["core"]


class TestHoldTimes:
    def test_hold_is_capped_at_an_hour(self):
        assert blocked_until(resp(429, b"", retry_after="999999999"), NOW) == NOW + 3600
        far = resp(403, b"", x_ratelimit_remaining="0", x_ratelimit_reset=str(int(NOW) + 10**9))
        assert blocked_until(far, NOW) == NOW + 3600

    def test_non_ascii_digits_are_not_numbers(self):
        assert blocked_until(resp(429, b"", retry_after="\u00b2"), NOW) == NOW + 60


# -- client conditionals ------------------------------------------------------------------

class TestClientConditionals:
    def test_matching_etag(self):
        r = resp(200, b"{}", etag='W/"abc"', content_type="application/json")
        assert not_modified_for({"if-none-match": '"abc"'}, r)
        assert not_modified_for({"if-none-match": '"x", W/"abc"'}, r)
        assert not_modified_for({"if-none-match": "*"}, r)
        assert not not_modified_for({"if-none-match": '"other"'}, r)
        assert not not_modified_for({}, r)
        assert not not_modified_for({"if-none-match": '"abc"'}, resp(404, b"", etag='"abc"'))

    def test_if_modified_since_only_without_if_none_match(self):
        r = resp(200, b"{}", last_modified="Wed, 21 Oct 2015 07:28:00 GMT", etag='"e"')
        assert not_modified_for({"if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT"}, r)
        assert not not_modified_for({"if-modified-since": "Tue, 20 Oct 2015 07:28:00 GMT"}, r)
        assert not not_modified_for({"if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT",
                                     "if-none-match": '"x"'}, r)
        assert not not_modified_for({"if-modified-since": "garbage"}, r)

    def test_304_has_no_body_type_or_length(self):
        r = resp(200, b"{}", etag='"e"', content_type="application/json", link="<x>")
        out = not_modified_response(r)
        assert out.status == 304 and out.body == b""
        assert "content-type" not in out.headers and out.headers["etag"] == '"e"'


# -- hypermedia ---------------------------------------------------------------------------

class TestRewriteHypermedia:
    UP, LOCAL = "https://api.github.com", "http://127.0.0.1:9180"

    def test_url_fields_only(self):
        body = (b'{"url":"https://api.github.com/repos/o/r","issues_url":'
                b'"https://api.github.com/repos/o/r/issues{/number}","html_url":'
                b'"https://github.com/o/r","body":"see \\"url\\":\\"https://api.github.com/x\\"",'
                b'"text":"https://api.github.com/y","user":{"url": "https://api.github.com/users/u"}}')
        out = rewrite_hypermedia(body, self.UP, self.LOCAL)
        assert b'"url":"http://127.0.0.1:9180/repos/o/r"' in out
        assert b'"issues_url":"http://127.0.0.1:9180/repos/o/r/issues{/number}"' in out
        assert b'"html_url":"https://github.com/o/r"' in out
        assert b'"text":"https://api.github.com/y"' in out
        assert b'https://api.github.com/x' in out  # inside a string value: untouched
        assert b'"url": "http://127.0.0.1:9180/users/u"' in out

    def test_links_hrefs(self):
        body = b'{"_links":{"self":{"href":"https://api.github.com/repos/o/r/pulls/1"}}}'
        assert rewrite_hypermedia(body, self.UP, self.LOCAL) == \
            b'{"_links":{"self":{"href":"http://127.0.0.1:9180/repos/o/r/pulls/1"}}}'

    def test_lookalike_hosts_are_not_rewritten(self):
        body = b'{"url":"https://api.github.com.evil.example/x"}'
        assert rewrite_hypermedia(body, self.UP, self.LOCAL) == body


# -- GitHub's two spellings of a repository ------------------------------------------------

class TestRepositoryAliases:
    def test_root(self):
        from p2pcache.policy import repo_root
        assert repo_root("/repos/o/r/issues/1") == "/repos/o/r"
        assert repo_root("/repos/o/r") == "/repos/o/r"
        assert repo_root("/repos/o") is None and repo_root("/users/o") is None

    def test_ids_from_links_and_the_repo_body(self):
        from p2pcache.policy import aliased_paths, repository_ids
        page = Entry("k", "/repos/o/r/issues", 200,
                     {"link": '<https://api.github.com/repositories/42/issues?page=2>; '
                              'rel="next"'}, b"[]", NOW)
        repo = Entry("k2", "/repos/o/r", 200, {}, b'{"id": 7, "name": "r"}', NOW)
        odd = Entry("k3", "/repos/o/r", 200, {}, b'{"id": true}', NOW)
        assert repository_ids("/repos/o/r", [page, repo, odd]) == {"42", "7"}
        assert aliased_paths(["/repos/o/r/issues", "/repos/o/r"], "/repos/o/r", {"42"}) == \
            ["/repositories/42/issues", "/repositories/42"]
        assert aliased_paths(["/user"], "/repos/o/r", {"42"}) == []


# -- refresh-ahead ------------------------------------------------------------------------

class TestRefreshDue:
    TTL = 60.0

    def due(self, asks=2, asked_ago=1.0, age=55.0, ttl=TTL) -> bool:
        return refresh_due(asks, NOW - asked_ago, NOW - age, NOW, ttl)

    def test_hot_entry_within_the_lead_is_due(self):
        assert refresh_lead(self.TTL) == 10.0
        assert self.due(age=50.0) and self.due(age=59.9)

    def test_too_early(self):
        assert not self.due(age=49.9)

    def test_asked_once_is_never_due(self):
        assert not self.due(asks=1) and not self.due(asks=0)
        assert self.due(asks=3)

    def test_not_asked_lately_is_not_due(self):
        assert self.due(asked_ago=300.0)
        assert not self.due(asked_ago=300.1)

    def test_recent_window_grows_with_long_ttls(self):
        assert refresh_due(2, NOW - 1000.0, NOW - 595.0, NOW, 600.0), "2 x ttl = 1200 s"
        assert not refresh_due(2, NOW - 1201.0, NOW - 595.0, NOW, 600.0)

    def test_short_ttl_leads_by_a_quarter(self):
        assert refresh_lead(2.0) == 0.5
        assert not self.due(age=1.49, ttl=2.0) and self.due(age=1.5, ttl=2.0)

    def test_already_stale_hot_entry_is_still_due(self):
        # Refreshing was paused, say: a hot stale entry is better revalidated ahead of
        # the next client than by it.
        assert self.due(age=500.0)


class TestRefreshable:
    def test_needs_a_validator(self):
        assert refreshable(entry(etag='W/"a"'))
        assert refreshable(entry(last_modified="Mon, 01 Jan 2024 00:00:00 GMT"))
        assert not refreshable(entry())

    def test_no_cache_entries_are_not_refreshed(self):
        assert not refreshable(entry(etag='W/"a"', cache_control="no-cache"))


class TestRefreshPause:
    def test_success_and_not_modified_do_not_pause(self):
        assert refresh_pause_until(resp(200), NOW) is None
        assert refresh_pause_until(resp(304, b""), NOW) is None

    def test_gone_only_ends_that_entry(self):
        assert refresh_pause_until(resp(404), NOW) is None

    def test_secondary_limit_waits_its_retry_after(self):
        assert refresh_pause_until(resp(429, retry_after="600"), NOW) == NOW + 600

    def test_any_refusal_or_failure_waits_at_least_a_minute(self):
        assert refresh_pause_until(resp(429, retry_after="5"), NOW) == NOW + REFRESH_PAUSE_S
        assert refresh_pause_until(resp(403), NOW) == NOW + REFRESH_PAUSE_S
        assert refresh_pause_until(resp(502), NOW) == NOW + REFRESH_PAUSE_S

    def test_a_forged_hold_is_capped(self):
        assert refresh_pause_until(resp(429, retry_after="999999999"), NOW) == NOW + 3600


class TestLiveness:
    """A connected server (SILENCE 20 s: pinged after 5 s of quiet)."""

    def test_a_quiet_server_is_pinged_once_at_a_time(self):
        live = Liveness(20, heard=0)
        assert not live.ping_due(4.9)
        assert live.ping_due(5)
        live.pinged(5)
        assert not live.ping_due(30) and not live.dead(24.9)

    def test_a_server_silent_while_a_ping_waits_is_dead(self):
        live = Liveness(20, heard=0)
        live.pinged(5)
        assert live.silent_for(24) == 19 and not live.dead(24)
        assert live.dead(25) and live.silent_for(25) == 20

    def test_any_answer_while_the_ping_waits_keeps_a_slow_server(self):
        live = Liveness(20, heard=0)
        live.pinged(5)
        for now in range(6, 120, 10):  # answers trickle in, the pong never comes
            live.hear(now)
            assert not live.dead(now + 19.9)
        assert live.dead(116 + 20), "once the answers stop too, it is gone"

    def test_a_pong_ends_the_wait_and_counts_as_heard(self):
        live = Liveness(20, heard=0)
        live.pinged(5)
        live.ponged(22)  # slow, but within the silence
        assert live.silent_for(100) == 0 and not live.dead(100)
        assert not live.ping_due(26.9) and live.ping_due(27)

    def test_an_answering_server_costs_no_pings(self):
        live = Liveness(20, heard=0)
        for now in range(1, 100):
            live.hear(now)
            assert not live.ping_due(now + 0.5)

    def test_a_vanished_server_goes_within_a_quarter_more_than_the_silence(self):
        for went_quiet in (0.0, 0.1, 2.5, 4.99):
            live = Liveness(20, heard=went_quiet)
            now = went_quiet
            while not live.dead(now):
                if live.ping_due(now):
                    live.pinged(now)
                now = round(now + 0.5, 2)  # the watcher's tick
            assert now - went_quiet <= 25.5

    def test_an_earlier_hearing_never_moves_the_clock_back(self):
        live = Liveness(20, heard=10)
        live.hear(3)
        assert live.heard == 10


# -- drops and the event floor -------------------------------------------------------------

class TestDropsAndFloor:
    def test_a_dropped_entry_is_revalidated_however_fresh(self):
        fresh = entry(NOW, etag='"e"')
        assert decide(fresh, NOW + 1, 60) is Action.SERVE
        assert decide(fresh, NOW + 1, 60, dropped=True) is Action.REVALIDATE
        assert decide(entry(NOW), NOW + 1, 60, dropped=True) is Action.FETCH  # no validator

    def test_the_floor_compares_githubs_date_with_githubs_time(self):
        from dataclasses import replace

        vouched = replace(entry(NOW, etag='"e"'), vouched=1000.0)
        assert decide(vouched, NOW + 1, 60, floor=999.0) is Action.SERVE
        # The same second may precede the floor; an unknown Date may be anything.
        assert decide(vouched, NOW + 1, 60, floor=1000.0) is Action.REVALIDATE
        assert decide(vouched, NOW + 1, 60, floor=1500.0) is Action.REVALIDATE
        assert decide(replace(vouched, vouched=None), NOW + 1, 60, floor=1.0) \
            is Action.REVALIDATE
        # The local clock (fetched_at, NOW) is far past the floor: it does not count.
        assert decide(vouched, NOW + 1, 60, floor=NOW - 100) is Action.REVALIDATE

    def test_github_date(self):
        from p2pcache.policy import github_date

        assert github_date({"date": "Wed, 01 May 2024 12:00:00 GMT"}) == 1714564800.0
        for bad in ({}, {"date": "yesterday"}, {"date": "x" * 100},
                    {"date": "Wed, 01 May 2024 12:00:00"}):
            assert github_date(bad) is None

    def test_entries_keep_githubs_date_and_when_they_were_asked_for(self):
        answer = resp(200, b"{}", etag='"e"', date="Wed, 01 May 2024 12:00:00 GMT")
        made = entry_from("k", req("/repos/o/r"), answer, NOW, asked_at=NOW - 1)
        assert (made.vouched, made.asked_at) == (1714564800.0, NOW - 1)
        assert "date" not in made.headers
        again = refreshed(made, resp(304, b"", date="Wed, 01 May 2024 12:01:00 GMT"), NOW + 5,
                          asked_at=NOW + 4)
        assert (again.vouched, again.asked_at, again.fetched_at) == (1714564860.0, NOW + 4,
                                                                     NOW + 5)
        peer = ApiResponse(200, {"etag": '"e"'}, b"{}", "peer", vouched=1714564000.0)
        assert entry_from("k", req("/repos/o/r"), peer, NOW).vouched == 1714564000.0


class TestSuspicion:
    """A server whose ask waited out the peer timeout (SILENCE 20 s, asks time out at 5 s)."""

    def test_a_timed_out_server_is_skipped_and_pinged_at_once(self):
        live = Liveness(20, heard=0)
        assert live.usable
        live.suspect(5)
        assert not live.usable
        assert live.ping_due(5), "no waiting for the quiet interval"
        live.pinged(5)
        assert not live.ping_due(6), "one ping at a time"
        assert not live.usable and not live.dead(24.9)

    def test_any_word_after_the_suspicion_clears_it(self):
        for word in ("answer", "pong"):
            live = Liveness(20, heard=0)
            live.suspect(5)
            live.pinged(5)
            if word == "pong":
                live.ponged(9)
            else:
                live.hear(9)
            assert live.usable, word

    def test_a_word_from_before_the_suspicion_does_not_clear_it(self):
        live = Liveness(20, heard=0)
        live.suspect(5)
        live.hear(4)  # read late, sent before the ask timed out
        assert not live.usable

    def test_a_second_timeout_keeps_the_first_moment(self):
        live = Liveness(20, heard=0)
        live.suspect(5)
        live.suspect(8)
        assert live.suspected == 5
        live.hear(6)
        assert live.usable

    def test_a_suspect_that_stays_silent_is_still_dropped_on_time(self):
        live = Liveness(20, heard=0)
        live.suspect(5)
        live.pinged(5)
        assert live.dead(25) and not live.usable

    def test_a_slow_but_alive_server_is_suspect_only_for_a_ping_round_trip(self):
        live = Liveness(20, heard=0)
        live.suspect(5)
        assert live.ping_due(5)
        live.pinged(5)
        live.ponged(5.001)
        assert live.usable and not live.ping_due(6)


def test_what_remains_of_a_window_never_goes_back_up_for_an_answer_that_came_late():
    """Two answers in flight at once: the one GitHub counted first may arrive last."""
    from p2pcache.policy import seen_rate_limits

    def seen(remaining: int, reset: int) -> dict[str, str]:
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-used": str(5000 - remaining), "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core"}

    limits = seen_rate_limits({}, seen(4998, 100))
    limits = seen_rate_limits(limits, seen(4999, 100))
    assert limits["core"].remaining == 4998
    limits = seen_rate_limits(limits, seen(4997, 100))
    assert limits["core"].remaining == 4997
    limits = seen_rate_limits(limits, seen(4999, 200))  # a new window: it starts again
    assert limits["core"].remaining == 4999 and limits["core"].reset == 200
