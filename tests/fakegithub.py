#!/usr/bin/env python3
"""A faithful, dependency-free fake of the GitHub REST API.

The real api.github.com is unreachable from the test and benchmark machines,
so this server is the only stand-in the p2pcache node ever talks to.  It is
worth being strict about the parts of GitHub's behaviour a cache depends on:

* every successful representation carries a weak ``ETag`` derived from the
  body, plus ``Last-Modified``, so conditional requests can be exercised;
* a ``304 Not Modified`` does not spend primary rate limit, everything else
  that reaches a resource does -- which is the whole economic point of the
  cache and what the benchmarks measure;
* rate-limit budgets are per credential (anonymous callers per client IP),
  with GitHub's headers and error bodies, so clients can tell primary from
  secondary limits the same way they would against the real thing;
* GitHub's secondary limits are enforced per credential: past ``max_concurrent``
  requests in flight (GitHub: 100) the next one is refused at once with 403 and
  GitHub's message (no ``Retry-After``: "wait at least a minute"), and past
  ``endpoint_points`` points a minute on one REST endpoint (GitHub: 900; a GET
  costs 1, a write 5) with 403 and the seconds until the window has room in
  ``Retry-After``.  An endpoint is the method and the path with its names and
  ids as placeholders (``GET /repos/{owner}/{repo}/issues/{id}``), a close
  enough reading of GitHub's routes.  The most requests in flight per caller
  are in ``/_fake/stats`` (``max_in_flight``, by login as in the request log);
* list endpoints page with GitHub's ``Link`` header format, naming the
  repository by id (``/repositories/<id>/issues?page=2``) as GitHub does, and
  the fake answers those paths too;
* bodies carry GitHub's hypermedia (``url``, ``*_url``, templated ones like
  ``issues_url: .../issues{/number}``) naming the fake's own base URL the way
  GitHub names https://api.github.com, so clients that lazy-load or follow
  links (PyGithub, octokit's paginate) go where they would on GitHub;
* unknown paths are 404, Accept variants (``raw+json``, ``.diff`` ...) have
  their own bodies and ``X-GitHub-Media-Type``, ``/rate_limit`` is ``no-cache``
  with per-resource buckets, unsupported ``X-GitHub-Api-Version`` is 400;
* issues can be created and edited, and lists show them;
* identities: each token is a login (``/user``, the author of what it writes), can be
  revoked (then 401 "Bad credentials"), and has a permission per repository that the
  repository object shows (``permissions``, authenticated callers only); a repository
  made private is seen (200) only by the tokens given read access, 404 for everyone
  else, anonymous callers included, as GitHub hides private repositories;
* the request log records who asked (login, "anonymous" or "bad credentials") and the
  request's headers (never the Authorization value), so a test can tell which
  credential and which client headers reached GitHub;
* GraphQL (``POST /graphql``) answers the operations gh sends for pr/issue
  list/view/comment, repo view, release list and ``viewer`` from the same state
  REST shows, spends each query's cost from the ``graphql`` bucket, and counts
  requests per operation in ``/_fake/stats`` (the GraphQL section below);
* issue comments (list per issue and per repository, create, read, edit, delete; every
  issue starts with ``n % 7`` of them) and labels on issues (list, add, replace, remove)
  change the issue, its pull request and every list that shows them (``comments`` counts,
  ``labels``), in REST and GraphQL alike (a pull request's comments are its issue's), so
  the sticky-comment pattern runs against it;
* ``clock_offset_s`` moves the ``Date`` header (GitHub's clock) away from the machine's,
  to show that a client compares GitHub's times with GitHub's times.

The base URL is ``http://<Host>`` on TCP.  With ``unix_socket`` the fake also
listens on a Unix socket and plays GitHub itself there: ``https://<Host>``
(``https://api.github.com`` for gh's ``http_unix_socket``).

Only the standard library is used so the file can be copied into a bare
container that has nothing but ``python3``.

Command line::

    python3 tests/fakegithub.py --host 127.0.0.1 --port 0 --latency-ms 80 \
        [--token TOKEN ...] [--rate-limit 5000] [--anon-rate-limit 60] \
        [--max-concurrent 100] [--endpoint-points 900] \
        [--unix-socket PATH] [--port-file PATH] [--verbose]

In-process::

    fake = FakeGitHub("127.0.0.1", 0, latency_ms=0, tokens=["t"], rate_limit=5000)
    fake.start()
    ... httpx.get(fake.url + "/repos/o/r") ...
    fake.stop()

The control API under ``/_fake/`` (never counted, never rate limited, never
delayed) lets tests observe and steer the fake; see ``_Handler._control``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["FakeGitHub", "main"]

# API URLs in bodies and Links name the base the fake was reached at (GitHub
# names https://api.github.com); web URLs (html_url, clone_url) name github.com
# as on GitHub, since no client fetches them through the API.
UNIX_HOST = "api.github.com"  # the Host a client on the Unix socket plays
WEB_ORIGIN = "https://github.com"
AVATARS = "https://avatars.githubusercontent.com"
DOCS = "https://docs.github.com/rest"
DOCS_RATE_LIMIT = DOCS + "/overview/resources-in-the-rest-api#rate-limiting"
DOCS_SECONDARY = DOCS + "/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
DOCS_VERSIONS = DOCS + "/about-the-rest-api/api-versions"
DOCS_MEDIA = DOCS + "/using-the-rest-api/getting-started-with-the-rest-api#media-types"
API_VERSIONS = ("2022-11-28", "2026-03-10")
DEFAULT_API_VERSION = "2022-11-28"

# Timestamps are derived from a fixed epoch plus the resource version so that
# bodies are deterministic across runs yet still move forward on every change
# (which keeps Last-Modified / If-Modified-Since meaningful).
EPOCH = 1704067200  # 2024-01-01T00:00:00Z
SECONDS_PER_VERSION = 60

LIST_LENGTH = 95  # 95 items = 4 pages at the default per_page of 30
LIST_KINDS = ("issues", "pulls", "commits")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_WINDOW = 3600  # GitHub's primary limits are per rolling hour
# Every bucket /rate_limit reports: (limit with a token, anonymous limit, window s).
RESOURCES = {
    "core": (None, None, RATE_WINDOW),  # None: the fake's configured limits
    "search": (30, 10, 60),
    "graphql": (None, 0, RATE_WINDOW),  # GraphQL has no anonymous allowance
    "integration_manifest": (5000, 5000, RATE_WINDOW),
    "source_import": (100, 100, 60),
    "code_scanning_upload": (1000, 60, RATE_WINDOW),
    "actions_runner_registration": (10000, 10000, RATE_WINDOW),
    "scim": (15000, 15000, RATE_WINDOW),
    "dependency_snapshots": (100, 100, 60),
    "dependency_sbom": (100, 100, RATE_WINDOW),
    "audit_log": (1750, 1750, RATE_WINDOW),
    "audit_log_streaming": (15, 15, 60),
    "code_search": (10, 0, 60),
    "code_scanning_autofix": (10, 10, 60),
}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# GitHub's secondary limits (per credential): requests in flight, and points a
# minute per REST endpoint (a GET or HEAD costs 1, a write 5).
MAX_CONCURRENT = 100
ENDPOINT_POINTS = 900
POINTS_WINDOW = 60.0
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes"
                     " before you try again. If you reach out to GitHub Support for help,"
                     " please include the request ID {rid}.")
REQUEST_LOG_SIZE = 1000
# How often serve_forever checks for shutdown; the default 0.5 s would make
# every stop() (one per test) that slow.
POLL_INTERVAL = 0.05


# --------------------------------------------------------------------------- #
# Small pure helpers
# --------------------------------------------------------------------------- #

def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _num(seed: str, modulo: int) -> int:
    """A stable pseudo-random number for ``seed`` (ids, counts, ...)."""
    return int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16) % modulo


def _normalize(path: str) -> str:
    """The key a resource's version is stored under: no query, no trailing /."""
    path = path.split("?", 1)[0] or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def _parent(path: str) -> str | None:
    """The collection a resource lives in (``/a/b/c`` -> ``/a/b``)."""
    if path == "/" or "/" not in path.strip("/"):
        return None
    return path.rsplit("/", 1)[0]


def _etag(body: bytes, credential: str = "") -> str:
    # GitHub's ETags are weak and quoted, and specific to the token that asked (GitHub
    # support, 2024: "It's currently expected for ETags to be auth token specific"): the same
    # body asked with another token has another ETag, and If-None-Match with the first
    # token's ETag gets that other token a 200, not a 304. Anonymous: the content alone.
    return 'W/"%s"' % hashlib.sha256(body + credential.encode()).hexdigest()


def _opaque(tag: str) -> str:
    """Strip the weak prefix so W/"x" and "x" compare equal (weak comparison,
    which is what RFC 9110 prescribes for If-None-Match)."""
    tag = tag.strip()
    if tag[:2].upper() == "W/":
        tag = tag[2:]
    return tag


def _etag_matches(if_none_match: str, current: str) -> bool:
    wanted = _opaque(current)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or (candidate and _opaque(candidate) == wanted):
            return True
    return False


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except (TypeError, ValueError):
        return default


# Top-level collections whose next segment names one of them (/users/{username}).
NAMED_ROOTS = frozenset({"users", "orgs", "repositories", "gists", "teams", "enterprises",
                         "organizations", "installations", "applications", "apps"})


def _login(cred: "_Credential | None") -> str:
    """Who the request log and the in-flight counts name: a token's login, else
    ``anonymous`` or ``bad credentials`` (never a credential itself)."""
    if cred is None:
        return "bad credentials"
    return cred.login if cred.authenticated and cred.login else "anonymous"


def _endpoint(method: str, norm: str) -> str:
    """The REST endpoint a request spends secondary-limit points on: the method and the
    route, names and ids as placeholders.  After ``/repos/{owner}/{repo}`` (or any other
    first segment) collection names and ids alternate, as in GitHub's routes."""
    parts = [p for p in norm.split("/") if p]
    if parts[:1] == ["repos"] and len(parts) >= 3:
        head, rest = ["repos", "{owner}", "{repo}"], parts[3:]
    elif parts[:1] and parts[0] in NAMED_ROOTS and len(parts) >= 2:
        head, rest = [parts[0], "{id}"], parts[2:]
    else:
        head, rest = parts[:1], parts[1:]
    route = head + [p if i % 2 == 0 else "{id}" for i, p in enumerate(rest)]
    return f"{'GET' if method == 'HEAD' else method} /" + "/".join(route)


