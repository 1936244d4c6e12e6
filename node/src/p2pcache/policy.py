"""Pure cache decisions: keys, freshness, revalidation, what to keep, what a write changes;
and when a connected server counts as gone.

No I/O and no clock of its own: every function takes what it needs, so each decision is
unit-tested without sockets (the hishel / ghproxy way).
"""

from __future__ import annotations

import enum
import functools
import json
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from .models import ApiRequest, ApiResponse, Entry
from .targets import Target

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CACHEABLE_STATUSES = frozenset({200})
# Response headers that describe the transfer or the moment, not the resource: never stored
# (the node re-frames the body; dates and budgets belong to one answer). The request id is
# kept: a hit shows the id of the GitHub answer that last vouched for its body.
TRANSFER_HEADERS = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length",
    "te", "trailer", "upgrade", "proxy-connection", "proxy-authenticate", "set-cookie",
    "date", "age", "strict-transport-security"})
# Response headers about the credential that asked, not the resource: GitHub sends these with
# every answer to a token (its OAuth scopes and app, when it expires); an answer shows its
# own caller's (for_caller), as GitHub would. X-GitHub-SSO too is about the token, but about
# one answer (this organization needs SSO; this list left some out): never replayed.
TOKEN_FACTS = ("x-oauth-scopes", "x-oauth-client-id", "github-authentication-token-expiration")
CREDENTIAL_HEADERS = frozenset({*TOKEN_FACTS, "x-github-sso"})  # never stored with an entry
MAX_CREDENTIAL_FIELD = 1024
# What the endpoint accepts: the resource's, kept with it, but GitHub shows it only beside a
# token's X-OAuth-Scopes.
ACCEPTED_SCOPES = "x-accepted-oauth-scopes"
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used",
                      "x-ratelimit-reset", "x-ratelimit-resource")
# Request headers that change what GitHub answers, and so belong in the key.
VARY_HEADERS = ("accept", "x-github-api-version")
DEFAULT_ACCEPT = "application/vnd.github+json"
DEFAULT_API_VERSION = "2022-11-28"  # what GitHub answers when no X-GitHub-Api-Version is sent
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: without retry-after, wait at least a minute
MAX_HOLD_S = 3600.0  # no upstream answer may stop this node asking GitHub for longer
# Refresh-ahead (refresh.py): a hot entry is one asked at least twice, the last time within
# REFRESH_RECENT_MIN_S (or two freshness windows, if longer); it is revalidated up to
# REFRESH_LEAD_MAX_S (or a quarter of the window, if shorter) before it goes stale.
REFRESH_MIN_ASKS = 2
REFRESH_RECENT_MIN_S = 300.0
REFRESH_LEAD_MAX_S = 10.0
REFRESH_PAUSE_S = 60.0  # after a refusal or a failure, refresh nothing for at least this
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() accepts '²'


class Action(enum.Enum):
    SERVE = "serve"  # fresh entry: answer from it
    REVALIDATE = "revalidate"  # stale entry with a validator: ask with If-None-Match
    FETCH = "fetch"  # nothing usable: plain GET


def normalize_accept(accept: str) -> str:
    """GitHub's names for one representation: `vnd.github.v3` is `vnd.github`, and
    `*/*` or `application/json` (or nothing) is the default."""
    ranges = [r.strip() for r in accept.lower().split(",") if r.strip()]
    ranges = [r.replace("application/vnd.github.v3", "application/vnd.github", 1) for r in ranges]
    ranges = [DEFAULT_ACCEPT if r in ("*/*", "application/json", "application/vnd.github")
              else r for r in ranges]
    return ", ".join(dict.fromkeys(ranges)) or DEFAULT_ACCEPT


def cache_key(request: ApiRequest) -> str:
    """HEAD shares GET's entry; Accept and API version select different representations
    (no version and GitHub's default version are one). A GraphQL query carries its own."""
    if request.keyed is not None:
        return request.keyed.key
    accept = normalize_accept(request.headers.get("accept", ""))
    version = request.headers.get("x-github-api-version", "").strip()
    key = f"GET {request.target} accept={accept}"
    return key + (f" version={version}" if version and version != DEFAULT_API_VERSION else "")


def is_cacheable_request(request: ApiRequest) -> bool:
    return request.method in CACHEABLE_METHODS and request.target.path != "/graphql"


