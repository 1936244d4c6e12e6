"""Pure cache decisions: keys, freshness, revalidation, what to keep, what a write changes.

No I/O and no clock of its own: every function takes what it needs, so each decision is
unit-tested without sockets (the hishel / ghproxy way).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from .models import ApiRequest, ApiResponse, Entry

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
CACHEABLE_STATUSES = frozenset({200})
# Headers that describe the resource, so they are stored and replayed with it.
STORED_HEADERS = ("content-type", "etag", "last-modified", "link", "x-github-media-type",
                  "x-oauth-scopes", "x-accepted-oauth-scopes", "x-github-api-version-selected")
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used",
                      "x-ratelimit-reset", "x-ratelimit-resource")
# Request headers that change what GitHub answers, and so belong in the key.
VARY_HEADERS = ("accept", "x-github-api-version")
DEFAULT_ACCEPT = "application/vnd.github+json"
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: without retry-after, wait at least a minute


class Action(enum.Enum):
    SERVE = "serve"  # fresh entry: answer from it
    REVALIDATE = "revalidate"  # stale entry with a validator: ask with If-None-Match
    FETCH = "fetch"  # nothing usable: plain GET


def split_target(target: str) -> tuple[str, str]:
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def normalize_target(target: str) -> str:
    """Sort the query so ?a=1&b=2 and ?b=2&a=1 share an entry."""
    path, query = split_target(target)
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return path + ("?" + urlencode(pairs) if pairs else "")


def cache_key(request: ApiRequest) -> str:
    """HEAD shares GET's entry; Accept and API version select different representations."""
    accept = request.headers.get("accept", "").strip().lower() or DEFAULT_ACCEPT
    if accept in ("*/*", "application/json"):
        accept = DEFAULT_ACCEPT
    version = request.headers.get("x-github-api-version", "").strip()
    key = f"GET {normalize_target(request.target)} accept={accept}"
    return key + (f" version={version}" if version else "")


def is_cacheable_request(request: ApiRequest) -> bool:
    path, _ = split_target(request.target)
    return request.method in CACHEABLE_METHODS and path != "/graphql"


def is_cacheable_response(response: ApiResponse, max_entry_bytes: int) -> bool:
    cache_control = response.headers.get("cache-control", "").lower()
    return (response.status in CACHEABLE_STATUSES and "no-store" not in cache_control
            and len(response.body) <= max_entry_bytes)


def decide(entry: Entry | None, now: float, ttl: float) -> Action:
    if entry is None:
        return Action.FETCH
    if now - entry.fetched_at < ttl:
        return Action.SERVE
    return Action.REVALIDATE if entry.etag or entry.headers.get("last-modified") else Action.FETCH


def conditional_headers(entry: Entry | None) -> dict[str, str]:
    if entry is None:
        return {}
    if entry.etag:
        return {"if-none-match": entry.etag}
    if "last-modified" in entry.headers:
        return {"if-modified-since": entry.headers["last-modified"]}
    return {}


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in STORED_HEADERS}


def entry_from(key: str, request: ApiRequest, response: ApiResponse, now: float) -> Entry:
    path, _ = split_target(request.target)
    return Entry(key=key, path=path, status=response.status,
                 headers=stored_headers(response.headers), body=response.body, fetched_at=now)


def refreshed(entry: Entry, not_modified: ApiResponse, now: float) -> Entry:
    """A 304 vouches for the entry again; it may carry updated validators."""
    headers = dict(entry.headers)
    headers.update(stored_headers(not_modified.headers))
    return Entry(entry.key, entry.path, entry.status, headers, entry.body, now)


def invalidated_paths(target: str) -> list[str]:
    """Paths whose entries a write to `target` changes: itself and its parent collection.

    POST /repos/o/r/issues adds to that list; PATCH /repos/o/r/issues/1 changes the issue
    and what the list shows. Entries under the path (sub-resources) are prefix-matched.
    """
    path, _ = split_target(target)
    path = path.rstrip("/") or "/"
    parent = path.rsplit("/", 1)[0]
    return [path] + ([parent] if parent else [])


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
    retry_after = response.headers.get("retry-after", "")
    if retry_after.isdigit():
        return now + int(retry_after)
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(float(reset), now + 1)
    return now + SECONDARY_LIMIT_WAIT_S


def serve_stale_instead(response: ApiResponse) -> bool:
    """Upstream answers that a stale entry beats: server errors and rate limits."""
    return response.status >= 500 or is_rate_limited(response)


_LINK_URL = re.compile(r"<([^>]*)>")


def rewrite_links(link: str, upstream_base: str, local_base: str) -> str:
    """Point Link URLs at this node so following `next` stays cached."""
    upstream_base = upstream_base.rstrip("/")
    local_base = local_base.rstrip("/")

    def swap(match: re.Match[str]) -> str:
        url = match.group(1)
        if url.startswith(upstream_base + "/") or url == upstream_base:
            url = local_base + url[len(upstream_base):]
        return f"<{url}>"

    return _LINK_URL.sub(swap, link)


@dataclass(frozen=True)
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    used: int | None = None
    reset: int | None = None
    resource: str | None = None

    @classmethod
    def from_headers(cls, headers: dict[str, str], previous: RateLimit) -> RateLimit:
        """Only core answers update the core picture; a 304 carries them too."""
        if "x-ratelimit-remaining" not in headers:
            return previous

        def num(name: str) -> int | None:
            value = headers.get(name, "")
            return int(value) if value.isdigit() else None

        return cls(num("x-ratelimit-limit"), num("x-ratelimit-remaining"),
                   num("x-ratelimit-used"), num("x-ratelimit-reset"),
                   headers.get("x-ratelimit-resource"))

    def headers(self) -> dict[str, str]:
        pairs = {"x-ratelimit-limit": self.limit, "x-ratelimit-remaining": self.remaining,
                 "x-ratelimit-used": self.used, "x-ratelimit-reset": self.reset,
                 "x-ratelimit-resource": self.resource}
        return {k: str(v) for k, v in pairs.items() if v is not None}