def _json_bytes(payload: object) -> bytes:
    # Compact, insertion-ordered JSON like GitHub's; ensure_ascii keeps the
    # byte length (and thus Content-Length) unambiguous.
    return json.dumps(payload, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- #
# State records
# --------------------------------------------------------------------------- #

@dataclass
class _Bucket:
    """One credential's budget for one rate-limit resource."""

    limit: int
    window: int = RATE_WINDOW
    used: int = 0
    reset_at: int = 0

    def roll(self, now: float) -> None:
        # A fresh window starts lazily, like GitHub: the window begins with the
        # first request after the previous one ran out.
        if now >= self.reset_at:
            self.used = 0
            self.reset_at = int(now) + self.window

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def view(self) -> dict:
        return {"limit": self.limit, "used": self.used,
                "remaining": self.remaining, "reset": self.reset_at}


@dataclass
class _Credential:
    key: str                 # budget key; never the raw token
    authenticated: bool
    label: str               # what GitHub names in "rate limit exceeded for ..."
    login: str | None = None
    # What GitHub says about the token with every answer to it: X-OAuth-Scopes (classic and
    # OAuth tokens; none for installation tokens and fine-grained PATs) and
    # github-authentication-token-expiration (tokens that expire).
    scopes: str | None = None
    expires: str | None = None


@dataclass
class _Reply:
    status: int
    payload: object = None            # JSON-able body; None means no body
    last_modified: int | None = None  # set on cacheable representations
    headers: dict[str, str] = field(default_factory=dict)
    resource: str = "core"            # which rate-limit bucket answers for it
    text: str | None = None           # a non-JSON body (diff, raw file ...)
    content_type: str = "application/json; charset=utf-8"
    media: str = "github.v3; format=json"  # X-GitHub-Media-Type
    body: bytes = b""

    def encode(self) -> None:
        if self.text is not None:
            self.body = self.text.encode()
        else:
            self.body = b"" if self.payload is None else _json_bytes(self.payload)


@dataclass(frozen=True)
class _Media:
    """What the Accept header asked for: ``application/vnd.github[.v3][.param][+json]``."""

    param: str | None = None   # raw, text, html, full, diff, patch, sha; None = plain
    json: bool = True

    @property
    def header(self) -> str:
        """X-GitHub-Media-Type, which echoes the parsed pieces."""
        return ("github.v3" + (f"; param={self.param}" if self.param else "")
                + ("; format=json" if self.json else ""))


BODY_PARAMS = ("raw", "text", "html", "full")  # comment-body media types


def _media(accept: str | None) -> _Media:
    """The first GitHub media type in Accept; anything else means plain JSON,
    so ``application/vnd.github.v3+json``, ``application/vnd.github+json``,
    ``application/json`` and ``*/*`` all select the same representation."""
    for item in (accept or "").split(","):
        mime = item.split(";", 1)[0].strip().lower()
        if not mime.startswith("application/vnd.github"):
            continue
        rest = mime[len("application/vnd.github"):]
        is_json = rest.endswith("+json")
        rest = rest.removesuffix("+json")
        names = [n for n in rest.split(".") if n and n not in ("v3", "v4")]
        param = names[0] if names and not names[0].endswith("-preview") else None
        return _Media(param, is_json or param is None)
    return _Media()


# --------------------------------------------------------------------------- #
# The fake
# --------------------------------------------------------------------------- #

class FakeGitHub:
    """The fake GitHub API server.

    ``tokens`` are the credentials that count as valid; each one gets a budget
    of ``rate_limit`` per hour.  Anonymous callers get ``anon_rate_limit`` per
    client IP.  The socket is bound in the constructor so ``url`` is known
    before ``start()``; ``port=0`` picks a free port.  ``unix_socket``, a
    path, adds a Unix-socket listener (mode 0600) that answers as
    ``https://api.github.com`` does, for clients such as gh that can only
    reach a local server that way.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        tokens: list[str] | tuple[str, ...] | set[str] | dict[str, str] | None = None,
        rate_limit: int = 5000,
        *,
        anon_rate_limit: int = 60,
        max_concurrent: int = MAX_CONCURRENT,
        endpoint_points: int = ENDPOINT_POINTS,
        unix_socket: str | os.PathLike | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.latency_ms = float(latency_ms)
        self.path_latency_ms: dict[str, float] = {}  # a slower (or faster) GitHub for some paths
        self.clock_offset_s = 0.0  # GitHub's clock (its Date header) minus this machine's
        # Reads of these paths take the state at once and answer this many ms later: an
        # answer in flight while the state changes (a write landing meanwhile).
        self.read_delay_ms: dict[str, float] = {}
        self.tokens = frozenset(tokens or ())
        # A token's login: given (a dict), else derived from the token.
        self.logins: dict[str, str] = dict(tokens) if isinstance(tokens, dict) else {}
        # A token's OAuth scopes (None: the header is not sent) and expiry, where set
        # (set_scopes, set_expiration); by default a classic token has "repo, read:org".
        self.scopes: dict[str, str | None] = {}
        self.expirations: dict[str, str] = {}
        self.rate_limit = int(rate_limit)
        self.anon_rate_limit = int(anon_rate_limit)
        self.max_concurrent = int(max_concurrent)
        self.endpoint_points = int(endpoint_points)
        self.verbose = verbose

        # One lock guards every piece of mutable state below.  Handlers do
        # all their bookkeeping and body building while holding it (it is all
        # in-memory and quick) and only sleep / do socket I/O outside it.
        self._lock = threading.Lock()
        # Identities are configuration, kept across reset(): private repositories ("o/r"
        # lower-case) -> credential keys that may read them; (repository, credential key)
        # -> "admin" | "push" (default "pull").
        self._private: dict[str, set[str]] = {}
        self._sso: dict[str, set[str]] = {}  # organization -> tokens authorized for its SSO
        self._permissions: dict[tuple[str, str], str] = {}
        # Requests being answered now, per credential key: outside _reset_state,
        # since a reset while requests are in flight must not lose count of them.
        self._in_flight: Counter[str] = Counter()
        self._reset_state()
        # Repository ids are a pure function of the name, so this survives
        # reset(): an id a client saw stays resolvable, as on GitHub.
        self._repo_names: dict[int, str] = {}

        server_cls = _Server6 if ":" in host else _Server
        self._servers: list[_Server | _UnixServer] = [server_cls((host, port), _Handler)]
        self.port = self._servers[0].server_address[1]
        self.unix_socket = os.fspath(unix_socket) if unix_socket else None
        if self.unix_socket:
            if os.path.exists(self.unix_socket):
                os.unlink(self.unix_socket)
            self._servers.append(_UnixServer(self.unix_socket, _Handler))
            os.chmod(self.unix_socket, 0o600)
        for server in self._servers:
            server.fake = self
        self._threads: list[threading.Thread] = []
        self._serving = False

    # -- lifecycle ---------------------------------------------------------- #

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "FakeGitHub":
        """Serve from background daemon threads; returns self."""
        self._serving = True
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                name="fakegithub", daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread (used by the command line)."""
        self.start()
        try:
            while self._serving:
                time.sleep(POLL_INTERVAL)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections."""
        was_serving, self._serving = self._serving, False
        for server in self._servers:
            if was_serving:
                server.shutdown()
            server.server_close()
            # Handler threads idling on keep-alive connections would otherwise
            # keep answering after stop(); cutting their sockets ends them.
            server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self.unix_socket and os.path.exists(self.unix_socket):
            os.unlink(self.unix_socket)

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the control API as Python methods ----------------------------------- #
    # The HTTP control endpoints call these, and in-process tests may too.

    def _reset_state(self) -> None:
        self._versions: dict[str, int] = {}
        self._written: set[str] = set()       # paths PUT/POSTed (PUT 201 vs 200)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        # (status, retry_after, path): the next requests (of that path only, if given) fail
        self._failures: deque[tuple[int, int, str | None]] = deque()
        self._requests = 0
        self._units = 0
        self._not_modified = 0
        self._by_path: Counter[str] = Counter()
        self._methods: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._log: deque[dict] = deque(maxlen=REQUEST_LOG_SIZE)
        self._seq = 0
        self._secrets: dict[str, str] = {}  # "owner/repo/NAME" -> decrypted value
        # Issues created or edited through the API: "o/r" -> number -> fields.
        self._issues: dict[str, dict[int, dict]] = {}
        # GraphQL: requests per operation name, points spent.
        self._graphql_ops: Counter[str] = Counter()
        self._graphql_points = 0
        self._reset_conversations()
        self._in_flight_max: Counter[str] = Counter()  # per login (_login), since reset
        self._points: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._secondary: Counter[str] = Counter()  # refusals: "concurrent" / "points"

    def reset(self) -> None:
        """Zero counters, budgets, versions, issues, pending failures and the log (tokens,
        private repositories and permissions stay)."""
        with self._lock:
            self._reset_state()

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                "units": self._units,
                "not_modified": self._not_modified,
                "by_path": dict(self._by_path),
                "methods": dict(self._methods),
                "by_status": dict(self._by_status),
                "graphql": {"operations": dict(self._graphql_ops),
                            "points": self._graphql_points},
                # The most requests in flight at once per caller (its login, as in the
                # request log), and secondary-limit refusals by kind.
                "max_in_flight": dict(self._in_flight_max),
                "secondary_limited": dict(self._secondary),
            }

    def request_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def mutate(self, path: str) -> int:
        """Bump a resource's version (its body and ETag change); returns it."""
        with self._lock:
            return self._bump(self._canonical(_normalize(path)) or _normalize(path))

    def fail(self, status: int, count: int = 1, retry_after: int = 60,
             path: str | None = None) -> None:
        """Make the next ``count`` API requests (to ``path`` only, if given) answer
        ``status``."""
        if not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        with self._lock:
            self._failures.extend([(status, retry_after, path)] * max(0, count))

    def _failure_for(self, path: str) -> tuple[int, int] | None:
        for failure in self._failures:
            if failure[2] in (None, path):
                self._failures.remove(failure)
                return failure[0], failure[1]
        return None

    # -- identities --------------------------------------------------------- #

    def make_private(self, full: str, readers: list[str] | tuple[str, ...] = ()) -> None:
        """Make repository ``owner/name`` private: only ``readers`` (tokens) see it."""
        with self._lock:
            self._private[full.lower()] = {self._token_key(t) for t in readers}

    def require_sso(self, org: str, authorized: list[str] | tuple[str, ...] = ()) -> None:
        """Organization ``org`` enforces SAML SSO: its private repositories answer a token
        not authorized for it 403 with X-GitHub-SSO naming where to authorize it."""
        with self._lock:
            self._sso[org.lower()] = {self._token_key(t) for t in authorized}

    def _sso_refusal(self, canonical: str, cred: _Credential) -> _Reply | None:
        parts = canonical.strip("/").split("/")
        if parts[0] != "repos" or len(parts) < 3 or not cred.authenticated:
            return None
        authorized = self._sso.get(parts[1].lower())
        if authorized is None or cred.key in authorized \
                or f"{parts[1]}/{parts[2]}".lower() not in self._private:
            return None
        reply = _error(403, "Resource protected by organization SAML enforcement. You must "
                       "grant your Personal Access token access to this organization.",
                       "https://docs.github.com/articles/authenticating-to-a-github-"
                       "organization-with-saml-single-sign-on/")
        reply.headers["X-GitHub-SSO"] = (f"required; url=https://github.com/orgs/{parts[1]}/"
                                         f"sso?authorization_request={cred.key[:20]}")
        return reply

    def make_public(self, full: str) -> None:
        with self._lock:
            self._private.pop(full.lower(), None)

    def set_permission(self, full: str, token: str, level: str) -> None:
        """What ``permissions`` shows for ``token`` on ``owner/name``: admin, push or pull."""
        if level not in ("admin", "push", "pull"):
            raise ValueError("level must be admin, push or pull")
        with self._lock:
            self._permissions[(full.lower(), self._token_key(token))] = level

    def revoke(self, token: str) -> None:
        """The token stops working (expired, revoked): GitHub answers 401 from now on."""
        with self._lock:
            self.tokens = self.tokens - {token}

    def add_token(self, token: str, login: str | None = None) -> None:
        with self._lock:
            self.tokens = self.tokens | {token}
            if login:
                self.logins[token] = login

    def set_scopes(self, token: str, scopes: str | None) -> None:
        with self._lock:
            self.scopes[token] = scopes

    def set_expiration(self, token: str, when: str) -> None:
        """As GitHub writes it: "2027-01-31 12:00:00 UTC"."""
        with self._lock:
            self.expirations[token] = when

    def login_of(self, token: str) -> str:
        return self.logins.get(token) or "user-" + hashlib.sha256(token.encode()).hexdigest()[:8]

    @staticmethod
    def _token_key(token: str) -> str:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]

    def _hidden(self, canonical: str, cred: _Credential) -> bool:
        """A private repository the caller may not read: GitHub says 404, as if absent."""
        parts = canonical.strip("/").split("/")
        if parts[0] != "repos" or len(parts) < 3:
            return False
        readers = self._private.get(f"{parts[1]}/{parts[2]}".lower())
        return readers is not None and cred.key not in readers

    def _permission(self, full: str, cred: _Credential) -> dict | None:
        if not cred.authenticated:
            return None
        level = self._permissions.get((full.lower(), cred.key), "pull")
        rank = {"pull": 1, "push": 2, "admin": 3}[level]
        return {"admin": rank >= 3, "maintain": rank >= 3, "push": rank >= 2,
                "triage": rank >= 2, "pull": True}

    def set_limits(self, max_concurrent: int | None = None,
                   endpoint_points: int | None = None) -> None:
        """Change the secondary limits (tests lower them to make them bite)."""
        for value in (max_concurrent, endpoint_points):
            if value is not None and value < 1:
                raise ValueError("limits must be 1 or more")
        with self._lock:
            if max_concurrent is not None:
                self.max_concurrent = int(max_concurrent)
            if endpoint_points is not None:
                self.endpoint_points = int(endpoint_points)

    def _arrive(self, authorization: str | None, client: str) -> tuple[str, bool]:
        """A request arrived: count it in flight.  Returns its credential key and
        whether it is over the concurrency limit (then it is refused at once)."""
        with self._lock:
            cred = self._credential(authorization, client)
            key = cred.key if cred else f"invalid:{client}"
            self._in_flight[key] += 1
            now = self._in_flight[key]
            label = _login(cred)
            self._in_flight_max[label] = max(self._in_flight_max[label], now)
            return key, now > self.max_concurrent

    def _depart(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]

    def _spend_points(self, key: str, req: "_Request", now: float) -> int | None:
        """Spend the request's points on its endpoint's minute; None if they fit,
        else the seconds until they would (nothing is spent then)."""
        cost = 5 if req.method in WRITE_METHODS else 1
        window = self._points.setdefault((key, _endpoint(req.method, req.norm)), deque())
        while window and window[0][0] <= now - POINTS_WINDOW:
            window.popleft()
        spent = sum(points for _, points in window)
        if spent + cost <= self.endpoint_points:
            window.append((now, cost))
            return None
        freed = 0
        for at, points in window:
            freed += points
            if spent - freed + cost <= self.endpoint_points:
                return max(1, math.ceil(at + POINTS_WINDOW - now))
        return int(POINTS_WINDOW)

    def _secondary_limit(self, rid: str, kind: str, retry_after: int | None) -> _Reply:
        self._secondary[kind] += 1
        reply = _error(403, SECONDARY_MESSAGE.format(rid=rid), DOCS_SECONDARY)
        if retry_after is not None:
            reply.headers["Retry-After"] = str(retry_after)
        return reply

    def set_latency(self, ms: float) -> None:
        # A single attribute store is atomic; handlers read it once per request.
        self.latency_ms = max(0.0, float(ms))

    # -- internals (all called with self._lock held) ------------------------ #

    def _version(self, path: str) -> int:
        return self._versions.get(path, 0)

    def _bump(self, path: str) -> int:
        self._versions[path] = self._version(path) + 1
        return self._versions[path]

    def _last_modified(self, path: str) -> int:
        return EPOCH + self._version(path) * SECONDS_PER_VERSION

    def _repo_id(self, full: str) -> int:
        rid = _num("repo:" + full, 10**9)
        self._repo_names[rid] = full
        return rid

    def _canonical(self, norm: str) -> str | None:
        """``/repositories/<id>/x`` as ``/repos/<owner>/<name>/x`` (one resource,
        two names, as on GitHub); None for an id no answer ever named."""
        parts = norm.strip("/").split("/")
        if parts[0] != "repositories":
            if parts[0] == "repos" and len(parts) >= 3:
                self._repo_id(f"{parts[1]}/{parts[2]}")
            return norm
        if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) not in self._repo_names:
            return None
        return "/".join(["/repos", self._repo_names[int(parts[1])], *parts[2:]])

    def _credential(self, authorization: str | None, client: str) -> _Credential | None:
        """Who is calling; None means a token GitHub would reject."""
        if not authorization:
            return _Credential(f"anon:{client}", False, client)
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() in ("token", "bearer") and value in self.tokens:
            login = self.login_of(value)
            default = None if value.startswith(("ghs_", "github_pat_")) else "repo, read:org"
            return _Credential(self._token_key(value), True,
                               f"user ID {_num('user:' + login, 10**8)}", login,
                               self.scopes.get(value, default), self.expirations.get(value))
        return None

    def _bucket(self, cred: _Credential, resource: str, now: float) -> _Bucket:
        key = (cred.key, resource)
        bucket = self._buckets.get(key)
        if bucket is None:
            with_token, anonymous, window = RESOURCES[resource]
            if cred.authenticated:
                limit = self.rate_limit if with_token is None else with_token
            else:
                limit = self.anon_rate_limit if anonymous is None else anonymous
            bucket = self._buckets[key] = _Bucket(limit, window)
        bucket.roll(now)
        return bucket

    def _request_id(self) -> str:
        self._seq += 1
        h = hashlib.sha256(f"{self.port}:{self._seq}".encode()).hexdigest().upper()
        return f"{h[:4]}:{h[4:8]}:{h[8:14]}:{h[14:20]}:{self._seq:08X}"

    def _process(self, req: "_Request", key: str = "",
                 over_concurrency: bool = False) -> tuple[_Reply, dict[str, str]]:
        """Answer one API request; returns the reply and its full headers.

        Order of checks mirrors GitHub's edge: injected (infrastructure)
        failures, then the API version, then authentication, then the
        secondary limits (in flight, points a minute on the endpoint), then the
        budget of the path's rate-limit resource, then the resource itself,
        then conditional-request evaluation.
        """
        now = time.time()
        with self._lock:
            rid = self._request_id()
            cred = self._credential(req.authorization, req.client)
            canonical = self._canonical(req.norm)
            resource = _resource(canonical or req.norm)
            # Headers on errors for a rejected token report the caller's
            # anonymous budget, which is what GitHub shows.
            shown = cred or _Credential(f"anon:{req.client}", False, req.client)
            bucket = self._bucket(shown, resource, now)
            spend = False

            failure = self._failure_for(req.path) if self._failures else None
            if failure is not None:
                reply = self._injected(failure[0], failure[1], rid)
            elif req.api_version is not None and req.api_version not in API_VERSIONS:
                reply = _error(400, f"Unsupported 'X-GitHub-Api-Version' header:"
                               f" {req.api_version}. Supported versions are"
                               f" {', '.join(API_VERSIONS)}.", DOCS_VERSIONS)
            elif cred is None:
                reply = _error(401, "Bad credentials",
                               DOCS_GRAPHQL if req.norm == "/graphql" else DOCS)
            elif not cred.authenticated and req.norm == "/graphql":
                reply = _error(401, "This endpoint requires you to be authenticated.",
                               DOCS_GRAPHQL_AUTH)
            elif over_concurrency:
                reply = self._secondary_limit(rid, "concurrent", None)
            elif req.norm not in ("/graphql", "/rate_limit") and \
                    (wait := self._spend_points(key or cred.key, req, now)) is not None:
                reply = self._secondary_limit(rid, "points", wait)
            elif not cred.authenticated and (
                req.method in WRITE_METHODS or req.norm == "/user"
                or req.norm.startswith("/user/") or resource == "code_search"
            ):
                reply = _error(401, "Requires authentication")
            elif req.norm == "/rate_limit" and req.method in ("GET", "HEAD"):
                # Checking your limit is free and works even when exhausted.
                reply = self._rate_limit_body(cred, now)
            elif req.norm == "/graphql" and req.method == "POST":
                # Spends its own cost; an exhausted budget is a 200 with an error there.
                reply = _GraphQL(self, cred).answer(req, bucket)
            elif bucket.remaining <= 0:
                reply = _error(403, f"API rate limit exceeded for {cred.label}."
                               + ("" if cred.authenticated else
                                  " (But here's the good news: Authenticated requests"
                                  " get a higher rate limit. Check out the documentation"
                                  " for more details.)"), DOCS_RATE_LIMIT)
            elif canonical is not None and self._sso and \
                    (sso := self._sso_refusal(canonical, cred)) is not None:
                reply = sso
            elif canonical is None or _is_missing(canonical.strip("/").split("/")) \
                    or self._hidden(canonical, cred):
                reply = _error(404, "Not Found")
                spend = True
            elif req.method in ("GET", "HEAD"):
                reply = self._read(req, canonical, cred)
                spend = True
            else:
                reply = self._write(req, canonical, cred)
                spend = True

            reply.resource = resource
            reply.encode()
            # GraphQL has no validators: no ETag, no 304.
            etag = (_etag(reply.body, cred.key if cred and cred.authenticated else "")
                    if reply.body and 200 <= reply.status < 300
                    and req.norm != "/graphql" else None)

            # Conditional GET: only a 200 can turn into a 304.  If-None-Match
            # wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
            if spend and reply.status == 200 and req.method in ("GET", "HEAD"):
                if req.if_none_match is not None:
                    fresh = etag is not None and _etag_matches(req.if_none_match, etag)
                elif req.if_modified_since and reply.last_modified is not None:
                    fresh = _not_modified_since(req.if_modified_since, reply.last_modified)
                else:
                    fresh = False
                if fresh:
                    # GitHub: "a 304 ... does not count against your rate limit".
                    reply.status, spend = 304, False
                    self._not_modified += 1

            if spend:
                bucket.used += 1
                self._units += 1

            headers = self._headers(req, reply, etag, bucket, rid, cred)
            self._requests += 1
            self._by_path[req.raw_path] += 1
            self._methods[req.method] += 1
            self._by_status[str(reply.status)] += 1
            self._log.append({
                "method": req.method,
                "path": req.raw_path,
                "if_none_match": req.if_none_match,
                # Presence and a hash only: never a credential itself.
                "authorization_present": req.authorization is not None,
                "login": _login(cred),
                "headers": dict(req.headers),
                "status": reply.status,
            })
            if req.norm == "/graphql" and req.method == "POST":
                # The document as sent (the node must forward GraphQL bodies unchanged).
                self._log[-1]["graphql_body"] = req.body[:GQL_LOG_BYTES].decode("utf-8",
                                                                                 "replace")
            return reply, headers

    def _headers(self, req: "_Request", reply: _Reply, etag: str | None, bucket: _Bucket,
                 rid: str, cred: _Credential | None) -> dict[str, str]:
        h: dict[str, str] = {}
        if reply.status not in (204, 304):
            h["Content-Type"] = reply.content_type
        h["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
        if etag is not None:
            # Only successful representations get validators and freshness;
            # GitHub's error answers carry none, so a cache cannot keep them.
            # GitHub marks anonymous answers public, authenticated ones private.
            scope = "private" if cred and cred.authenticated else "public"
            h["Cache-Control"] = f"{scope}, max-age=60, s-maxage=60"
            h["ETag"] = etag
            if reply.last_modified is not None:
                h["Last-Modified"] = formatdate(reply.last_modified, usegmt=True)
        h["X-GitHub-Media-Type"] = reply.media
        h["X-GitHub-Api-Version-Selected"] = (
            req.api_version if req.api_version in API_VERSIONS else DEFAULT_API_VERSION)
        h["X-RateLimit-Limit"] = str(bucket.limit)
        h["X-RateLimit-Remaining"] = str(bucket.remaining)
        h["X-RateLimit-Reset"] = str(bucket.reset_at)
        h["X-RateLimit-Used"] = str(bucket.used)
        h["X-RateLimit-Resource"] = reply.resource
        if cred is not None and cred.authenticated:
            # About the token that asked, on every answer to it (docs: "Scopes for OAuth
            # apps"): its scopes, what this endpoint accepts, when it expires.
            if cred.scopes is not None:
                h["X-OAuth-Scopes"] = cred.scopes
                h["X-Accepted-OAuth-Scopes"] = "repo" if req.norm.startswith(
                    ("/repos/", "/repositories/")) else ""
            if cred.expires is not None:
                h["github-authentication-token-expiration"] = cred.expires
        h.update(reply.headers)
        h["X-GitHub-Request-Id"] = rid
        return h

    def _injected(self, status: int, retry_after: int, rid: str) -> _Reply:
        if status in (403, 429):
            # Secondary limits keep X-RateLimit-Remaining > 0 and add
            # Retry-After: that is how clients tell them from primary ones.
            reply = _error(status, "You have exceeded a secondary rate limit. Please"
                           " wait a few minutes before you try again. If you reach"
                           " out to GitHub Support for help, please include the"
                           f" request ID {rid}.", DOCS_SECONDARY)
            reply.headers["Retry-After"] = str(retry_after)
            return reply
        if status >= 500:
            return _Reply(status, {"message": "Server Error"})
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return _error(status, phrase)

    # -- representations ------------------------------------------------------ #

    def _issue_count(self, full: str) -> int:
        return LIST_LENGTH + sum(1 for n in self._issues.get(full, {}) if n > LIST_LENGTH)

    def _read(self, req: "_Request", path: str, cred: _Credential) -> _Reply:
        """GET/HEAD of ``path`` (already canonical: /repos/..., never /repositories/...)."""
        parts = path.strip("/").split("/")
        api, media = req.base, req.media
        lm = self._last_modified(path)
        version = self._version(path)
        if parts[0] == "repos" and parts[3:] == ["actions", "secrets", "public-key"]:
            return self._secrets_public_key()
        if parts[0] == "repos":
            owner, name, sub = parts[1], parts[2], parts[3:]
            full = f"{owner}/{name}"
            talk = self._conversation_read(req, full, sub)
            if talk is not None:
                return talk
            if not sub:
                payload = _repo(api, owner, name, self._repo_id(full), version, lm,
                                self._issue_count(full), full.lower() in self._private,
                                self._permission(full, cred))
            elif len(sub) == 1 and sub[0] in LIST_KINDS:
                return self._list(req, full, sub[0], lm)
            elif len(sub) == 2 and sub[0] in ("issues", "pulls"):
                return self._item(req, full, sub[0], sub[1], version, lm)
            elif len(sub) == 2 and sub[0] == "commits":
                return self._commit_item(req, full, sub[1])
            elif sub == ["readme"]:
                payload = _readme(full, api)
            elif sub[0] == "contents" and media.param in ("raw", "html") and not media.json:
                # The file itself rather than its JSON description.
                text = f"contents of {'/'.join(sub[1:])} in {full}, version {version}\n"
                return _Reply(200, last_modified=lm, text=text, media=media.header,
                              content_type="text/plain; charset=utf-8")
            else:
                payload = {"path": path, "n": version}
        elif parts[0] == "users" and len(parts) == 2:
            payload = _user(api, parts[1], version, lm)
        elif path == "/user":
            payload = _user(api, cred.login or "user", version, lm)
            # What only the authenticated user sees of themselves.
            payload.update({"private_gists": 0, "total_private_repos": 0,
                            "owned_private_repos": 0, "disk_usage": 0, "collaborators": 0,
                            "two_factor_authentication": True})
        elif parts[0] == "search" and len(parts) == 2:
            repo = next((w[5:] for w in req.query.get("q", "").split()
                         if w.startswith("repo:") and "/" in w), None)
            if repo and self._hidden(f"/repos/{repo}", cred):
                # GitHub's answer for a private repository the caller cannot see.
                return _Reply(422, {"message": "Validation Failed", "errors": [{
                    "message": "The listed users and repositories cannot be searched either"
                               " because the resources do not exist or you do not have"
                               " permission to view them.", "resource": "Search",
                    "field": "q", "code": "invalid"}],
                    "documentation_url": DOCS + "/search/search", "status": "422"})
            return self._search(req, parts[1], lm)
        else:
            payload = {"path": path, "n": version}
        if media.param and not media.json:
            return _unsupported_media(req.accept)
        return _Reply(200, payload, lm, media=media.header)

    def _item(self, req: "_Request", full: str, kind: str, ref: str, version: int,
              lm: int) -> _Reply:
        """One issue or pull request, as JSON or (pulls) as a diff or patch."""
        media = req.media
        count = self._issue_count(full) if kind == "issues" else LIST_LENGTH
        if not ref.isdigit() or not 1 <= int(ref) <= count:
            return _error(404, "Not Found")
        n = int(ref)
        if kind == "pulls" and media.param in ("diff", "patch") and not media.json:
            return _Reply(200, last_modified=lm, text=_diff(full, f"pull {n}", media.param),
                          media=media.header, content_type=_vnd(media.param))
        if media.param and not media.json:
            return _unsupported_media(req.accept)
        if kind == "issues":
            payload = _issue(req.base, full, n, version, lm, self._issues.get(full, {}).get(n),
                             media.param, self._talk(req.base, full, n))
        else:
            payload = _pull(req.base, full, n, version, lm, media.param,
                            self._repo_id(full), detail=True, talk=self._talk(req.base, full, n))
        return _Reply(200, payload, lm, media=media.header)

    def _commit_item(self, req: "_Request", full: str, ref: str) -> _Reply:
        listing = f"/repos/{full}/commits"
        version, lm = self._version(listing), self._last_modified(listing)
        numbers = [int(ref)] if ref.isdigit() and 1 <= int(ref) <= LIST_LENGTH else [
            n for n in range(1, LIST_LENGTH + 1) if _sha(full, n, version).startswith(ref)]
        if len(ref) < 4 or len(numbers) != 1:
            return _error(422, f"No commit found for SHA: {ref}")
        n, media = numbers[0], req.media
        if media.param in ("diff", "patch") and not media.json:
            return _Reply(200, last_modified=lm, media=media.header,
                          text=_diff(full, f"commit {_sha(full, n, version)}", media.param),
                          content_type=_vnd(media.param))
        if media.param == "sha" and not media.json:
            return _Reply(200, last_modified=lm, text=_sha(full, n, version),
                          media=media.header, content_type=_vnd("sha"))
        if media.param and not media.json:
            return _unsupported_media(req.accept)
        return _Reply(200, _commit(req.base, full, n, version, lm), lm, media=media.header)

    def _list(self, req: "_Request", full: str, kind: str, lm: int) -> _Reply:
        if req.media.param and not req.media.json:
            return _unsupported_media(req.accept)
        total = self._issue_count(full) if kind == "issues" else LIST_LENGTH
        version = self._version(f"/repos/{full}/{kind}")
        stored = self._issues.get(full, {})
        param = req.media.param

        def make(n: int) -> dict:
            if kind == "issues":
                return _issue(req.base, full, n, version, lm, stored.get(n), param,
                              self._talk(req.base, full, n))
            if kind == "pulls":
                return _pull(req.base, full, n, version, lm, param, self._repo_id(full),
                             talk=self._talk(req.base, full, n))
            return _commit(req.base, full, n, version, lm)

        # GitHub names a repository's list pages by the repository's id.
        where = f"/repositories/{self._repo_id(full)}/{kind}"
        return _page(req, total, make, lm, where)

    def _search(self, req: "_Request", kind: str, lm: int) -> _Reply:
        """/search/issues and /search/repositories find things in the repository
        named by ``repo:owner/name`` in q; other kinds find nothing."""
        query = req.query.get("q", "")
        if not query:
            return _Reply(422, {"message": "Validation Failed", "errors": [
                {"resource": "Search", "field": "q", "code": "missing"}],
                "documentation_url": DOCS + "/search/search", "status": "422"})
        repo = next((w[5:] for w in query.split() if w.startswith("repo:") and "/" in w), None)

        def wrap(total: int, make) -> _Reply:
            reply = _page(req, total, make, lm, req.path)
            reply.payload = {"total_count": total, "incomplete_results": False,
                             "items": reply.payload}
            if kind == "issues":
                reply.payload["search_type"] = "lexical"  # API version 2026-03-10
            return reply

        if kind == "issues" and repo:
            stored = self._issues.get(repo, {})
            return wrap(self._issue_count(repo), lambda n: {
                **_issue(req.base, repo, n, 0, lm, stored.get(n), None,
                         self._talk(req.base, repo, n)), "score": 1.0})
        if kind == "repositories" and repo:
            owner, _, name = repo.partition("/")
            return wrap(1, lambda n: {**_repo(req.base, owner, name, self._repo_id(repo),
                                              0, lm, self._issue_count(repo)), "score": 1.0})
        return wrap(0, lambda n: {})

    def _rate_limit_body(self, cred: _Credential, now: float) -> _Reply:
        resources = {name: self._bucket(cred, name, now).view() for name in RESOURCES}
        reply = _Reply(200, {"resources": resources, "rate": resources["core"]})
        # GitHub's own answer: the numbers move with every call, so never
        # serve this from a cache without asking again.
        reply.headers["Cache-Control"] = "no-cache"
        return reply

    def _write(self, req: "_Request", path: str, cred: _Credential) -> _Reply:
        parts = path.strip("/").split("/")
        try:
            received = json.loads(req.body) if req.body.strip() else None
        except ValueError:
            return _error(400, "Problems parsing JSON")
        if parts[0] == "repos" and parts[3:5] == ["actions", "secrets"] and len(parts) == 6:
            return self._put_secret(req, "/".join(parts[1:3]), parts[5], received)
        if parts[0] == "repos" and len(parts) == 4 and parts[3] == "issues" \
                and req.method == "POST":
            return self._create_issue(req, "/".join(parts[1:3]), received, cred)
        if parts[0] == "repos" and len(parts) >= 4:
            talk = self._conversation_write(req, "/".join(parts[1:3]), parts[3:], received,
                                            cred)
            if talk is not None:
                return talk

        # A write makes both the resource and the collection listing it stale,
        # so caches holding either must see a new ETag on revalidation.
        version = self._bump(path)
        parent = _parent(path)
        if parent is not None:
            self._bump(parent)

        if parts[0] == "repos" and len(parts) == 5 and parts[3] == "issues" \
                and req.method == "PATCH" and parts[4].isdigit():
            return self._edit_issue(req, "/".join(parts[1:3]), int(parts[4]), received,
                                    version)
        if req.method == "DELETE":
            self._written.discard(path)
            return _Reply(204)
        if req.method == "POST":
            status = 201
        elif req.method == "PUT":
            # Create-or-replace: created the first time, replaced afterwards.
            status = 200 if path in self._written else 201
        else:  # PATCH
            status = 200
        self._written.add(path)
        payload = {
            "id": _num(f"{path}:{version}", 10**9),
            "path": path,
            "method": req.method,
            "n": version,
            "received": received,
        }
        return _Reply(status, payload, self._last_modified(path))

    def _create_issue(self, req: "_Request", full: str, received: object,
                      cred: _Credential) -> _Reply:
        fields = received if isinstance(received, dict) else {}
        n = self._issue_count(full) + 1
        # The author is whoever's token made the call: that is how a test
        # sees which credential a proxy used for a write.
        self._issues.setdefault(full, {})[n] = {
            "title": str(fields.get("title", "")), "body": fields.get("body"),
            "state": "open", "login": cred.login or "ghost"}
        listing = f"/repos/{full}/issues"
        self._bump(listing)
        self._bump(f"/repos/{full}")  # open_issues_count moved
        path = f"{listing}/{n}"
        lm = self._last_modified(path)
        reply = _Reply(201, _issue(req.base, full, n, 0, lm, self._issues[full][n], None,
                                   self._talk(req.base, full, n)), lm)
        reply.headers["Location"] = f"{req.base}{path}"
        return reply

    def _edit_issue(self, req: "_Request", full: str, n: int, received: object,
                    version: int) -> _Reply:
        if not 1 <= n <= self._issue_count(full):
            return _error(404, "Not Found")
        stored = self._issues.setdefault(full, {}).setdefault(n, {})
        if isinstance(received, dict):
            stored.update({k: received[k] for k in ("title", "body", "state") if k in received})
        path = f"/repos/{full}/issues/{n}"
        lm = self._last_modified(path)
        return _Reply(200, _issue(req.base, full, n, version, lm, stored, None,
                                  self._talk(req.base, full, n)), lm)

    # -- conversations: issue comments and labels ------------------------------- #
    # A pull request is an issue: its comments and labels are the issue's, and every
    # representation that shows them (the issue, the pull request, the lists, counts; REST
    # and GraphQL) changes with them. Every issue starts with ``n % 7`` comments by the
    # owner; a thread is kept once something writes to it. Comment ids are global.

    def _reset_conversations(self) -> None:
        # "o/r" (lower-case) -> issue number -> its comments, oldest first, once written to
        self._comments: dict[str, dict[int, list[dict]]] = {}
        self._labels: dict[str, dict[int, list[str]]] = {}  # label names per issue
        self._next_comment = 1_000_000

    def comments(self, full: str, n: int) -> list[dict]:
        """The comments of issue ``n`` of ``full`` (tests only: id, body, login ...)."""
        with self._lock:
            return [dict(c) for c in self._thread(full, n)]

    def _thread(self, full: str, n: int) -> list[dict]:
        """Issue ``n``'s comments: the kept thread, or the ones it starts with."""
        kept = self._comments.get(full.lower(), {}).get(n)
        if kept is not None:
            return kept
        owner = full.split("/", 1)[0]
        return [{"id": _num(f"comment:{full}:issues:{n}:{i}", 10**9), "issue": n,
                 "login": owner, "body": f"Comment {i + 1} on issue {n} of {full}.",
                 "created": EPOCH - 3600 * (LIST_LENGTH - n) + 60 * i,
                 "updated": EPOCH - 3600 * (LIST_LENGTH - n) + 60 * i}
                for i in range(n % 7)]

    def _kept_thread(self, full: str, n: int) -> list[dict]:
        """Issue ``n``'s thread, kept from now on (about to be written to)."""
        threads = self._comments.setdefault(full.lower(), {})
        if n not in threads:
            threads[n] = self._thread(full, n)
        return threads[n]

    def _add_comment(self, full: str, n: int, body: str, login: str) -> dict:
        self._next_comment += 1
        now = time.time()
        comment = {"id": self._next_comment, "issue": n, "body": body, "login": login,
                   "created": now, "updated": now}
        self._kept_thread(full, n).append(comment)
        self._talked(full, n)
        return comment

    def _talk(self, api: str, full: str, n: int) -> dict:
        return {"comments": len(self._thread(full, n)),
                "labels": [_label(api, full, name)
                           for name in self._labels.get(full.lower(), {}).get(n, [])]}

    def _talked(self, full: str, n: int) -> None:
        """An issue's conversation changed: so did the issue, its pull request and lists."""
        for path in (f"/repos/{full}/issues/{n}", f"/repos/{full}/pulls/{n}",
                     f"/repos/{full}/issues/{n}/comments", f"/repos/{full}/issues/{n}/labels",
                     f"/repos/{full}/issues", f"/repos/{full}/pulls",
                     f"/repos/{full}/issues/comments"):
            self._bump(path)

    def _issue_exists(self, full: str, ref: str) -> bool:
        return ref.isdigit() and 1 <= int(ref) <= self._issue_count(full)

    def _conversation_read(self, req: "_Request", full: str, sub: list[str]) -> _Reply | None:
        if not sub or sub[0] not in ("issues", "pulls"):
            return None
        api, key = req.base, full.lower()
        if sub[0] == "issues" and sub[1:2] == ["comments"]:
            if len(sub) == 2:  # every comment of the repository, oldest first
                everything = sorted((c for n in range(1, self._issue_count(full) + 1)
                                     for c in self._thread(full, n)),
                                    key=lambda c: (c["created"], c["id"]))
                return self._comment_page(req, full, everything,
                                          f"/repositories/{self._repo_id(full)}/issues/comments")
            if len(sub) == 3:
                found = self._find_comment(full, sub[2])
                if found is None:
                    return _error(404, "Not Found")
                return _Reply(200, _comment(api, full, found[1], found[0], req.media.param),
                              _when(found[0]["updated"]), media=req.media.header)
            return None
        if len(sub) != 3 or sub[2] not in ("comments", "labels"):
            return None
        if not self._issue_exists(full, sub[1]):
            return _error(404, "Not Found")
        n = int(sub[1])
        if sub[0] == "pulls" and sub[2] == "comments":
            return None  # review comments: not modelled
        if sub[2] == "comments":
            where = f"/repositories/{self._repo_id(full)}/issues/{n}/comments"
            return self._comment_page(req, full, self._thread(full, n), where)
        if sub[0] == "pulls":
            return None
        path = f"/repos/{full}/issues/{n}/labels"
        return _Reply(200, self._talk(api, full, n)["labels"], self._last_modified(path),
                      media=req.media.header)

    def _comment_page(self, req: "_Request", full: str, items: list[dict],
                      where: str) -> _Reply:
        if req.media.param and not req.media.json and req.media.param not in BODY_PARAMS:
            return _unsupported_media(req.accept)
        items = list(items)
        lm = max((_when(c["updated"]) for c in items), default=EPOCH)
        # Oldest first, as GitHub lists comments: page 1 holds the first ones.
        ordered = {len(items) - i: c for i, c in enumerate(items)}
        return _page(req, len(items), lambda k: _comment(req.base, full, ordered[k]["issue"],
                                                         ordered[k], req.media.param),
                     lm, where)

    def _find_comment(self, full: str, ref: str) -> tuple[dict, int] | None:
        if not ref.isdigit():
            return None
        for n in range(1, self._issue_count(full) + 1):
            for comment in self._thread(full, n):
                if comment["id"] == int(ref):
                    return comment, n
        return None

    def _conversation_write(self, req: "_Request", full: str, sub: list[str],
                            received: object, cred: _Credential) -> _Reply | None:
        if not sub or sub[0] != "issues":
            return None
        api, key = req.base, full.lower()
        fields = received if isinstance(received, dict) else {}
        if sub[1:2] == ["comments"] and len(sub) == 3 and req.method in ("PATCH", "DELETE"):
            found = self._find_comment(full, sub[2])
            if found is None:
                return _error(404, "Not Found")
            comment, n = found
            thread = self._kept_thread(full, n)
            comment = next(c for c in thread if c["id"] == comment["id"])
            if req.method == "DELETE":
                thread.remove(comment)
                self._talked(full, n)
                return _Reply(204)
            if not isinstance(fields.get("body"), str):
                return _error(422, "Validation Failed")
            comment.update(body=fields["body"], updated=time.time())
            self._talked(full, n)
            return _Reply(200, _comment(api, full, n, comment, None), _when(comment["updated"]))
        if len(sub) < 3 or not self._issue_exists(full, sub[1]):
            return None if len(sub) < 3 or sub[2] not in ("comments", "labels") \
                else _error(404, "Not Found")
        n = int(sub[1])
        if sub[2] == "comments" and len(sub) == 3 and req.method == "POST":
            if not isinstance(fields.get("body"), str) or not fields["body"]:
                return _error(422, "Validation Failed")
            comment = self._add_comment(full, n, fields["body"], cred.login or "ghost")
            reply = _Reply(201, _comment(api, full, n, comment, None), _when(comment["created"]))
            reply.headers["Location"] = f"{api}/repos/{full}/issues/comments/{comment['id']}"
            return reply
        if sub[2] != "labels":
            return None
        names = self._labels.setdefault(key, {}).setdefault(n, [])
        wanted = fields.get("labels", received if isinstance(received, list) else [])
        wanted = [str(w.get("name", "")) if isinstance(w, dict) else str(w)
                  for w in (wanted if isinstance(wanted, list) else [])]
        if len(sub) == 3 and req.method == "POST":
            names.extend(w for w in wanted if w and w not in names)
        elif len(sub) == 3 and req.method == "PUT":
            names[:] = list(dict.fromkeys(w for w in wanted if w))
        elif len(sub) == 3 and req.method == "DELETE":
            names.clear()
            self._talked(full, n)
            return _Reply(204)
        elif len(sub) == 4 and req.method == "DELETE":
            if sub[3] not in names:
                return _error(404, "Label does not exist")
            names.remove(sub[3])
        else:
            return None
        self._talked(full, n)
        return _Reply(200, self._talk(api, full, n)["labels"],
                      self._last_modified(f"/repos/{full}/issues/{n}/labels"))

    # -- Actions secrets (sealed boxes, as GitHub does) ----------------------- #

    def _secrets_public_key(self) -> _Reply:
        box = _secret_box()
        if box is None:
            return _error(501, "the fake needs PyNaCl for Actions secrets")
        key_id, public, _ = box
        return _Reply(200, {"key_id": key_id, "key": public})

    def _put_secret(self, req: "_Request", repo: str, name: str, received: object) -> _Reply:
        """Like GitHub: 201 when created, 204 when updated; 422 unless the value opens
        with the repository's private key under the key_id given."""
        box = _secret_box()
        if box is None:
            return _error(501, "the fake needs PyNaCl for Actions secrets")
        key_id, _, opener = box
        if req.method != "PUT":
            return _error(404, "Not Found")
        if not isinstance(received, dict) or received.get("key_id") != key_id:
            return _error(422, "key_id does not match the repository public key")
        try:
            import base64

            value = opener(base64.b64decode(str(received.get("encrypted_value", ""))))
        except Exception:
            return _error(422, "Bad request: encrypted_value does not open with the key")
        key = f"{repo}/{name}"
        created = key not in self._secrets
        self._secrets[key] = value
        return _Reply(201 if created else 204, {} if created else None)

    def secrets(self) -> dict[str, str]:
        """What was stored, decrypted (tests only: GitHub never shows a secret)."""
        with self._lock:
            return dict(self._secrets)


_BOX: tuple[str, str, object] | None = None


def _secret_box():  # -> (key_id, base64 public key, opener) or None without PyNaCl
    global _BOX
    if _BOX is None:
        try:
            import base64

            from nacl.public import PrivateKey, SealedBox
        except ImportError:
            return None
        private = PrivateKey.generate()
        public = base64.b64encode(bytes(private.public_key)).decode()
        _BOX = ("568250167242549743", public,
                lambda data: SealedBox(private).decrypt(data).decode("utf-8"))
    return _BOX


# --------------------------------------------------------------------------- #
# Body builders (module level: pure functions of base URL, path, version, time)
# --------------------------------------------------------------------------- #

# Top-level segments of GitHub's REST API: any other path is 404, as on GitHub.
API_ROOTS = frozenset({
    "app", "app-manifests", "applications", "apps", "assignments", "classrooms",
    "codes_of_conduct", "emojis", "enterprises", "events", "feeds", "gists",
    "gitignore", "graphql", "installation", "licenses", "markdown", "marketplace_listing",
    "meta", "networks", "notifications", "octocat", "organizations", "orgs", "projects",
    "rate_limit", "repos", "repositories", "search", "teams", "user", "users", "versions",
    "zen",
})
# What lives under /repos/{owner}/{repo}/ on GitHub.
REPO_PARTS = frozenset({
    "actions", "activity", "assignees", "attestations", "autolinks", "automated-security-fixes",
    "branches", "check-runs", "check-suites", "code-scanning", "code-security-configuration",
    "codeowners", "codespaces", "collaborators", "comments", "commits", "community", "compare",
    "contents", "contributors", "dependabot", "dependency-graph", "deployments", "dispatches",
    "environments", "events", "forks", "generate", "git", "hooks", "import", "installation",
    "interaction-limits", "invitations", "issues", "keys", "labels", "languages", "license",
    "merge-upstream", "merges", "milestones", "notifications", "pages", "private-vulnerability-reporting",
    "projects", "properties", "pulls", "readme", "releases", "rules", "rulesets",
    "secret-scanning", "security-advisories", "stargazers", "stats", "statuses",
    "subscribers", "subscription", "tags", "tarball", "teams", "topics", "traffic",
    "transfer", "vulnerability-alerts", "zipball",
})


def _error(status: int, message: str, docs: str = DOCS) -> _Reply:
    # GitHub (since 2024) also repeats the status as a string in error bodies.
    return _Reply(status, {"message": message, "documentation_url": docs,
                           "status": str(status)})


def _unsupported_media(accept: str | None) -> _Reply:
    return _error(415, f"Unsupported 'Accept' header: {json.dumps([accept or ''])}."
                  " Must accept 'application/json'.", DOCS_MEDIA)


def _is_missing(parts: list[str]) -> bool:
    """Paths GitHub would not know: outside its API, or named missing-* by tests."""
    if parts[0] not in API_ROOTS:
        return True
    if parts[0] == "repos":
        return (len(parts) < 3 or parts[2].startswith("missing-")
                or (len(parts) >= 4 and parts[3] not in REPO_PARTS))
    return False


def _resource(path: str) -> str:
    """The rate-limit bucket a path spends from, as GitHub assigns them."""
    if path == "/graphql":
        return "graphql"
    if path == "/search/code":
        return "code_search"
    if path.startswith("/search/"):
        return "search"
    return "core"


def _not_modified_since(header: str, last_modified: int) -> bool:
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False  # an unparseable date is ignored, per RFC 9110
    return last_modified <= since


def _vnd(param: str) -> str:
    return f"application/vnd.github.{param}; charset=utf-8"


def _sha(full: str, n: int, version: int) -> str:
    # The version is part of the sha: a change to the collection reads as
    # a push that rewrote the list.
    return hashlib.sha1(f"{full}:commit:{n}:{version}".encode()).hexdigest()


def _diff(full: str, what: str, param: str) -> str:
    diff = (f"diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
            f"@@ -1 +1 @@\n-{full}\n+{full}: {what}\n")
    if param == "patch":
        return (f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
                f"Subject: [PATCH] {what}\n\n---\n{diff}")
    return diff


def _body_fields(text: str, param: str | None) -> dict:
    """Comment bodies per media type: raw (the default) gives body, text gives
    body_text, html gives body_html, full gives all three."""
    out = {}
    if param in (None, "raw", "full"):
        out["body"] = text
    if param in ("text", "full"):
        out["body_text"] = text
    if param in ("html", "full"):
        out["body_html"] = f"<p>{text}</p>"
    return out


def _owner(api: str, login: str) -> dict:
    uid = _num("user:" + login, 10**8)
    u = f"{api}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": _node_id("U", uid),
        "avatar_url": f"{AVATARS}/u/{uid}?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": f"{WEB_ORIGIN}/{login}",
        "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}",
        "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events",
        "type": "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def _repo(api: str, owner: str, name: str, rid: int, version: int, lm: int,
          open_issues: int, private: bool = False, permissions: dict | None = None) -> dict:
    full = f"{owner}/{name}"
    u = f"{api}/repos/{full}"
    stars = _num("stars:" + full, 50000) + version
    return {
        "id": rid,
        "node_id": _node_id("R", rid),
        "name": name,
        "full_name": full,
        "private": private,
        "owner": _owner(api, owner),
        "html_url": f"{WEB_ORIGIN}/{full}",
        "description": f"Fake repository {full}",
        "fork": False,
        "url": u,
        "forks_url": f"{u}/forks",
        "keys_url": f"{u}/keys{{/key_id}}",
        "collaborators_url": f"{u}/collaborators{{/collaborator}}",
        "teams_url": f"{u}/teams",
        "hooks_url": f"{u}/hooks",
        "issue_events_url": f"{u}/issues/events{{/number}}",
        "events_url": f"{u}/events",
        "assignees_url": f"{u}/assignees{{/user}}",
        "branches_url": f"{u}/branches{{/branch}}",
        "tags_url": f"{u}/tags",
        "blobs_url": f"{u}/git/blobs{{/sha}}",
        "git_tags_url": f"{u}/git/tags{{/sha}}",
        "git_refs_url": f"{u}/git/refs{{/sha}}",
        "trees_url": f"{u}/git/trees{{/sha}}",
        "statuses_url": f"{u}/statuses/{{sha}}",
        "languages_url": f"{u}/languages",
        "stargazers_url": f"{u}/stargazers",
        "contributors_url": f"{u}/contributors",
        "subscribers_url": f"{u}/subscribers",
        "subscription_url": f"{u}/subscription",
        "commits_url": f"{u}/commits{{/sha}}",
        "git_commits_url": f"{u}/git/commits{{/sha}}",
        "comments_url": f"{u}/comments{{/number}}",
        "issue_comment_url": f"{u}/issues/comments{{/number}}",
        "contents_url": f"{u}/contents/{{+path}}",
        "compare_url": f"{u}/compare/{{base}}...{{head}}",
        "merges_url": f"{u}/merges",
        "archive_url": f"{u}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{u}/downloads",
        "issues_url": f"{u}/issues{{/number}}",
        "pulls_url": f"{u}/pulls{{/number}}",
        "milestones_url": f"{u}/milestones{{/number}}",
        "notifications_url": f"{u}/notifications{{?since,all,participating}}",
        "labels_url": f"{u}/labels{{/name}}",
        "releases_url": f"{u}/releases{{/id}}",
        "deployments_url": f"{u}/deployments",
        "created_at": _iso(EPOCH - 86400 * (1 + _num("age:" + full, 2000))),
        "updated_at": _iso(lm),
        "pushed_at": _iso(lm),
        "git_url": f"git://github.com/{full}.git",
        "ssh_url": f"git@github.com:{full}.git",
        "clone_url": f"{WEB_ORIGIN}/{full}.git",
        "svn_url": f"{WEB_ORIGIN}/{full}",
        "mirror_url": None,
        "homepage": None,
        "size": _num("size:" + full, 100000),
        "stargazers_count": stars,
        "watchers_count": stars,
        "language": "Python",
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": True,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": _num("forks:" + full, 5000),
        "archived": False,
        "disabled": False,
        "open_issues_count": open_issues,
        "license": None,
        "topics": [],
        "visibility": "private" if private else "public",
        "forks": _num("forks:" + full, 5000),
        "open_issues": open_issues,
        "watchers": stars,
        "default_branch": "main",
        "network_count": _num("forks:" + full, 5000),
        "subscribers_count": _num("watchers:" + full, 2000),
        **({"permissions": permissions} if permissions is not None else {}),
    }