def _cache_control(headers: dict[str, str]) -> set[str]:
    return {d.strip().split("=", 1)[0] for d in headers.get("cache-control", "").lower().split(",")}


def is_cacheable_response(response: ApiResponse, max_entry_bytes: int) -> bool:
    return (response.status in CACHEABLE_STATUSES
            and "no-store" not in _cache_control(response.headers)
            and len(response.body) <= max_entry_bytes)


def decide(entry: Entry | None, now: float, ttl: float, *, dropped: bool = False,
           floor: float | None = None) -> Action:
    """What to do with an entry: serve it, revalidate it, or fetch afresh. `dropped`: a
    change the fleet knows of may postdate it (invalidation.Drops); `floor`: GitHub's
    time (--not-before, or a peer's not_before) it must have been vouched for after."""
    if entry is None:
        return Action.FETCH
    # no-cache (GitHub sends it on /rate_limit): store, but ask before every use.
    if now - entry.fetched_at < ttl and "no-cache" not in _cache_control(entry.headers) \
            and not dropped and not below_floor(entry.vouched, floor):
        return Action.SERVE
    return Action.REVALIDATE if entry.etag or entry.headers.get("last-modified") else Action.FETCH


def below_floor(vouched: float | None, floor: float | None) -> bool:
    """Whether what GitHub vouched for at `vouched` (its Date, whole seconds) may predate
    `floor`: an answer dated the floor's own second may precede it, and one without a
    Date is taken to."""
    return floor is not None and (vouched is None or vouched <= floor)


def github_date(headers: dict[str, str]) -> float | None:
    """GitHub's Date header as Unix seconds (its clock), or None."""
    value = headers.get("date")
    if not value or len(value) > 64:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    stamp = when.timestamp()
    return stamp if stamp > 0 else None


def refresh_lead(ttl: float) -> float:
    """How long before an entry goes stale refresh-ahead revalidates it."""
    return min(REFRESH_LEAD_MAX_S, ttl / 4)


def refresh_due(asks: int, last_asked: float, fetched_at: float, now: float,
                ttl: float) -> bool:
    """Whether to revalidate an entry now, in the background: it is hot (asked more than
    once, recently) and its freshness ends within the lead. A refresh never serves
    anything itself, so no answer gets older than the freshness window allows."""
    return (asks >= REFRESH_MIN_ASKS
            and recently_asked(last_asked, now, ttl)
            and now - fetched_at >= ttl - refresh_lead(ttl))


def recently_asked(last_asked: float, now: float, ttl: float) -> bool:
    """Whether a key is still hot: asked within REFRESH_RECENT_MIN_S (or two freshness
    windows). Refresh-ahead keeps such keys fresh; warm start offers them to new runners."""
    return now - last_asked <= max(REFRESH_RECENT_MIN_S, 2 * ttl)


def refreshable(entry: Entry) -> bool:
    """Only an entry with a validator, so that its refresh is free unless it changed; and
    not one marked no-cache (revalidated on every use anyway)."""
    return bool(conditional_headers(entry)) and "no-cache" not in _cache_control(entry.headers)


def refresh_pause_until(response: ApiResponse, now: float) -> float | None:
    """After a refresh that did not answer 200 or 304, until when refresh-ahead waits: any
    sign that GitHub wants fewer requests (403, 429: primary or secondary limits) or is in
    trouble (5xx). None: nothing to wait for (a 404, say, only ends that entry's refreshes)."""
    if response.status in (403, 429) or response.status >= 500:
        return max(blocked_until(response, now) or 0.0, now + REFRESH_PAUSE_S)
    return None


def conditional_headers(entry: Entry | None) -> dict[str, str]:
    if entry is None:
        return {}
    if entry.etag:
        return {"if-none-match": entry.etag}
    if "last-modified" in entry.headers:
        return {"if-modified-since": entry.headers["last-modified"]}
    return {}


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """Every header that describes the resource is replayed with it (ETag, Link,
    Cache-Control, Vary, X-GitHub-Media-Type, Server ...), and its rate-limit resource,
    so a hit shows the budget of the right bucket."""
    stored = {k: v for k, v in headers.items() if k not in TRANSFER_HEADERS
              and k not in RATE_LIMIT_HEADERS and k not in CREDENTIAL_HEADERS}
    if "x-ratelimit-resource" in headers:
        stored["x-ratelimit-resource"] = headers["x-ratelimit-resource"]
    return stored


