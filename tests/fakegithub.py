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
* issue comments (list per issue and per repository, create, read, edit, delete) and
  labels on issues (list, add, replace, remove) change the issue, its pull request and
  every list that shows them (``comments`` counts, ``labels``), as on GitHub, so the
  sticky-comment pattern runs against it;
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
import hashlib
import json
import math
import os
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


def _etag(body: bytes) -> str:
    # GitHub's ETags are weak and quoted; the opaque part is a content hash.
    return 'W/"%s"' % hashlib.sha256(body).hexdigest()


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
        self.rate_limit = int(rate_limit)
        self.anon_rate_limit = int(anon_rate_limit)
        self.verbose = verbose

        # One lock guards every piece of mutable state below.  Handlers do
        # all their bookkeeping and body building while holding it (it is all
        # in-memory and quick) and only sleep / do socket I/O outside it.
        self._lock = threading.Lock()
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
        self._failures: deque[tuple[int, int]] = deque()  # (status, retry_after)
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
        # Identities: private repositories ("o/r" lower-case) -> credential keys that may
        # read them; (repository, credential key) -> "admin" | "push" (default "pull").
        self._private: dict[str, set[str]] = {}
        self._permissions: dict[tuple[str, str], str] = {}
        self._reset_conversations()

    def reset(self) -> None:
        """Zero counters, budgets, versions, issues, pending failures and the log."""
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
            }

    def request_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def mutate(self, path: str) -> int:
        """Bump a resource's version (its body and ETag change); returns it."""
        with self._lock:
            return self._bump(self._canonical(_normalize(path)) or _normalize(path))

    def fail(self, status: int, count: int = 1, retry_after: int = 60) -> None:
        """Make the next ``count`` API requests answer ``status``."""
        if not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        with self._lock:
            self._failures.extend([(status, retry_after)] * max(0, count))

    # -- identities --------------------------------------------------------- #

    def make_private(self, full: str, readers: list[str] | tuple[str, ...] = ()) -> None:
        """Make repository ``owner/name`` private: only ``readers`` (tokens) see it."""
        with self._lock:
            self._private[full.lower()] = {self._token_key(t) for t in readers}

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
            return _Credential(self._token_key(value), True,
                               f"user ID {_num('user:' + login, 10**8)}", login)
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

    def _process(self, req: "_Request") -> tuple[_Reply, dict[str, str]]:
        """Answer one API request; returns the reply and its full headers.

        Order of checks mirrors GitHub's edge: injected (infrastructure)
        failures, then the API version, then authentication, then the budget
        of the path's rate-limit resource, then the resource itself, then
        conditional-request evaluation.
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

            if self._failures:
                status, retry_after = self._failures.popleft()
                reply = self._injected(status, retry_after, rid)
            elif req.api_version is not None and req.api_version not in API_VERSIONS:
                reply = _error(400, f"Unsupported 'X-GitHub-Api-Version' header:"
                               f" {req.api_version}. Supported versions are"
                               f" {', '.join(API_VERSIONS)}.", DOCS_VERSIONS)
            elif cred is None:
                reply = _error(401, "Bad credentials")
            elif not cred.authenticated and (
                req.method in WRITE_METHODS or req.norm in ("/user", "/graphql")
                or req.norm.startswith("/user/") or resource == "code_search"
            ):
                reply = _error(401, "Requires authentication")
            elif req.norm == "/rate_limit" and req.method in ("GET", "HEAD"):
                # Checking your limit is free and works even when exhausted.
                reply = self._rate_limit_body(cred, now)
            elif bucket.remaining <= 0:
                reply = _error(403, f"API rate limit exceeded for {cred.label}."
                               + ("" if cred.authenticated else
                                  " (But here's the good news: Authenticated requests"
                                  " get a higher rate limit. Check out the documentation"
                                  " for more details.)"), DOCS_RATE_LIMIT)
            elif canonical is None or _is_missing(canonical.strip("/").split("/")) \
                    or self._hidden(canonical, cred):
                reply = _error(404, "Not Found")
                spend = True
            elif req.method in ("GET", "HEAD"):
                reply = self._read(req, canonical, cred)
                spend = True
            elif req.norm == "/graphql" and req.method == "POST":
                reply = self._graphql(req)
                spend = True
            else:
                reply = self._write(req, canonical, cred)
                spend = True

            reply.resource = resource
            reply.encode()
            etag = _etag(reply.body) if reply.body and 200 <= reply.status < 300 else None

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
                # Presence only: the fake must never echo a credential back.
                "authorization_present": req.authorization is not None,
                "login": cred.login if cred and cred.authenticated
                else "anonymous" if cred else "bad credentials",
                "headers": dict(req.headers),
                "status": reply.status,
            })
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

    def _graphql(self, req: "_Request") -> _Reply:
        try:
            doc = json.loads(req.body or b"null")
        except ValueError:
            return _error(400, "Problems parsing JSON")
        query = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(query, str):
            return _Reply(200, {"errors": [{"message": "A query attribute must be"
                                            " specified and must be a string."}]})
        return _Reply(200, {"data": {"queryLength": len(query)}})

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
    # representation that shows them (the issue, the pull request, the lists, counts)
    # changes with them. Comment ids are global, as on GitHub.

    def _reset_conversations(self) -> None:
        # "o/r" (lower-case) -> issue number -> comments, oldest first; id -> (repo, number)
        self._comments: dict[str, dict[int, list[dict]]] = {}
        self._comment_at: dict[int, tuple[str, int]] = {}
        self._labels: dict[str, dict[int, list[str]]] = {}  # label names per issue
        self._next_comment = 1_000_000

    def comments(self, full: str, n: int) -> list[dict]:
        """The comments of issue ``n`` of ``full`` (tests only: id, body, login)."""
        with self._lock:
            return [dict(c) for c in self._comments.get(full.lower(), {}).get(n, [])]

    def _talk(self, api: str, full: str, n: int) -> dict:
        key = full.lower()
        return {"comments": len(self._comments.get(key, {}).get(n, [])),
                "labels": [_label(api, full, name)
                           for name in self._labels.get(key, {}).get(n, [])]}

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
                everything = sorted((c for items in self._comments.get(key, {}).values()
                                     for c in items), key=lambda c: c["id"])
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
            return self._comment_page(req, full, self._comments.get(key, {}).get(n, []), where)
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
        where = self._comment_at.get(int(ref))
        if where is None or where[0] != full.lower():
            return None
        for comment in self._comments[where[0]][where[1]]:
            if comment["id"] == int(ref):
                return comment, where[1]
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
            if req.method == "DELETE":
                self._comments[key][n].remove(comment)
                del self._comment_at[comment["id"]]
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
            self._next_comment += 1
            now = time.time()
            comment = {"id": self._next_comment, "issue": n, "body": fields["body"],
                       "login": cred.login or "ghost", "created": now, "updated": now}
            self._comments.setdefault(key, {}).setdefault(n, []).append(comment)
            self._comment_at[comment["id"]] = (key, n)
            self._talked(full, n)
            reply = _Reply(201, _comment(api, full, n, comment, None), _when(now))
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
        "node_id": f"U_kgDO{uid:08x}",
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
        "node_id": f"R_kgDO{rid:08x}",
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
        "node_id": f"I_kwDO{_num(f'issue:{full}#{n}', 10**9):08x}",
        "number": n,
        "title": stored.get("title") or f"Issue {n} of {full}",
        "user": _owner(api, stored.get("login") or owner),
        "labels": (talk or {}).get("labels", []),
        "state": state,
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": (talk or {}).get("comments", 0),
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
        "node_id": f"PR_kwDO{_num(f'pull:{full}#{n}', 10**9):08x}",
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
                     "comments": (talk or {}).get("comments", 0),
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

        # Simulated network + server time.  Sleeping in the handler thread
        # (outside the lock) lets concurrent requests overlap like real ones.
        delay = fake.path_latency_ms.get(path, fake.latency_ms)
        if delay > 0:
            time.sleep(delay / 1000.0)

        default_host = UNIX_HOST if self.server.scheme == "https" else fake.url[7:]
        host = self.headers.get("Host") or default_host
        req = _Request(
            method=method,
            path=path,
            norm=_normalize(path),
            raw_path=path + (f"?{split.query}" if split.query else ""),
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
        reply, headers = fake._process(req)
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
        writes = ("/_fake/reset", "/_fake/mutate", "/_fake/fail", "/_fake/latency")
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
                    fake.fail(failure, count, retry_after)
                    payload = {"status": failure, "count": count, "retry_after": retry_after}
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
    parser.add_argument("--unix-socket", help="also answer on this Unix socket, as"
                        " https://api.github.com (for gh's http_unix_socket)")
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request to stderr")
    args = parser.parse_args(argv)

    fake = FakeGitHub(args.host, args.port, args.latency_ms, args.token,
                      args.rate_limit, anon_rate_limit=args.anon_rate_limit,
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