def _user(api: str, login: str, version: int, lm: int) -> dict:
    user = _owner(api, login)
    user.update({
        "name": login.title(),
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "public_repos": _num("repos:" + login, 300),
        "public_gists": _num("gists:" + login, 30),
        "followers": _num("followers:" + login, 10000) + version,
        "following": _num("following:" + login, 500),
        "created_at": _iso(EPOCH - 86400 * (1 + _num("age:" + login, 4000))),
        "updated_at": _iso(lm),
    })
    return user


def _issue(api: str, full: str, n: int, version: int, lm: int, stored: dict | None,
           param: str | None, talk: dict | None = None) -> dict:
    stored = stored or {}
    owner = full.split("/", 1)[0]
    r = f"{api}/repos/{full}"
    u = f"{r}/issues/{n}"
    state = stored.get("state") or ("open" if n % 3 else "closed")
    created = EPOCH - 3600 * (LIST_LENGTH - n + 1)
    return {
        "url": u,
        "repository_url": r,
        "labels_url": f"{u}/labels{{/name}}",
        "comments_url": f"{u}/comments",
        "events_url": f"{u}/events",
        "html_url": f"{WEB_ORIGIN}/{full}/issues/{n}",
        "id": _num(f"issue:{full}#{n}", 10**9),
        "node_id": _node_id("I", _num("repo:" + full, 10**9),
                            _num(f"issue:{full}#{n}", 10**9)),
        "number": n,
        "title": stored.get("title") or f"Issue {n} of {full}",
        "user": _owner(api, stored.get("login") or owner),
        "labels": (talk or {}).get("labels", []),
        "state": state,
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": (talk or {}).get("comments", n % 7),
        "created_at": _iso(created),
        "updated_at": _iso(lm),
        "closed_at": None if state == "open" else _iso(max(created, lm)),
        "author_association": "OWNER",
        **_body_fields(stored.get("body") or f"Body of issue {n}.", param),
        "timeline_url": f"{u}/timeline",
        "state_reason": None if state == "open" else "completed",
    }