def credential_headers(headers: dict[str, str]) -> dict[str, str]:
    """What an answer to a caller's own request says about its credential, kept for each
    caller: so within a bound (GitHub's scopes run to a few hundred bytes; a field may be
    16 KiB where it enters, and the node remembers 10,000 callers)."""
    return {k: headers[k] for k in TOKEN_FACTS
            if k in headers and len(headers[k]) <= MAX_CREDENTIAL_FIELD}


def for_caller(headers: dict[str, str], credential: dict[str, str], authenticated: bool,
               own: bool = False) -> dict[str, str]:
    """An answer's headers as GitHub sends them to this caller, whose own answers carry
    `credential` (credential_headers): its own scopes and expiry, never those of the token
    that fetched the entry; and GitHub's `private` answer to a token, `public` to anonymous.
    GitHub's answer to the caller's `own` request keeps its X-GitHub-SSO (gh shows its URL)."""
    out = {k: v for k, v in headers.items()
           if k not in (TOKEN_FACTS if own else CREDENTIAL_HEADERS)}
    if "x-oauth-scopes" not in credential:
        out.pop(ACCEPTED_SCOPES, None)
    out.update(credential)
    scope, comma, rest = out.get("cache-control", "").partition(",")
    if scope.strip() in ("public", "private"):
        out["cache-control"] = ("private" if authenticated else "public") + comma + rest
    return out


def moment_headers(headers: dict[str, str]) -> dict[str, str]:
    """What belongs to one GitHub answer, not to the resource: shown with that answer only."""
    return {k: headers[k] for k in ("date", "x-github-request-id") if k in headers}


def entry_from(key: str, request: ApiRequest, response: ApiResponse, now: float,
               asked_at: float | None = None) -> Entry:
    """An entry of GitHub's answer (or a peer's, whose `vouched` it keeps); `asked_at`:
    when this node began asking for it."""
    path = request.keyed.path if request.keyed is not None else request.target.path
    vouched = github_date(response.headers) or response.vouched
    return Entry(key=key, path=path, status=response.status,
                 headers=stored_headers(response.headers), body=response.body, fetched_at=now,
                 vouched=vouched, asked_at=asked_at)


def refreshed(entry: Entry, not_modified: ApiResponse, now: float,
              asked_at: float | None = None) -> Entry:
    """A 304 vouches for the entry again; it may carry updated validators (and GitHub's
    Date, or a peer's `vouched`)."""
    headers = dict(entry.headers)
    headers.update(stored_headers(not_modified.headers))
    vouched = github_date(not_modified.headers) or not_modified.vouched or entry.vouched
    return Entry(entry.key, entry.path, entry.status, headers, entry.body, now,
                 vouched=vouched, asked_at=asked_at)


def invalidated_paths(target: Target) -> list[str]:
    """Paths whose entries a write to `target` changes: itself and its parent collection.

    POST /repos/o/r/issues adds to that list; PATCH /repos/o/r/issues/1 changes the issue
    and what the list shows. Entries under the path (sub-resources) are prefix-matched.
    """
    path = target.path.rstrip("/") or "/"
    parent = path.rsplit("/", 1)[0]
    return [path] + ([parent] if parent else [])


_REPO_ROOT = re.compile(r"/repos/[^/]+/[^/]+")
_REPOSITORIES_ID = re.compile(r"/repositories/([0-9]{1,20})(?=[/?>]|$)")


def repo_root(path: str) -> str | None:
    """`/repos/OWNER/REPO` of a path under it, else None."""
    match = _REPO_ROOT.match(path)
    return match.group(0) if match and path[match.end():match.end() + 1] in ("", "/") else None


def repository_ids(root: str, entries: list[Entry]) -> set[str]:
    """The numeric ids GitHub uses for a repository, learned from what is cached under its
    `/repos/OWNER/REPO` root: its own JSON `id`, and the `/repositories/<id>/...` form that
    GitHub's Link headers name for list pages."""
    ids: set[str] = set()
    for entry in entries:
        ids.update(_REPOSITORIES_ID.findall(entry.headers.get("link", "")))
        if entry.path == root and b'"id"' in entry.body:
            try:
                value = json.loads(entry.body).get("id")
            except (ValueError, AttributeError, RecursionError):
                continue
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                ids.add(str(value))
    return ids


