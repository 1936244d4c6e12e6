"""Request-targets: where a client's (or a peer's) target is parsed, once, into a path that
provably stays on the upstream's host.

The node holds a token, so the URL it sends that token to must be built from the configured
base and a canonical path, never by gluing a client's string onto a URL: `1/x`, `@evil/x`,
`//evil/x` or `.evil.example/x` glued onto a base name another host. Only origin-form
targets are accepted (RFC 9112 §3.2.1): `/` then a path, optionally `?` and a query. The
cache key and the upstream request both come from the Target this module returns, so what
is stored under a key is always what GitHub said about that key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

MAX_TARGET = 8 * 1024
# RFC 3986 pchar (unreserved, sub-delims, ':' '@', and %XX) plus '/' for the path.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# Queries in the wild carry a few characters RFC 3986 wants encoded ('[', ']', '|', '^' ...):
# accept visible ASCII except '#' (a fragment never reaches a server) and '\'.
_QUERY = re.compile(r"[\x21-\x22\x24-\x5b\x5d-\x7e]*")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# GitHub Enterprise clients put the REST API under /api/v3; the node answers it as `/`.
ENTERPRISE_PREFIX = "/api/v3"


class TargetError(ValueError):
    """Not an origin-form target of an API path. str() is the client's 400 message."""


@dataclass(frozen=True)
class Target:
    path: str  # starts with '/', never '//', dot segments resolved, %XX kept as sent
    query: str = ""  # pairs sorted, so ?a=1&b=2 and ?b=2&a=1 are one target
    # "/api/v3" when the client spoke GitHub Enterprise style: not part of the resource,
    # only of the base URL its answers should point back at.
    prefix: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


def parse(raw: str | bytes) -> Target:
    """The canonical Target of a request-target, or TargetError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise TargetError("request-target is not ASCII (percent-encode it)") from None
    if len(raw) > MAX_TARGET:
        raise TargetError(f"request-target longer than {MAX_TARGET} bytes")
    if not raw.startswith("/") or raw.startswith("//"):
        raise TargetError("request-target must be a path starting with a single '/' "
                          "(origin-form), e.g. /repos/OWNER/REPO")
    path, _, query = raw.partition("?")
    if not _PATH.fullmatch(path):
        raise TargetError("request-target path has characters that must be percent-encoded")
    if not _QUERY.fullmatch(query) or _PERCENT.search(query):
        raise TargetError("request-target query has characters that must be percent-encoded")
    path = _resolve_dots(path)
    prefix = ""
    if path == ENTERPRISE_PREFIX or path.startswith(ENTERPRISE_PREFIX + "/"):
        path, prefix = path[len(ENTERPRISE_PREFIX):] or "/", ENTERPRISE_PREFIX
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return Target(path, urlencode(pairs), prefix)


def _resolve_dots(path: str) -> str:
    """RFC 3986 §5.2.4 on the segments ('.', '..', and their %2e spellings): a client's
    `/repos/a/../b` is GitHub's `/repos/b`, so it is keyed and fetched as `/repos/b`.
    It never climbs above the root."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        dots = segment.lower().replace("%2e", ".")
        last = i == len(segments) - 1
        if dots == ".":
            if last:
                out.append("")
        elif dots == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    resolved = "/" + "/".join(out)
    # '//' inside a path is harmless on the wire (the host is fixed), but two spellings of
    # one path would be two entries; and a leading '//' must never reach a URL parser.
    return re.sub("/{2,}", "/", resolved)


# Where clients POST GraphQL: api.github.com/graphql, and a GitHub Enterprise Server's
# /api/graphql (its REST API is /api/v3). Both go to the upstream's GraphQL endpoint.
GRAPHQL_PATHS = ("/graphql", "/api/graphql")


@dataclass(frozen=True)
class Base:
    """The upstream's base URL, parsed once: https://api.github.com or https://HOST/api/v3."""

    scheme: str
    netloc: str  # host[:port], as configured
    path: str  # "" or "/api/v3" (no trailing '/')

    @classmethod
    def parse(cls, url: str) -> Base:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {url!r}")
        parts.port  # raises ValueError on a bad port
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"a base URL has no query, fragment or credentials: {url!r}")
        return cls(parts.scheme, parts.netloc, parts.path.rstrip("/"))

    @property
    def host(self) -> str:
        return urlsplit(f"{self.scheme}://{self.netloc}").hostname or ""

    @property
    def authorities(self) -> frozenset[str]:
        """The Host values that name this base: `api.github.com` and `api.github.com:443`."""
        parts = urlsplit(f"{self.scheme}://{self.netloc}")
        default = 443 if self.scheme == "https" else 80
        host = self.netloc.rsplit(":", 1)[0] if parts.port else self.netloc
        port = parts.port or default
        names = {f"{host}:{port}".lower()}
        if port == default:
            names.add(host.lower())
        return frozenset(names)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"

    def graphql_url(self) -> str:
        """GitHub's GraphQL endpoint: /graphql beside api.github.com's REST API, /api/graphql
        beside a GitHub Enterprise Server's /api/v3."""
        root = self.path.removesuffix("/v3") if self.path.endswith("/api/v3") else self.path
        return f"{self.scheme}://{self.netloc}{root}/graphql"

    def url(self, target: Target) -> str:
        """The upstream URL of a target. The authority is the base's own: a Target's path
        starts with exactly one '/', so nothing after the netloc can be read as a host."""
        url = f"{self.scheme}://{self.netloc}{self.path}{target}"
        parts = urlsplit(url)
        if parts.netloc != self.netloc or parts.scheme != self.scheme:  # cannot happen
            raise TargetError(f"target {target} would leave {self.netloc}")
        return url