def _when(ts: float) -> int:
    return int(ts)


def _comment(api: str, full: str, n: int, c: dict, param: str | None) -> dict:
    r = f"{api}/repos/{full}"
    cid = c["id"]
    return {
        "url": f"{r}/issues/comments/{cid}",
        "html_url": f"{WEB_ORIGIN}/{full}/issues/{n}#issuecomment-{cid}",
        "issue_url": f"{r}/issues/{n}",
        "id": cid,
        "node_id": f"IC_kwDO{cid:08x}",
        "user": _owner(api, c["login"]),
        "created_at": _iso(c["created"]),
        "updated_at": _iso(c["updated"]),
        "author_association": "OWNER" if c["login"] == full.split("/")[0] else "NONE",
        **_body_fields(c["body"], param),
        "performed_via_github_app": None,
    }


def _label(api: str, full: str, name: str) -> dict:
    lid = _num(f"label:{full.lower()}:{name}", 10**9)
    return {"id": lid, "node_id": f"LA_kwDO{lid:08x}",
            "url": f"{api}/repos/{full}/labels/{name}", "name": name,
            "color": hashlib.sha256(name.encode()).hexdigest()[:6], "default": False,
            "description": None}


def _pull(api: str, full: str, n: int, version: int, lm: int, param: str | None,
          rid: int, detail: bool = False, talk: dict | None = None) -> dict:
    """A pull request as lists show it; ``detail`` adds what only GET of one shows."""
    owner, name = full.split("/", 1)
    repo = _repo(api, owner, name, rid, version, lm, LIST_LENGTH)
    r = f"{api}/repos/{full}"
    u = f"{r}/pulls/{n}"
    state = "open" if n % 4 else "closed"
    created = EPOCH - 3600 * (LIST_LENGTH - n + 1)
    head_sha = hashlib.sha1(f"{full}:head:{n}:{version}".encode()).hexdigest()
    pull = {
        "url": u,
        "id": _num(f"pull:{full}#{n}", 10**9),
        "node_id": _node_id("PR", _num("repo:" + full, 10**9),
                            _num(f"pull:{full}#{n}", 10**9)),
        "html_url": f"{WEB_ORIGIN}/{full}/pull/{n}",
        "diff_url": f"{WEB_ORIGIN}/{full}/pull/{n}.diff",
        "patch_url": f"{WEB_ORIGIN}/{full}/pull/{n}.patch",
        "issue_url": f"{r}/issues/{n}",
        "number": n,
        "state": state,
        "locked": False,
        "title": f"Pull request {n} of {full}",
        "user": _owner(api, owner),
        **_body_fields(f"Body of pull request {n}.", param),
        "created_at": _iso(created),
        "updated_at": _iso(lm),
        "closed_at": None if state == "open" else _iso(max(created, lm)),
        "merged_at": None,
        "draft": n % 5 == 0,
        "commits_url": f"{u}/commits",
        "review_comments_url": f"{u}/comments",
        "review_comment_url": f"{r}/pulls/comments{{/number}}",
        "comments_url": f"{r}/issues/{n}/comments",
        "statuses_url": f"{r}/statuses/{head_sha}",
        "labels": (talk or {}).get("labels", []),
        "milestone": None,
        "head": {"label": f"{owner}:feature-{n}", "ref": f"feature-{n}", "sha": head_sha,
                 "user": _owner(api, owner), "repo": repo},
        "base": {"label": f"{owner}:main", "ref": "main",
                 "sha": hashlib.sha1(f"{full}:base:{version}".encode()).hexdigest(),
                 "user": _owner(api, owner), "repo": repo},
        "_links": {rel: {"href": href} for rel, href in (
            ("self", u), ("html", f"{WEB_ORIGIN}/{full}/pull/{n}"),
            ("issue", f"{r}/issues/{n}"), ("comments", f"{r}/issues/{n}/comments"),
            ("review_comments", f"{u}/comments"),
            ("review_comment", f"{r}/pulls/comments{{/number}}"),
            ("commits", f"{u}/commits"), ("statuses", f"{r}/statuses/{head_sha}"))},
        "author_association": "OWNER",
        "auto_merge": None,
    }
    if detail:
        pull.update({"merged": False, "mergeable": True, "rebaseable": True,
                     "mergeable_state": "clean", "merged_by": None,
                     "comments": (talk or {}).get("comments", n % 7),
                     "review_comments": n % 3, "maintainer_can_modify": False,
                     "commits": 1 + n % 4, "additions": 1, "deletions": 1, "changed_files": 1})
    return pull