def aliased_paths(paths: list[str], root: str, ids: set[str]) -> list[str]:
    """The same paths in GitHub's `/repositories/<id>` spelling, so a write through
    `/repos/o/r/issues` also drops the list pages cached under `/repositories/<id>/issues`."""
    return [f"/repositories/{i}{p[len(root):]}" for p in paths if repo_root(p) == root
            for i in sorted(ids)]


def is_rate_limited(response: ApiResponse) -> bool:
    if response.status == 429:
        return True
    if response.status != 403:
        return False
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    return b"rate limit" in response.body[:512].lower()


def blocked_until(response: ApiResponse, now: float) -> float | None:
    """When GitHub says stop, until when (unix seconds); None if it did not say stop."""
    if not is_rate_limited(response):
        return None
    retry_after = response.headers.get("retry-after", "").strip()
    if _DIGITS.fullmatch(retry_after):
        until = now + int(retry_after)
    elif response.headers.get("x-ratelimit-remaining") == "0" \
            and _DIGITS.fullmatch(reset := response.headers.get("x-ratelimit-reset", "").strip()):
        until = max(float(reset), now + 1)
    else:
        until = now + SECONDARY_LIMIT_WAIT_S
    # Capped: a forged or mistaken answer must not stop the node asking for years.
    return min(until, now + MAX_HOLD_S)


def serve_stale_instead(response: ApiResponse) -> bool:
    """Upstream answers that a stale entry beats: server errors and rate limits."""
    return response.status >= 500 or is_rate_limited(response)


_LINK_URL = re.compile(r"<([^>]*)>")


def rewrite_links(link: str, upstream_base: str, local_base: str) -> str:
    """Point Link URLs at the base the client used, so following `next` stays cached."""
    upstream_base = upstream_base.rstrip("/")
    local_base = local_base.rstrip("/")

    def swap(match: re.Match[str]) -> str:
        url = match.group(1)
        if url.startswith(upstream_base + "/") or url == upstream_base:
            url = local_base + url[len(upstream_base):]
        return f"<{url}>"

    return _LINK_URL.sub(swap, link)


def rewrite_hypermedia(body: bytes, upstream_base: str, local_base: str) -> bytes:
    """Point the `url`, `*_url` and `href` (in `_links`) values of a JSON body at the base
    the client used, so clients that follow them (PyGithub's lazy objects) stay on the
    cache. Only those values change; every other byte stays GitHub's (a URL quoted in an
    issue's text too). Keys are matched as JSON writes them, `"url":"` or `"url": "`
    (GitHub's pretty form); a quote inside a string is escaped, so those bytes are keys."""
    upstream = upstream_base.rstrip("/").encode()
    if upstream not in body:
        return body
    local = local_base.rstrip("/").encode()
    return _hypermedia_pattern(upstream).sub(local.replace(b"\\", b"\\\\"), body)


@functools.lru_cache(maxsize=16)
def _hypermedia_pattern(upstream: bytes) -> re.Pattern[bytes]:
    # The upstream literal comes first so the scan is the regex engine's fast literal
    # search; what precedes it is checked by fixed-width lookbehinds (a pretty 700 KB list
    # page: 2.4 ms, against 7.6 ms for a pattern that starts at every quote).
    behind = b"|".join(b"(?<=" + re.escape(key + sep + upstream) + b")"
                       for key in (b'_url"', b'"url"', b'"href"') for sep in (b':"', b': "'))
    return re.compile(re.escape(upstream) + b"(?:" + behind + b')(?=[/"{?])')


def not_modified_for(request_headers: dict[str, str], response: ApiResponse) -> bool:
    """Whether the client's own conditional matches this answer (RFC 9110 §13.1):
    If-None-Match by weak comparison; If-Modified-Since only without If-None-Match."""
    if response.status != 200:
        return False
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        etag = response.headers.get("etag")
        if etag is None:
            return False
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag.strip().removeprefix("W/") in tags
    since, modified = request_headers.get("if-modified-since"), response.headers.get(
        "last-modified")
    if since is None or modified is None:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False


def not_modified_response(response: ApiResponse) -> ApiResponse:
    """The 304 for a matching client conditional: the answer's headers, no body and no
    Content-Type or Content-Length (RFC 9110 §15.4.5)."""
    headers = {k: v for k, v in response.headers.items()
               if k not in ("content-type", "content-length")}
    return ApiResponse(304, headers, b"", response.source, response.stale, response.fetched_at)


