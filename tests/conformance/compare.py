"""What the conformance suite compares, and how: pure functions of two observations.

An observation is what one client saw for one operation: ``{"status": int, "body": ...,
"headers": {lowercase name: value}}`` (or ``{"error": "..."}`` when the client failed).
Bodies are what the client parsed; URLs in them and in ``Link`` are compared relative to
the base URL that client was given, so "names the fake" and "names the node" both read
``{BASE}``, and a node that leaks its upstream's address shows as a difference.
"""

from __future__ import annotations

import json
import re

# The operations, in the order every client runs them (write_read relies on paginate
# having cached every page first, so it also checks that a write reaches those pages).
OPS = ("get_repo", "paginate", "lazy_load", "conditional", "write_read", "head",
       "not_found", "anonymous_write", "rate_limit", "whoami", "private_repo", "bad_token")

# Headers whose values must be the same through the node as straight from GitHub.
SAME_VALUE = ("content-type", "x-github-media-type", "x-github-api-version-selected",
              "x-ratelimit-limit", "x-ratelimit-resource", "cache-control", "vary", "server",
              "link", "x-oauth-scopes", "x-accepted-oauth-scopes",
              "github-authentication-token-expiration")
# Headers that must be there (or not) in both; their values legitimately differ.
SAME_PRESENCE = ("etag", "last-modified", "x-github-request-id", "date", "content-length",
                 "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used", "location")

_REPO_ID = re.compile(r"/repositories/\d+/")


def normalize(value: object, base: str) -> object:
    """Replace the client's base URL by {BASE} in every string, recursively."""
    if isinstance(value, str):
        return value.replace(base.rstrip("/"), "{BASE}")
    if isinstance(value, list):
        return [normalize(v, base) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v, base) for k, v in value.items()}
    return value


def differences(direct: dict, through: dict, direct_base: str, node_base: str) -> list[str]:
    """Every way the node's answer differs from GitHub's (the fake's), one line each."""
    if "error" in direct:
        return [f"the client failed straight against the fake: {direct['error']}"]
    if "error" in through:
        return [f"the client failed through the node: {through['error']}"]
    out = []
    if direct.get("status") != through.get("status"):
        out.append(f"status: GitHub {direct.get('status')}, node {through.get('status')}")
    d_body = normalize(direct.get("body"), direct_base)
    n_body = normalize(through.get("body"), node_base)
    if d_body != n_body:
        out.append("body: " + _first_difference(d_body, n_body))
    d_h = {k: normalize(v, direct_base) for k, v in (direct.get("headers") or {}).items()}
    n_h = {k: normalize(v, node_base) for k, v in (through.get("headers") or {}).items()}
    for name in SAME_VALUE:
        if d_h.get(name) != n_h.get(name):
            out.append(f"header {name}: GitHub {d_h.get(name)!r}, node {n_h.get(name)!r}")
    for name in SAME_PRESENCE:
        if (name in d_h) != (name in n_h):
            out.append(f"header {name}: GitHub {'has' if name in d_h else 'lacks'} it,"
                       f" node {'has' if name in n_h else 'lacks'} it")
    return out


def _first_difference(a: object, b: object, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                return _first_difference(a.get(key, _MISSING), b.get(key, _MISSING),
                                         f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where or '(whole)'}: GitHub {_short(a)}, node {_short(b)}"


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _short(value: object, limit: int = 160) -> str:
    text = repr(value) if isinstance(value, _Missing) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def expectation_failures(op: str, seen: dict) -> list[str]:
    """What GitHub's behaviour promises for an operation, checked on one observation
    (straight or through the node): the comparison alone would pass a node that is
    wrong in the same way as the client's reading of it."""
    if "error" in seen:
        return [seen["error"]]
    status, body = seen.get("status"), seen.get("body") or {}
    want = {"get_repo": 200, "paginate": 200, "lazy_load": 200, "conditional": 304,
            "write_read": 201, "head": 200, "not_found": 404, "anonymous_write": 401,
            "rate_limit": 200, "whoami": 200, "private_repo": 404, "bad_token": 401}[op]
    out = [] if status == want else [f"status {status}, GitHub answers {want}"]
    if op == "paginate" and sorted(body.get("numbers", [])) != list(range(1, 96)):
        out.append(f"paging did not visit issues 1..95 once each: {_short(body.get('numbers'))}")
    if op == "lazy_load" and (body.get("login"), "followers" in body) != ("octo", True):
        out.append(f"lazy-loaded user is {_short(body)}")
    if op == "write_read":
        if body.get("read_back") != body.get("created", {}).get("title"):
            out.append(f"read back {body.get('read_back')!r}, wrote {body.get('created')}")
        listed = body.get("listed", [])
        if sorted(listed) != list(range(1, 97)):
            out.append("after the write, paging to the last page does not show issues 1..96"
                       f" once each (stale pages?): {len(listed)} items, {len(set(listed))}"
                       " distinct")
    if op == "whoami" and body.get("login") != "conformance-client":
        out.append(f"/user says {body.get('login')!r}: not the client's own identity")
    if op == "get_repo" and body.get("permissions", {}).get("admin"):
        out.append("the repository object shows the fleet's permissions, not the client's")
    if op == "rate_limit":
        if body.get("core_used_delta") != 1:
            out.append(f"/rate_limit core.used moved by {body.get('core_used_delta')} over one"
                       " uncached read, GitHub's moves by 1 (cached /rate_limit?)")
        if body.get("search_resource") != "search" or body.get("core_after") != ["core", "5000"]:
            out.append(f"X-RateLimit-Resource/Limit: search answer {body.get('search_resource')},"
                       f" next core answer {body.get('core_after')}")
    return out