def _commit(api: str, full: str, n: int, version: int, lm: int) -> dict:
    owner = full.split("/", 1)[0]
    sha = _sha(full, n, version)
    r = f"{api}/repos/{full}"
    date = _iso(lm - 600 * (LIST_LENGTH - n))
    tree = hashlib.sha1(f"{full}:tree:{n}:{version}".encode()).hexdigest()
    parent = _sha(full, n - 1, version) if n > 1 else None
    return {
        "sha": sha,
        "node_id": f"C_kwDO{sha[:16]}",
        "commit": {
            "author": {"name": owner, "email": f"{owner}@example.com", "date": date},
            "committer": {"name": owner, "email": f"{owner}@example.com", "date": date},
            "message": f"Commit {n} of {full}",
            "tree": {"sha": tree, "url": f"{r}/git/trees/{tree}"},
            "url": f"{r}/git/commits/{sha}",
            "comment_count": 0,
        },
        "url": f"{r}/commits/{sha}",
        "html_url": f"{WEB_ORIGIN}/{full}/commit/{sha}",
        "comments_url": f"{r}/commits/{sha}/comments",
        "author": _owner(api, owner),
        "committer": _owner(api, owner),
        "parents": [] if parent is None else [
            {"sha": parent, "url": f"{r}/commits/{parent}",
             "html_url": f"{WEB_ORIGIN}/{full}/commit/{parent}"}],
    }


def _page(req: "_Request", total: int, make, lm: int, where: str) -> _Reply:
    """One page of a list of ``total`` items, newest first (GitHub's default
    sort for issues, pulls and commits), with GitHub's Link header pointing at
    ``where`` (the list's canonical path)."""
    per_page = _int_param(req.query, "per_page", DEFAULT_PER_PAGE)
    if per_page < 1:
        per_page = DEFAULT_PER_PAGE
    per_page = min(per_page, MAX_PER_PAGE)
    page = max(1, _int_param(req.query, "page", 1))
    last = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    numbers = range(total - start, max(0, total - start - per_page), -1)
    reply = _Reply(200, [make(n) for n in numbers], lm, media=req.media.header)
    if last > 1:
        reply.headers["Link"] = _link_header(req, where, page, last)
    return reply


def _link_header(req: "_Request", where: str, page: int, last: int) -> str:
    """GitHub's Link header: absolute URLs on the API base, other query params
    kept, page last, rels in GitHub's order (prev, next, last, first)."""
    keep = [(k, v) for k, v in req.query_pairs if k != "page"]

    def url(n: int) -> str:
        return f"{req.base}{where}?{urlencode(keep + [('page', str(n))])}"

    rels = []
    if page > 1:
        rels.append(("prev", min(page - 1, last)))
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    return ", ".join(f'<{url(n)}>; rel="{rel}"' for rel, n in rels)


# --------------------------------------------------------------------------- #
# GraphQL: what gh sends, answered from the same state as REST
# --------------------------------------------------------------------------- #
#
# A small reader of GraphQL documents (lexer, parser) and an executor over
# schema-shaped objects: enough of GitHub's schema for what gh 2.23 asks for
# `pr list` / `pr view` / `pr comment`, `issue list` / `issue view` / `issue
# comment`, `repo view`, `release list`, and `viewer`. Standard library only
# (the node reads GraphQL with graphql-core, so the two readings are
# independent). GitHub's behaviours a client or a cache can see:
#
# * answers are 200 with `data` and/or `errors` (validation errors: no data;
#   NOT_FOUND: data with a null and an error naming the path, also for a
#   private repository the token may not read); a bad token is 401, no token
#   is 401 with GitHub's GraphQL message;
# * a query spends its cost from the `graphql` bucket (GitHub's documented
#   algorithm: connection requests / 100, at least 1); when the budget is
#   spent the answer is 200 with a RATE_LIMIT error; no ETag, no 304;
# * node ids have GitHub's new form (base64url msgpack [0, repository id, id])
#   and match REST's `node_id`;
# * `addComment` adds a comment the next query (and the issue's REST comment
#   count) shows;
# * `/_fake/stats` counts GraphQL requests per operation name and the points
#   spent.

GQL_MAX_QUERY = 256 * 1024
GQL_LOG_BYTES = 64 * 1024  # of each GraphQL body, in the request log
GQL_MAX_PAGE = 100
GQL_MAX_FIELDS = 100_000  # fields resolved per request: a crafted document ends, with an error
GQL_MAX_DEPTH = 40
DOCS_GRAPHQL = "https://docs.github.com/graphql"
DOCS_GRAPHQL_AUTH = DOCS_GRAPHQL + "/guides/forming-calls-with-graphql#authenticating-with-graphql"
REACTIONS = ("THUMBS_UP", "THUMBS_DOWN", "LAUGH", "HOORAY", "CONFUSED", "HEART", "ROCKET",
             "EYES")
RELEASES_PER_REPO = 3

_GQL_TOKEN = re.compile(r'''
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>"""(?:\\"""|(?!""")[\s\S])*""")
  | (?P<string>"(?:\\.|[^"\\\n\r])*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>\.\.\.|[!$&():=@\[\]{|}])
''', re.X)
_PUNCT_NAMES = {"{": "LCURLY", "}": "RCURLY", "(": "LPAREN", ")": "RPAREN", "[": "LBRACKET",
                "]": "RBRACKET", ":": "COLON", "$": "VAR_SIGN", "!": "BANG", "=": "EQUALS",
                "@": "DIR_SIGN", "...": "ELLIPSIS", "&": "AMP", "|": "PIPE"}


class _GqlError(Exception):
    """A request-level error (parse, validation): GitHub answers errors and no data."""

    def __init__(self, message: str, line: int = 0, column: int = 0, **extra: object) -> None:
        super().__init__(message)
        self.entry: dict = {"message": message, **extra}
        if line:
            self.entry["locations"] = [{"line": line, "column": column}]


class _GqlFieldError(Exception):
    """A field that could not be resolved: its value is null, the error names its path."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _GVar:
    name: str


@dataclass
class _GField:
    alias: str | None
    name: str
    args: dict
    directives: list
    selections: list | None
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class _GSpread:
    name: str
    directives: list


@dataclass
class _GInline:
    on: str | None
    directives: list
    selections: list


@dataclass
class _GOp:
    kind: str
    name: str | None
    variables: dict      # name -> (type as written, default or None, line, column)
    selections: list
    line: int
    column: int


def _gql_tokens(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, line, column) for every token; commas, whitespace, comments skipped."""
    out, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _GQL_TOKEN.match(text, pos)
        if m is None:
            raise _GqlError(f'Parse error on "{text[pos]}" (error) at [{line}, '
                            f'{pos - line_start + 1}]', line, pos - line_start + 1)
        kind = next(k for k in ("skip", "block", "string", "number", "name", "punct") if m[k])
        if kind != "skip":
            out.append((kind, m[0], line, pos - line_start + 1))
        newlines = m[0].count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m[0].rindex("\n") + 1
        pos = m.end()
    out.append(("eof", "", line, pos - line_start + 1))
    return out