def _number(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if _DIGITS.fullmatch(value) else None


@dataclass(frozen=True)
class RateLimit:
    """One of GitHub's rate-limit buckets (core, search, graphql ...), as last seen."""

    limit: int | None = None
    remaining: int | None = None
    used: int | None = None
    reset: int | None = None
    resource: str = "core"

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> RateLimit | None:
        if _number(headers.get("x-ratelimit-remaining")) is None:
            return None
        return cls(_number(headers.get("x-ratelimit-limit")),
                   _number(headers.get("x-ratelimit-remaining")),
                   _number(headers.get("x-ratelimit-used")),
                   _number(headers.get("x-ratelimit-reset")),
                   resource_of(headers))

    def headers(self) -> dict[str, str]:
        pairs = {"x-ratelimit-limit": self.limit, "x-ratelimit-remaining": self.remaining,
                 "x-ratelimit-used": self.used, "x-ratelimit-reset": self.reset,
                 "x-ratelimit-resource": self.resource}
        return {k: str(v) for k, v in pairs.items() if v is not None}

    def as_dict(self) -> dict[str, int | None]:
        return {"limit": self.limit, "remaining": self.remaining, "used": self.used,
                "reset": self.reset}


def resource_of(headers: dict[str, str]) -> str:
    resource = headers.get("x-ratelimit-resource", "").strip().lower()
    return resource if re.fullmatch(r"[a-z0-9_]{1,64}", resource) else "core"


def seen_rate_limits(limits: dict[str, RateLimit], headers: dict[str, str],
                     max_buckets: int = 32) -> dict[str, RateLimit]:
    """The picture after an answer: each X-RateLimit-Resource is a bucket of its own, so a
    search or GraphQL answer never overwrites the REST `core` budget. Within one window
    (the same reset) what remains only goes down: of answers in flight at once, one counted
    earlier may arrive later, and does not raise it back."""
    seen = RateLimit.from_headers(headers)
    if seen is None or (seen.resource not in limits and len(limits) >= max_buckets):
        return limits
    held = limits.get(seen.resource)
    if held is not None and held.reset is not None and held.reset == seen.reset \
            and held.remaining is not None and seen.remaining is not None \
            and seen.remaining > held.remaining:
        return limits
    return {**limits, seen.resource: seen}


@dataclass
class Liveness:
    """Whether a connected server still answers. Anything it sends counts, a cache answer as
    much as a pong: a server slowed by load whose answers still flow is never dropped, and
    one that is answering costs no pings. A server quiet for a quarter of `silence` is
    pinged; one that then stays silent for `silence` while the ping waits is dead. So a
    server that stops answering altogether is dropped within 1.25 x `silence` seconds.

    Long before that, a server that let an ask wait out the peer timeout is *suspect*: asks
    skip it (the next server, or GitHub) and it is pinged at once; its next word, a late
    answer or the pong, clears it. So a job waits on a silent server once, not per call."""

    silence: float
    heard: float  # when the server last sent anything
    asked: float | None = field(default=None)  # when the ping that waits was sent
    suspected: float | None = field(default=None)  # when an ask to it timed out, unheard since

    @property
    def interval(self) -> float:
        return self.silence / 4

    @property
    def usable(self) -> bool:
        """Worth asking: not suspect."""
        return self.suspected is None

    def hear(self, now: float) -> None:
        self.heard = max(self.heard, now)
        if self.suspected is not None and now >= self.suspected:
            self.suspected = None

    def suspect(self, now: float) -> None:
        """An ask waited out the peer timeout without a word from the server."""
        if self.suspected is None:
            self.suspected = now

    def ping_due(self, now: float) -> bool:
        return self.asked is None and (self.suspected is not None
                                       or now - self.heard >= self.interval)

    def pinged(self, now: float) -> None:
        self.asked = now

    def ponged(self, now: float) -> None:
        self.asked = None
        self.hear(now)

    def silent_for(self, now: float) -> float:
        """Seconds without a word from the server while a ping waits (0 if none waits)."""
        return 0.0 if self.asked is None else now - max(self.asked, self.heard)

    def dead(self, now: float) -> bool:
        return self.silent_for(now) >= self.silence