class _GqlParser:
    """GraphQL executable documents (operations and fragments) into _G* nodes."""

    def __init__(self, text: str) -> None:
        self.tokens = _gql_tokens(text)
        self.at = 0

    def document(self) -> tuple[list[_GOp], dict[str, tuple[str, list]]]:
        operations, fragments = [], {}
        while self.peek()[0] != "eof":
            kind, value, line, column = self.peek()
            if value == "{":
                operations.append(_GOp("query", None, {}, self.selection_set(), line, column))
            elif kind == "name" and value in ("query", "mutation", "subscription"):
                operations.append(self.operation())
            elif kind == "name" and value == "fragment":
                self.next()
                name = self.name()
                self.expect_name("on")
                on = self.name()
                self.directives()
                if name in fragments:
                    raise _GqlError(f'Fragment name "{name}" must be unique', line, column)
                fragments[name] = (on, self.selection_set())
            else:
                self.fail()
        return operations, fragments

    def operation(self) -> _GOp:
        _, op_kind, line, column = self.next()
        name = self.name() if self.peek()[0] == "name" else None
        variables = {}
        if self.peek()[1] == "(":
            self.next()
            while self.peek()[1] != ")":
                _, _, vline, vcolumn = self.expect("$")
                var = self.name()
                self.expect(":")
                written = self.type_ref()
                default = None
                if self.peek()[1] == "=":
                    self.next()
                    default = self.value()
                self.directives()
                variables[var] = (written, default, vline, vcolumn)
            self.next()
        self.directives()
        return _GOp(op_kind, name, variables, self.selection_set(), line, column)

    def type_ref(self) -> str:
        if self.peek()[1] == "[":
            self.next()
            inner = self.type_ref()
            self.expect("]")
            written = f"[{inner}]"
        else:
            written = self.name()
        if self.peek()[1] == "!":
            self.next()
            written += "!"
        return written

    def selection_set(self) -> list:
        self.expect("{")
        selections = []
        while self.peek()[1] != "}":
            if self.peek()[0] == "eof":
                self.fail()
            if self.peek()[1] == "...":
                self.next()
                if self.peek()[1] == "on":
                    self.next()
                    on = self.name()
                    selections.append(_GInline(on, self.directives(), self.selection_set()))
                elif self.peek()[0] == "name":
                    selections.append(_GSpread(self.name(), self.directives()))
                else:
                    selections.append(_GInline(None, self.directives(), self.selection_set()))
                continue
            _, _, line, column = self.peek()
            alias, name = None, self.name()
            if self.peek()[1] == ":":
                self.next()
                alias, name = name, self.name()
            args = self.arguments()
            directives = self.directives()
            inner = self.selection_set() if self.peek()[1] == "{" else None
            selections.append(_GField(alias, name, args, directives, inner, line, column))
        self.next()
        return selections

    def arguments(self) -> dict:
        args = {}
        if self.peek()[1] == "(":
            self.next()
            while self.peek()[1] != ")":
                name = self.name()
                self.expect(":")
                args[name] = self.value()
            self.next()
        return args

    def directives(self) -> list:
        found = []
        while self.peek()[1] == "@":
            self.next()
            found.append((self.name(), self.arguments()))
        return found

    def value(self) -> object:
        kind, text, _, _ = self.peek()
        if text == "$":
            self.next()
            return _GVar(self.name())
        self.next()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            try:
                return json.loads(text)
            except ValueError:
                self.at -= 1
                self.fail()
        if kind == "block":
            lines = text[3:-3].replace('\\"""', '"""').splitlines()
            indent = min((len(s) - len(s.lstrip()) for s in lines[1:] if s.strip()), default=0)
            lines = lines[:1] + [s[indent:] for s in lines[1:]]
            return "\n".join(lines).strip("\n")
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        if text == "[":
            items = []
            while self.peek()[1] != "]":
                if self.peek()[0] == "eof":
                    self.fail()
                items.append(self.value())
            self.next()
            return items
        if text == "{":
            fields = {}
            while self.peek()[1] != "}":
                name = self.name()
                self.expect(":")
                fields[name] = self.value()
            self.next()
            return fields
        self.at -= 1
        self.fail()

    # -- tokens -- #

    def peek(self) -> tuple[str, str, int, int]:
        return self.tokens[self.at]

    def next(self) -> tuple[str, str, int, int]:
        token = self.tokens[self.at]
        if token[0] != "eof":
            self.at += 1
        return token

    def name(self) -> str:
        if self.peek()[0] != "name":
            self.fail()
        return self.next()[1]

    def expect(self, text: str) -> tuple[str, str, int, int]:
        if self.peek()[1] != text or self.peek()[0] not in ("punct",):
            self.fail()
        return self.next()

    def expect_name(self, text: str) -> None:
        if self.peek()[:2] != ("name", text):
            self.fail()
        self.next()

    def fail(self) -> None:
        kind, text, line, column = self.peek()
        if kind == "eof":
            raise _GqlError(f"Parse error on end of file at [{line}, {column}]", line, column)
        shown = {"name": "IDENTIFIER", "number": "INT", "string": "STRING",
                 "block": "STRING"}.get(kind) or _PUNCT_NAMES.get(text, "UNKNOWN_CHAR")
        raise _GqlError(f'Parse error on "{text[:40]}" ({shown}) at [{line}, {column}]',
                        line, column)


def _gql_resolve(value: object, variables: dict) -> object:
    if isinstance(value, _GVar):
        return variables.get(value.name)
    if isinstance(value, list):
        return [_gql_resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _gql_resolve(v, variables) for k, v in value.items()}
    return value


def _gql_skipped(directives: list, variables: dict) -> bool:
    for name, args in directives:
        condition = _gql_resolve(args.get("if"), variables)
        if (name == "skip" and condition is True) or (name == "include" and condition is False):
            return True
    return False


def _gql_fragment_cycle(fragments: dict[str, tuple[str, list]]) -> str | None:
    """A fragment that spreads itself, directly or not (GitHub refuses the document)."""
    def spreads(selections: list) -> set[str]:
        found, stack = set(), [selections]
        while stack:
            for s in stack.pop():
                if isinstance(s, _GSpread):
                    found.add(s.name)
                elif getattr(s, "selections", None):
                    stack.append(s.selections)
        return found

    edges = {name: spreads(selections) for name, (_, selections) in fragments.items()}
    done: set[str] = set()
    for start in edges:
        path, stack = set(), [(start, iter(edges[start]))]
        path.add(start)
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.discard(name)
                done.add(name)
            elif child in path:
                return child
            elif child in edges and child not in done:
                path.add(child)
                stack.append((child, iter(edges[child])))
    return None


def _gql_cost(selections: list, fragments: dict, variables: dict) -> int:
    """GitHub's documented points for a query: each connection (a field with first/last)
    needs one request per object of the connections above it; the sum / 100, rounded, at
    least 1. Fragments are summarized once each (their requests scale with the multiplier)."""
    memo: dict[str, int] = {}

    def page(field: _GField) -> int | None:
        sizes = [_gql_resolve(field.args[k], variables) for k in ("first", "last")
                 if k in field.args]
        if not sizes:
            return None
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            return GQL_MAX_PAGE
        return min(GQL_MAX_PAGE, max(0, *sizes))

    def requests(selections: list) -> int:
        total = 0
        for s in selections:
            if isinstance(s, _GField):
                inner = requests(s.selections) if s.selections else 0
                n = page(s)
                total += inner if n is None else 1 + n * inner
            elif isinstance(s, _GInline):
                total += requests(s.selections)
            elif isinstance(s, _GSpread) and s.name in fragments:
                if s.name not in memo:
                    memo[s.name] = 0  # a cycle is refused before this runs
                    memo[s.name] = requests(fragments[s.name][1])
                total += memo[s.name]
        return total

    return max(1, math.floor(requests(selections) / 100 + 0.5))


class _GObj:
    """A GraphQL object: its type, the abstract types it belongs to, and its fields (values,
    or callables of the field's arguments)."""

    __slots__ = ("typename", "kinds", "fields")

    def __init__(self, typename: str, kinds: tuple[str, ...] = (), **fields: object) -> None:
        self.typename = typename
        self.kinds = frozenset((typename, "Node") + kinds)
        self.fields = fields


class _GqlExec:
    """Runs one operation over _GObj roots: data, plus field errors (GitHub's shapes)."""

    def __init__(self, fragments: dict, variables: dict, op: _GOp) -> None:
        self.fragments, self.variables, self.op = fragments, variables, op
        self.errors: list[dict] = []
        self.invalid: list[dict] = []
        self.resolved = 0

    def run(self, root: _GObj) -> dict:
        return self.select(root, [self.op.selections], [], 0)

    def collect(self, obj: _GObj, groups: list[list]) -> dict[str, list[_GField]]:
        fields: dict[str, list[_GField]] = {}
        stack = [iter(g) for g in reversed(groups)]
        while stack:
            s = next(stack[-1], None)
            if s is None:
                stack.pop()
                continue
            self.count()
            if _gql_skipped(getattr(s, "directives", []), self.variables):
                continue
            if isinstance(s, _GField):
                fields.setdefault(s.key, []).append(s)
            elif isinstance(s, _GInline):
                if s.on is None or s.on in obj.kinds:
                    stack.append(iter(s.selections))
            elif isinstance(s, _GSpread):
                if s.name not in self.fragments:
                    raise _GqlError(f"Fragment {s.name} was used, but not defined")
                on, selections = self.fragments[s.name]
                if on in obj.kinds:
                    stack.append(iter(selections))
        return fields

    def count(self) -> None:
        self.resolved += 1
        if self.resolved > GQL_MAX_FIELDS:
            raise _GqlError(f"This query requests more than {GQL_MAX_FIELDS} fields.")

    def select(self, obj: _GObj, groups: list[list], path: list, depth: int) -> dict:
        if depth > GQL_MAX_DEPTH:
            raise _GqlError(f"Query has depth of {depth}, which exceeds max depth of "
                            f"{GQL_MAX_DEPTH}")
        out = {}
        for key, same in self.collect(obj, groups).items():
            field = same[0]
            if field.name == "__typename":
                out[key] = obj.typename
                continue
            if field.name not in obj.fields:
                self.invalid.append({
                    "path": [self.op_label(), *[p for p in path if isinstance(p, str)],
                             field.name],
                    "extensions": {"code": "undefinedField", "typeName": obj.typename,
                                   "fieldName": field.name},
                    "locations": [{"line": field.line, "column": field.column}],
                    "message": f"Field '{field.name}' doesn't exist on type '{obj.typename}'"})
                continue
            resolver = obj.fields[field.name]
            args = {k: _gql_resolve(v, self.variables) for k, v in field.args.items()}
            try:
                value = resolver(args) if callable(resolver) else resolver
            except _GqlFieldError as exc:
                error = {"type": exc.kind, "path": [*path, key],
                         "locations": [{"line": field.line, "column": field.column}],
                         "message": str(exc)}
                self.errors.append({k: v for k, v in error.items() if v is not None})
                value = None
            inner = [f.selections for f in same if f.selections is not None]
            out[key] = self.complete(value, field, inner, [*path, key], depth)
        return out

    def complete(self, value: object, field: _GField, inner: list, path: list,
                 depth: int) -> object:
        if isinstance(value, list):
            return [self.complete(v, field, inner, [*path, i], depth) for i, v in
                    enumerate(value)]
        if isinstance(value, _GObj):
            if not inner:
                self.invalid.append({
                    "locations": [{"line": field.line, "column": field.column}],
                    "message": f"Field must have selections (field '{field.name}' returns "
                               f"{value.typename} but has no selections. Did you mean "
                               f"'{field.name} {{ ... }}'?)"})
                return None
            return self.select(value, inner, path, depth + 1)
        if inner and value is not None:
            self.invalid.append({
                "locations": [{"line": field.line, "column": field.column}],
                "message": f"Selections can't be made on scalars (field '{field.name}')"})
        return value

    def op_label(self) -> str:
        return f"{self.op.kind} {self.op.name}" if self.op.name else self.op.kind


def _msgpack_uints(values: tuple[int, ...]) -> bytes:
    out = bytearray([0x90 | len(values)])
    for v in values:
        if v < 0x80:
            out.append(v)
        elif v < 1 << 32:
            out += b"\xce" + v.to_bytes(4, "big")
        else:
            out += b"\xcf" + v.to_bytes(8, "big")
    return bytes(out)


def _node_id(prefix: str, *numbers: int) -> str:
    """GitHub's new-style global id: <prefix>_<base64url msgpack [0, ...numbers]>."""
    packed = _msgpack_uints((0, *numbers))
    return f"{prefix}_" + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def _node_parts(node_id: str) -> tuple[str, list[int]] | None:
    """(prefix, numbers after the leading 0) of a new-style id; None for anything else."""
    prefix, _, packed = node_id.partition("_")
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    except ValueError:
        return None
    if not raw or raw[0] & 0xF0 != 0x90:
        return None
    numbers, at = [], 1
    for _ in range(raw[0] & 0x0F):
        if at >= len(raw):
            return None
        tag, width = raw[at], {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(raw[at], 0)
        if tag >= 0x80 and not width:
            return None
        numbers.append(tag if tag < 0x80 else int.from_bytes(raw[at + 1:at + 1 + width], "big"))
        at += 1 + width
    if at != len(raw) or not numbers or numbers[0] != 0:
        return None
    return prefix, numbers[1:]


def _cursor(i: int) -> str:
    return base64.b64encode(f"cursor:{i}".encode()).decode()


def _cursor_index(cursor: object) -> int | None:
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
    except ValueError:
        return None
    name, _, number = text.partition(":")
    return int(number) if name == "cursor" and number.isdigit() else None


class _GraphQL:
    """One GraphQL request against a FakeGitHub's state (called with the fake's lock held)."""

    def __init__(self, fake: "FakeGitHub", cred: _Credential) -> None:
        self.fake = fake
        self.cred = cred

    # -- the request -- #

    def answer(self, req: "_Request", bucket: _Bucket) -> _Reply:
        """The reply, having spent the query's cost from `bucket`."""
        fake = self.fake
        try:
            doc = json.loads(req.body or b"null")
        except ValueError:
            return _error(400, "Problems parsing JSON", DOCS_GRAPHQL)
        query = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(query, str):
            return self.spend(bucket, 1, "(none)", {"errors": [{
                "message": "A query attribute must be specified and must be a string."}]})
        variables = doc.get("variables") or {}
        if isinstance(variables, str):  # graphql-ruby servers take them as a JSON string too
            try:
                variables = json.loads(variables or "{}")
            except ValueError:
                variables = None
        if not isinstance(variables, dict):
            return self.spend(bucket, 1, "(none)", {"errors": [{
                "message": "Variables are invalid JSON."}]})
        name = doc.get("operationName")
        unparsed = name if isinstance(name, str) and name else "(unparsed)"
        try:
            if len(query) > GQL_MAX_QUERY:
                raise _GqlError(f"Query is over {GQL_MAX_QUERY} characters")
            operations, fragments = _GqlParser(query).document()
            op = self.choose(operations, name)
            looped = _gql_fragment_cycle(fragments)
            if looped:
                raise _GqlError(f"Fragment {looped} contains an infinite loop")
            values = self.variables(op, variables)
            cost = _gql_cost(op.selections, fragments, values)
        except _GqlError as exc:
            return self.spend(bucket, 1, unparsed, {"errors": [exc.entry]})
        except RecursionError:
            return self.spend(bucket, 1, unparsed, {"errors": [{
                "message": "Query is nested too deeply"}]})
        label = op.name or "(anonymous)"
        fake._graphql_ops[label] += 1
        if bucket.remaining < cost:
            reply = _Reply(200, {"errors": [{
                "type": "RATE_LIMIT", "code": "graphql_rate_limit",
                "message": f"API rate limit already exceeded for {self.cred.label}."}]})
            return reply
        bucket.used += cost
        fake._units += cost
        fake._graphql_points += cost
        run = _GqlExec(fragments, values, op)
        try:
            root = self.mutation_root() if op.kind == "mutation" else self.query_root(cost,
                                                                                      bucket)
            if op.kind == "subscription":
                raise _GqlError("Subscriptions are not supported")
            data = run.run(root)
        except _GqlError as exc:
            return _Reply(200, {"errors": [exc.entry]}, media="github.v4; format=json")
        except RecursionError:
            return _Reply(200, {"errors": [{"message": "Query is nested too deeply"}]},
                          media="github.v4; format=json")
        if run.invalid:
            return _Reply(200, {"errors": run.invalid}, media="github.v4; format=json")
        payload = {"data": data}
        if run.errors:
            payload["errors"] = run.errors
        return _Reply(200, payload, media="github.v4; format=json")

    def spend(self, bucket: _Bucket, cost: int, label: str, payload: dict) -> _Reply:
        self.fake._graphql_ops[label] += 1
        bucket.used += cost
        self.fake._units += cost
        self.fake._graphql_points += cost
        return _Reply(200, payload, media="github.v4; format=json")

    @staticmethod
    def choose(operations: list[_GOp], name: object) -> _GOp:
        if not operations:
            raise _GqlError("No operations in query document")
        if name:
            named = [op for op in operations if op.name == name]
            if not named:
                raise _GqlError(f'No operation named "{name}"')
            return named[0]
        if len(operations) > 1:
            raise _GqlError("An operation name is required")
        return operations[0]

    @staticmethod
    def variables(op: _GOp, sent: dict) -> dict:
        values = {}
        for var, (written, default, line, column) in op.variables.items():
            if var in sent:
                values[var] = sent[var]
            elif default is not None:
                values[var] = _gql_resolve(default, {})
            if written.endswith("!") and values.get(var) is None:
                raise _GqlError(
                    f"Variable ${var} of type {written} was provided invalid value", line,
                    column, extensions={"value": None, "problems": [
                        {"path": [], "explanation": "Expected value to not be null"}]})
        return values

    # -- roots -- #

    def query_root(self, cost: int, bucket: _Bucket) -> _GObj:
        return _GObj(
            "Query",
            viewer=self.user(self.cred.login or "ghost", viewer=True),
            repository=lambda a: self.repository_or_error(a.get("owner"), a.get("name")),
            search=self.search,
            node=lambda a: self.node(a.get("id")),
            nodes=lambda a: [self.node(i) for i in (a.get("ids") or [])],
            user=lambda a: self.user(str(a.get("login"))),
            rateLimit=_GObj("RateLimit", cost=cost, limit=bucket.limit, used=bucket.used,
                            remaining=bucket.remaining, resetAt=_iso(bucket.reset_at),
                            nodeCount=cost * 100),
        )

    def mutation_root(self) -> _GObj:
        return _GObj("Mutation", addComment=self.add_comment)

    # -- objects -- #

    def user(self, login: str, viewer: bool = False) -> _GObj:
        uid = _num("user:" + login, 10**8)
        return _GObj(
            "User", ("Actor", "RepositoryOwner", "RequestedReviewer", "Assignee",
                     "ProjectOwner", "Sponsorable"),
            login=login, id=_node_id("U", uid), databaseId=uid, name=login.title(),
            url=f"{WEB_ORIGIN}/{login}", avatarUrl=f"{AVATARS}/u/{uid}?v=4",
            resourcePath=f"/{login}", email="", bio=None, company=None, location=None,
            isViewer=viewer or login == self.cred.login, isBountyHunter=False,
            isSiteAdmin=False, createdAt=_iso(EPOCH - 86400 * (1 + _num("age:" + login, 4000))),
        )

    def repository_or_error(self, owner: object, name: object) -> _GObj:
        full = f"{owner}/{name}"
        if not (isinstance(owner, str) and isinstance(name, str)) or not self.readable(full):
            raise _GqlFieldError(f"Could not resolve to a Repository with the name '{full}'.",
                                 "NOT_FOUND")
        return self.repository(full)

    def readable(self, full: str) -> bool:
        """Whether the caller may read a repository: it exists, and is public or private
        with the caller among its readers (as for REST)."""
        owner, _, name = full.partition("/")
        return (bool(owner and name) and not _is_missing(["repos", owner, name])
                and not self.fake._hidden(f"/repos/{full}", self.cred))

    def repository(self, full: str) -> _GObj:
        fake = self.fake
        owner, name = full.split("/", 1)
        rid = fake._repo_id(full)
        path = f"/repos/{full}"
        lm = fake._last_modified(path)
        node = _node_id("R", rid)
        stars = _num("stars:" + full, 50000) + fake._version(path)
        private = full.lower() in fake._private
        permission = (fake._permission(full, self.cred) or {})
        level = "ADMIN" if permission.get("admin") else "WRITE" if permission.get("push") \
            else "READ"
        return _GObj(
            "Repository", ("RepositoryInfo", "Starrable", "Subscribable",
                           "UniformResourceLocatable"),
            id=node, databaseId=rid, name=name, nameWithOwner=full, owner=self.user(owner),
            description=f"Fake repository {full}", url=f"{WEB_ORIGIN}/{full}",
            homepageUrl=None, isPrivate=private, visibility="PRIVATE" if private else "PUBLIC",
            isFork=False,
            isArchived=False, isTemplate=False, isEmpty=False, hasIssuesEnabled=True,
            hasWikiEnabled=True, hasProjectsEnabled=True, hasDiscussionsEnabled=False,
            stargazerCount=stars, forkCount=_num("forks:" + full, 5000),
            createdAt=_iso(EPOCH - 86400 * (1 + _num("age:" + full, 2000))),
            updatedAt=_iso(lm), pushedAt=_iso(lm),
            defaultBranchRef=_GObj("Ref", name="main", prefix="refs/heads/"),
            viewerPermission=level,
            viewerHasStarred=False, viewerSubscription="UNSUBSCRIBED",
            primaryLanguage=_GObj("Language", name="Python", color="#3572A5"),
            pullRequests=lambda a: self.connection(
                "PullRequestConnection", self.pull_list(full, a), a),
            pullRequest=lambda a: self.pull_or_error(full, a.get("number")),
            issues=lambda a: self.connection("IssueConnection", self.issue_list(full, a), a),
            issue=lambda a: self.issue_or_error(full, a.get("number")),
            issueOrPullRequest=lambda a: self.issue_or_pull(full, a.get("number")),
            releases=lambda a: self.connection("ReleaseConnection", self.releases(full), a),
            latestRelease=self.releases(full)[0],
            labels=lambda a: self.connection("LabelConnection", [], a),
            milestones=lambda a: self.connection("MilestoneConnection", [], a),
            assignableUsers=lambda a: self.connection("UserConnection", [self.user(owner)], a),
        )

    def issue_count(self, full: str) -> int:
        return self.fake._issue_count(full)

    def issue(self, full: str, n: int) -> _GObj:
        fake = self.fake
        stored = fake._issues.get(full, {}).get(n) or {}
        owner = full.split("/", 1)[0]
        rid = fake._repo_id(full)
        path = f"/repos/{full}/issues/{n}"
        state = (stored.get("state") or ("open" if n % 3 else "closed")).upper()
        created = EPOCH - 3600 * (LIST_LENGTH - n + 1)
        lm = fake._last_modified(path)
        node = _node_id("I", rid, _num(f"issue:{full}#{n}", 10**9))
        url = f"{WEB_ORIGIN}/{full}/issues/{n}"
        return _GObj(
            "Issue", ("IssueOrPullRequest", "Comment", "Closable", "Labelable", "Assignable",
                      "Reactable", "Lockable", "SearchResultItem", "UniformResourceLocatable",
                      "Subscribable", "Updatable"),
            id=node, databaseId=_num(f"issue:{full}#{n}", 10**9), number=n,
            title=stored.get("title") or f"Issue {n} of {full}",
            body=stored.get("body") or f"Body of issue {n}.", url=url,
            resourcePath=f"/{full}/issues/{n}", state=state,
            stateReason=None if state == "OPEN" else "COMPLETED", closed=state != "OPEN",
            closedAt=None if state == "OPEN" else _iso(max(created, lm)),
            createdAt=_iso(created), updatedAt=_iso(lm), locked=False,
            author=self.user(stored.get("login") or owner), authorAssociation="OWNER",
            repository=lambda a: self.repository(full),
            labels=lambda a: self.connection("LabelConnection", [], a),
            assignees=lambda a: self.connection("UserConnection", [], a),
            projectCards=lambda a: self.connection("ProjectCardConnection", [], a),
            projectItems=lambda a: self.connection("ProjectV2ItemConnection", [], a),
            milestone=None, reactionGroups=lambda a: self.reactions(),
            comments=lambda a: self.connection("IssueCommentConnection", self.comments(
                full, "issues", n), a),
            viewerDidAuthor=(stored.get("login") or owner) == self.cred.login,
            viewerCanUpdate=True, viewerSubscription="UNSUBSCRIBED",
        )

    def pull(self, full: str, n: int) -> _GObj:
        fake = self.fake
        owner = full.split("/", 1)[0]
        rid = fake._repo_id(full)
        path = f"/repos/{full}/pulls/{n}"
        version = fake._version(path)
        state = "OPEN" if n % 4 else "CLOSED"
        created = EPOCH - 3600 * (LIST_LENGTH - n + 1)
        lm = fake._last_modified(path)
        node = _node_id("PR", rid, _num(f"pull:{full}#{n}", 10**9))
        head_sha = hashlib.sha1(f"{full}:head:{n}:{version}".encode()).hexdigest()
        commits = 1 + n % 4
        commit = _GObj("Commit", oid=head_sha, abbreviatedOid=head_sha[:7],
                       messageHeadline=f"Change {n}", statusCheckRollup=None,
                       url=f"{WEB_ORIGIN}/{full}/commit/{head_sha}")
        pr_commit = _GObj("PullRequestCommit", commit=commit, url=f"{WEB_ORIGIN}/{full}/pull/"
                          f"{n}/commits/{head_sha}")
        return _GObj(
            "PullRequest", ("IssueOrPullRequest", "Comment", "Closable", "Labelable",
                            "Assignable", "Reactable", "Lockable", "SearchResultItem",
                            "UniformResourceLocatable", "Subscribable", "Updatable"),
            id=node, databaseId=_num(f"pull:{full}#{n}", 10**9), number=n,
            title=f"Pull request {n} of {full}", body=f"Body of pull request {n}.",
            url=f"{WEB_ORIGIN}/{full}/pull/{n}", resourcePath=f"/{full}/pull/{n}",
            state=state, closed=state != "OPEN", merged=False, mergedAt=None,
            closedAt=None if state == "OPEN" else _iso(max(created, lm)),
            createdAt=_iso(created), updatedAt=_iso(lm), locked=False, isDraft=n % 5 == 0,
            author=self.user(owner), authorAssociation="OWNER",
            headRefName=f"feature-{n}", headRefOid=head_sha, baseRefName="main",
            headRepositoryOwner=self.user(owner),
            headRepository=lambda a: self.repository(full),
            baseRepository=lambda a: self.repository(full),
            repository=lambda a: self.repository(full),
            isCrossRepository=False, maintainerCanModify=False, mergeable="MERGEABLE",
            mergeStateStatus="CLEAN", reviewDecision=None, additions=1, deletions=1,
            changedFiles=1,
            commits=lambda a: self.connection("PullRequestCommitConnection",
                                              [pr_commit] * commits, a),
            reviewRequests=lambda a: self.connection("ReviewRequestConnection", [], a),
            reviews=lambda a: self.connection("PullRequestReviewConnection", [], a),
            latestReviews=lambda a: self.connection("PullRequestReviewConnection", [], a),
            assignees=lambda a: self.connection("UserConnection", [], a),
            labels=lambda a: self.connection("LabelConnection", [], a),
            projectCards=lambda a: self.connection("ProjectCardConnection", [], a),
            projectItems=lambda a: self.connection("ProjectV2ItemConnection", [], a),
            milestone=None, reactionGroups=lambda a: self.reactions(),
            comments=lambda a: self.connection("IssueCommentConnection", self.comments(
                full, "pulls", n), a),
            viewerDidAuthor=owner == self.cred.login, viewerCanUpdate=True,
            viewerSubscription="UNSUBSCRIBED",
        )

    def comments(self, full: str, kind: str, n: int,
                 only: list[dict] | None = None) -> list[_GObj]:
        """The issue's comments (a pull request's are its issue's: the fake's one thread,
        which REST shows too), or `only` those."""
        owner = full.split("/", 1)[0]
        rid = self.fake._repo_id(full)
        out = []
        for c in self.fake._thread(full, n) if only is None else only:
            web = "pull" if kind == "pulls" else "issues"
            out.append(_GObj(
                "IssueComment", ("Comment", "Reactable", "Minimizable", "Deletable",
                                 "Updatable", "UniformResourceLocatable"),
                id=_node_id("IC", rid, c["id"]), databaseId=c["id"], body=c["body"],
                bodyText=c["body"], author=self.user(c["login"]),
                authorAssociation="OWNER" if c["login"] == owner else "NONE",
                createdAt=_iso(c["created"]), updatedAt=_iso(c["updated"]),
                includesCreatedEdit=False, isMinimized=False, minimizedReason=None,
                reactionGroups=lambda a: self.reactions(),
                url=f"{WEB_ORIGIN}/{full}/{web}/{n}#issuecomment-{c['id']}",
                viewerDidAuthor=c["login"] == self.cred.login, viewerCanUpdate=True,
                viewerCanDelete=True))
        return out

    @staticmethod
    def reactions() -> list[_GObj]:
        return [_GObj("ReactionGroup", content=content, viewerHasReacted=False,
                      users=_GObj("ReactingUserConnection", totalCount=0, nodes=[]),
                      reactors=_GObj("ReactorConnection", totalCount=0, nodes=[]))
                for content in REACTIONS]

    def releases(self, full: str) -> list[_GObj]:
        out = []
        for i in range(RELEASES_PER_REPO):
            tag = f"v1.{RELEASES_PER_REPO - 1 - i}.0"
            when = _iso(EPOCH - 86400 * 7 * i)
            rid = _num(f"release:{full}:{tag}", 10**9)
            out.append(_GObj(
                "Release", ("UniformResourceLocatable", "Reactable"),
                id=_node_id("RE", self.fake._repo_id(full), rid), databaseId=rid, name=tag,
                tagName=tag, isDraft=False, isLatest=i == 0, isPrerelease=False,
                createdAt=when, publishedAt=when, url=f"{WEB_ORIGIN}/{full}/releases/tag/{tag}",
                description=f"Release {tag} of {full}."))
        return out

    # -- lists, search, lookups -- #

    def pull_list(self, full: str, a: dict) -> list[_GObj]:
        states = a.get("states") or ["OPEN", "CLOSED", "MERGED"]
        base, head = a.get("baseRefName"), a.get("headRefName")
        found = []
        for n in range(LIST_LENGTH, 0, -1):
            state = "OPEN" if n % 4 else "CLOSED"
            if state in states and base in (None, "main") and head in (None, f"feature-{n}"):
                found.append(self.pull(full, n))
        return found

    def issue_list(self, full: str, a: dict) -> list[_GObj]:
        states = a.get("states") or ["OPEN", "CLOSED"]
        filters = a.get("filterBy") or {}
        owner = full.split("/", 1)[0]
        found = []
        for n in range(self.issue_count(full), 0, -1):
            stored = self.fake._issues.get(full, {}).get(n) or {}
            state = (stored.get("state") or ("open" if n % 3 else "closed")).upper()
            author = stored.get("login") or owner
            if state not in states or filters.get("createdBy") not in (None, author):
                continue
            if filters.get("assignee") or filters.get("mentioned") or filters.get("labels"):
                continue  # nobody is assigned, mentioned or labelled in the fake
            found.append(self.issue(full, n))
        return found

    def search(self, a: dict) -> _GObj:
        """Issue and pull request search in one repository (`repo:o/r`), with GitHub's
        qualifiers gh uses: is:/type:/state:/author:/label:, other words in the title."""
        query, kind = str(a.get("query") or ""), a.get("type")
        terms = re.findall(r'(?:[^\s"]+|"[^"]*")+', query)
        repo, want, state, author, words, nothing = None, None, None, None, [], False
        for term in terms:
            key, colon, value = term.partition(":")
            value = value.strip('"')
            if colon and key == "repo":
                repo = value
            elif colon and key in ("is", "type") and value in ("pr", "issue"):
                want = value
            elif colon and (key == "state" or (key == "is" and value in ("open", "closed"))):
                state = value.upper()
            elif colon and key == "author":
                author = value
            elif colon and key in ("label", "assignee", "mentions", "milestone"):
                nothing = True
            elif colon and key in ("sort", "in", "archived", "draft"):
                continue
            else:
                words.append(term.lower())
        found: list[_GObj] = []
        if kind in ("ISSUE", "ISSUE_ADVANCED") and repo and "/" in repo and not nothing \
                and self.readable(repo):
            owner = repo.split("/", 1)[0]
            if want in (None, "issue"):
                for n in range(self.issue_count(repo), 0, -1):
                    stored = self.fake._issues.get(repo, {}).get(n) or {}
                    title = stored.get("title") or f"Issue {n} of {repo}"
                    st = (stored.get("state") or ("open" if n % 3 else "closed")).upper()
                    if (state in (None, st) and author in (None, stored.get("login") or owner)
                            and all(w in title.lower() for w in words)):
                        found.append(self.issue(repo, n))
            if want in (None, "pr"):
                for n in range(LIST_LENGTH, 0, -1):
                    st = "OPEN" if n % 4 else "CLOSED"
                    title = f"Pull request {n} of {repo}"
                    if (state in (None, st) and author in (None, owner)
                            and all(w in title.lower() for w in words)):
                        found.append(self.pull(repo, n))
        conn = self.connection("SearchResultItemConnection", found, a)
        conn.fields.update(issueCount=len(found), repositoryCount=0, userCount=0,
                           discussionCount=0, wikiCount=0, codeCount=0)
        return conn

    def pull_or_error(self, full: str, number: object) -> _GObj:
        if isinstance(number, int) and 1 <= number <= LIST_LENGTH:
            return self.pull(full, number)
        raise _GqlFieldError(f"Could not resolve to a PullRequest with the number of {number}.",
                             "NOT_FOUND")

    def issue_or_error(self, full: str, number: object) -> _GObj:
        if isinstance(number, int) and 1 <= number <= self.issue_count(full):
            return self.issue(full, number)
        raise _GqlFieldError(f"Could not resolve to an Issue with the number of {number}.",
                             "NOT_FOUND")

    def issue_or_pull(self, full: str, number: object) -> _GObj:
        # Issues and pull requests share numbers on GitHub; here the issue wins.
        if isinstance(number, int) and 1 <= number <= self.issue_count(full):
            return self.issue(full, number)
        if isinstance(number, int) and 1 <= number <= LIST_LENGTH:
            return self.pull(full, number)
        raise _GqlFieldError("Could not resolve to an issue or pull request with the number "
                             f"of {number}.", "NOT_FOUND")

    def find(self, node_id: object) -> tuple[str, str, int] | None:
        """(kind, owner/name, number) of a repository ("repository", n=0), issue ("issues")
        or pull request ("pulls") id; None for an id of nothing the caller may read."""
        parts = _node_parts(node_id) if isinstance(node_id, str) else None
        kinds = {("R", 1): "repository", ("I", 2): "issues", ("PR", 2): "pulls"}
        kind = parts and kinds.get((parts[0], len(parts[1])))
        full = kind and self.fake._repo_names.get(parts[1][0])
        if not full or not self.readable(full):
            return None
        if kind == "repository":
            return kind, full, 0
        count = self.issue_count(full) if kind == "issues" else LIST_LENGTH
        seed = "issue" if kind == "issues" else "pull"
        for n in range(1, count + 1):
            if _num(f"{seed}:{full}#{n}", 10**9) == parts[1][1]:
                return kind, full, n
        return None

    def node(self, node_id: object) -> _GObj:
        found = self.find(node_id)
        if found is None:
            raise _GqlFieldError(f"Could not resolve to a node with the global id of "
                                 f"'{node_id}'", "NOT_FOUND")
        kind, full, n = found
        if kind == "repository":
            return self.repository(full)
        return self.issue(full, n) if kind == "issues" else self.pull(full, n)

    def connection(self, typename: str, items: list, a: dict) -> _GObj:
        """GitHub's cursor connections: first/last (at most 100), after/before."""
        first, last = a.get("first"), a.get("last")
        for arg, value in (("first", first), ("last", last)):
            if isinstance(value, int) and value > GQL_MAX_PAGE:
                raise _GqlFieldError(
                    f"Requesting {value} records on the connection exceeds the `{arg}` limit "
                    f"of {GQL_MAX_PAGE} records.", "EXCESSIVE_PAGINATION")
        start, end = 0, len(items)
        after, before = _cursor_index(a.get("after")), _cursor_index(a.get("before"))
        if a.get("after") and after is not None:
            start = min(end, after)
        if a.get("before") and before is not None:
            end = max(start, min(end, before - 1))
        if isinstance(first, int):
            end = min(end, start + max(0, first))
        if isinstance(last, int):
            start = max(start, end - max(0, last))
        page = list(range(start, end))
        edges = [_GObj(typename.replace("Connection", "Edge"), cursor=_cursor(i + 1),
                       node=items[i]) for i in page]
        return _GObj(
            typename, totalCount=len(items), nodes=[items[i] for i in page], edges=edges,
            pageInfo=_GObj("PageInfo", hasNextPage=end < len(items), hasPreviousPage=start > 0,
                           startCursor=_cursor(start + 1) if page else None,
                           endCursor=_cursor(end) if page else None))

    # -- mutations -- #

    def add_comment(self, a: dict) -> _GObj:
        fake = self.fake
        given = a.get("input") if isinstance(a.get("input"), dict) else {}
        subject = str(given.get("subjectId") or "")
        kind, full, n = self.find(subject) or ("", "", 0)
        if kind not in ("issues", "pulls"):
            raise _GqlFieldError(f"Could not resolve to a node with the global id of "
                                 f"'{subject}'", "NOT_FOUND")
        body = given.get("body")
        if not isinstance(body, str) or not body.strip():
            raise _GqlFieldError("Body cannot be blank", "UNPROCESSABLE")
        # The issue's one thread (REST shows it too), and every view of it changes.
        comment = fake._add_comment(full, n, body, self.cred.login or "ghost")
        subject_obj = self.issue(full, n) if kind == "issues" else self.pull(full, n)
        node = self.comments(full, kind, n, [comment])[-1]
        return _GObj("AddCommentPayload", clientMutationId=given.get("clientMutationId"),
                     subject=subject_obj,
                     commentEdge=_GObj("IssueCommentEdge", cursor=_cursor(1), node=node),
                     timelineEdge=_GObj("IssueTimelineItemEdge", cursor=_cursor(1), node=node))


def _readme(full: str, api: str) -> dict:
    """GET /repos/o/r/readme as GitHub answers it (a contents object, base64)."""
    text = f"# {full.split('/', 1)[1]}\n\nFake repository {full}.\n"
    sha = hashlib.sha1(f"blob {len(text)}\0{text}".encode()).hexdigest()
    url = f"{api}/repos/{full}/contents/README.md?ref=main"
    return {"name": "README.md", "path": "README.md", "sha": sha, "size": len(text),
            "url": url, "html_url": f"{WEB_ORIGIN}/{full}/blob/main/README.md",
            "git_url": f"{api}/repos/{full}/git/blobs/{sha}",
            "download_url": f"https://raw.githubusercontent.com/{full}/main/README.md",
            "type": "file", "content": base64.encodebytes(text.encode()).decode(),
            "encoding": "base64", "_links": {"self": url,
                                              "git": f"{api}/repos/{full}/git/blobs/{sha}",
                                              "html": f"{WEB_ORIGIN}/{full}/blob/main/README.md"}}


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #

@dataclass
class _Request:
    method: str
    path: str                 # as requested, without query
    norm: str                 # version key
    raw_path: str             # path + "?" + query, for stats
    query_pairs: list[tuple[str, str]]
    query: dict[str, str]
    host: str
    base: str                 # the API base URL answers name: scheme://Host
    client: str
    authorization: str | None
    if_none_match: str | None
    if_modified_since: str | None
    accept: str | None
    media: _Media
    api_version: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case, no Authorization


class _Tracking:
    """Servers that can cut their open keep-alive connections on stop()."""

    daemon_threads = True       # never let a stuck client block shutdown
    allow_reuse_address = True
    request_queue_size = 512    # a fleet connecting at once must not hit SYN retries (1 s)
    fake: FakeGitHub
    scheme = "http"

    def __init__(self, *args, **kwargs) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(sock)

    def close_connections(self) -> None:
        with self._connections_lock:
            socks = list(self._connections)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up mid-response are normal in benchmarks; only show
        # tracebacks when asked to.
        if self.fake.verbose:
            super().handle_error(request, client_address)


class _Server(_Tracking, ThreadingHTTPServer):
    pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class _UnixServer(_Tracking, socketserver.ThreadingUnixStreamServer):
    # The socket plays https://api.github.com itself (gh's http_unix_socket
    # sends Host: api.github.com over plain HTTP), so answers name that base.
    scheme = "https"


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 gives keep-alive, which real clients (and the node) rely on;
    # it obliges us to always send a correct Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one buffered write (flushed by the base class
    # after each request) and Nagle is off: otherwise a small body trailing
    # its headers waits for a delayed ACK, adding ~40 ms to every answer and
    # swamping the latency the benchmarks mean to measure.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "github.com"

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header is GitHub's clock, which tests may set apart from ours.
        now = time.time() if timestamp is None else timestamp
        return formatdate(now + self.server.fake.clock_offset_s, usegmt=True)

    def address_string(self) -> str:
        # A Unix-socket peer has no address (client_address is "").
        return self.client_address[0] if self.client_address else "unix"

    def setup(self) -> None:
        # TCP_NODELAY exists on TCP sockets only.
        self.disable_nagle_algorithm = not isinstance(self.server, _UnixServer)
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        # Always drain the request body, even when unused: leftover bytes
        # would be parsed as the next request on a keep-alive connection.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path = split.path or "/"
        pairs = parse_qsl(split.query, keep_blank_values=True)
        body = self._read_body()

        if path == "/_fake" or path.startswith("/_fake/"):
            self._control(method, path, dict(pairs))
            return

        key, over = fake._arrive(self.headers.get("Authorization"), self.address_string())
        try:
            # Simulated network + server time.  Sleeping in the handler thread
            # (outside the lock) lets concurrent requests overlap like real ones.
            # A request over the concurrency limit is refused at once, as GitHub does.
            delay = fake.path_latency_ms.get(path, fake.latency_ms)
            if delay > 0 and not over:
                time.sleep(delay / 1000.0)
            self._answer(fake, method, path, split.query, pairs, body, key, over)
            self.wfile.flush()  # in flight until the answer has left
        finally:
            fake._depart(key)

    def _answer(self, fake: "FakeGitHub", method: str, path: str, query: str,
                pairs: list[tuple[str, str]], body: bytes, key: str, over: bool) -> None:
        default_host = UNIX_HOST if self.server.scheme == "https" else fake.url[7:]
        host = self.headers.get("Host") or default_host
        req = _Request(
            method=method,
            path=path,
            norm=_normalize(path),
            raw_path=path + (f"?{query}" if query else ""),
            query_pairs=pairs,
            query=dict(pairs),
            host=host,
            base=f"{self.server.scheme}://{host}",
            client=self.address_string(),
            authorization=self.headers.get("Authorization"),
            if_none_match=self.headers.get("If-None-Match"),
            if_modified_since=self.headers.get("If-Modified-Since"),
            accept=self.headers.get("Accept"),
            media=_media(self.headers.get("Accept")),
            api_version=self.headers.get("X-GitHub-Api-Version"),
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()
                     if k.lower() != "authorization"},
        )
        reply, headers = fake._process(req, key, over)
        late = fake.read_delay_ms.get(path, 0) if method in ("GET", "HEAD") else 0
        if late > 0:
            time.sleep(late / 1000.0)
        self._send(reply.status, headers, reply.body, head=method == "HEAD")

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        # 204 and 304 must not carry a body or a Content-Length of one; HEAD
        # announces the length the GET body would have.
        no_body = status in (204, 304)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body and not head:
            self.wfile.write(body)

    # -- control API ------------------------------------------------------------ #

    def _control(self, method: str, path: str, query: dict[str, str]) -> None:
        """``/_fake/*``: test instrumentation, outside GitHub's semantics."""
        fake = self.server.fake
        if path == "/_fake/ip":
            # An IP-echo service like api.ipify.org: the caller's address as plain text
            # (or ?ip=..., to play a public address on loopback).
            text = query.get("ip") or self.address_string()
            self._send(200, {"Content-Type": "text/plain"}, text.encode(),
                       head=method == "HEAD")
            return
        reads = {"/_fake/stats": fake.stats, "/_fake/requests": fake.request_log}
        writes = ("/_fake/reset", "/_fake/mutate", "/_fake/fail", "/_fake/latency",
                  "/_fake/limits")
        status, payload = 200, None
        try:
            if path in reads:
                if method not in ("GET", "HEAD"):
                    status, payload = 405, {"message": "use GET"}
                else:
                    payload = reads[path]()
            elif path in writes:
                if method != "POST":
                    status, payload = 405, {"message": "use POST"}
                elif path == "/_fake/reset":
                    fake.reset()
                    payload = {"ok": True}
                elif path == "/_fake/mutate":
                    if not query.get("path"):
                        raise ValueError("path is required")
                    target = _normalize(query["path"])
                    payload = {"path": target, "n": fake.mutate(target)}
                elif path == "/_fake/fail":
                    failure = int(query.get("status", 503))
                    count = int(query.get("count", 1))
                    retry_after = int(query.get("retry_after", 60))
                    fake.fail(failure, count, retry_after, query.get("path"))
                    payload = {"status": failure, "count": count, "retry_after": retry_after}
                elif path == "/_fake/limits":
                    fake.set_limits(
                        int(query["concurrent"]) if "concurrent" in query else None,
                        int(query["points"]) if "points" in query else None)
                    payload = {"max_concurrent": fake.max_concurrent,
                               "endpoint_points": fake.endpoint_points}
                else:
                    fake.set_latency(float(query.get("ms", 0)))
                    payload = {"latency_ms": fake.latency_ms}
            else:
                status, payload = 404, {"message": f"unknown control endpoint {path}"}
        except ValueError as exc:
            status, payload = 400, {"message": str(exc)}
        body = _json_bytes(payload)
        self._send(status, {"Content-Type": "application/json; charset=utf-8"},
                   body, head=method == "HEAD")


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake GitHub REST API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay before every API answer (not /_fake)")
    parser.add_argument("--token", action="append", default=[],
                        help="a valid token (repeatable)")
    parser.add_argument("--rate-limit", type=int, default=5000,
                        help="hourly budget per token")
    parser.add_argument("--anon-rate-limit", type=int, default=60,
                        help="hourly budget per anonymous client IP")
    parser.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT,
                        help="secondary limit: requests in flight per credential")
    parser.add_argument("--endpoint-points", type=int, default=ENDPOINT_POINTS,
                        help="secondary limit: points a minute per credential and REST"
                        " endpoint (GET 1, write 5)")
    parser.add_argument("--unix-socket", help="also answer on this Unix socket, as"
                        " https://api.github.com (for gh's http_unix_socket)")
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request to stderr")
    args = parser.parse_args(argv)

    fake = FakeGitHub(args.host, args.port, args.latency_ms, args.token,
                      args.rate_limit, anon_rate_limit=args.anon_rate_limit,
                      max_concurrent=args.max_concurrent,
                      endpoint_points=args.endpoint_points,
                      unix_socket=args.unix_socket, verbose=args.verbose)
    if args.port_file:
        # Write-then-rename so a poller never reads a half-written file.
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{fake.port}\n")
        os.replace(tmp, args.port_file)
    # The socket is already listening, so announcing readiness now is safe.
    print(f"fakegithub listening on {fake.url}", flush=True)

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
