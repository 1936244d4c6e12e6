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
* list endpoints page with GitHub's ``Link`` header format.

Only the standard library is used so the file can be copied into a bare
container that has nothing but ``python3``.

Command line::

    python3 tests/fakegithub.py --host 127.0.0.1 --port 0 --latency-ms 80 \
        [--token TOKEN ...] [--rate-limit 5000] [--anon-rate-limit 60] \
        [--port-file PATH] [--verbose]

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

# Bodies always name the real API origin, never the fake's address: that way a
# representation (and so its ETag) does not depend on which Host a client used,
# exactly as on GitHub.  Only Link headers are built from the Host header.
API_ORIGIN = "https://api.github.com"
WEB_ORIGIN = "https://github.com"
DOCS = "https://docs.github.com/rest"
DOCS_RATE_LIMIT = DOCS + "/overview/resources-in-the-rest-api#rate-limiting"
DOCS_SECONDARY = DOCS + "/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"

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
    used: int = 0
    reset_at: int = 0

    def roll(self, now: float) -> None:
        # A fresh window starts lazily, like GitHub: the hour begins with the
        # first request after the previous window ran out.
        if now >= self.reset_at:
            self.used = 0
            self.reset_at = int(now) + RATE_WINDOW

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


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
    body: bytes = b""

    def encode(self) -> None:
        self.body = b"" if self.payload is None else _json_bytes(self.payload)


# --------------------------------------------------------------------------- #
# The fake
# --------------------------------------------------------------------------- #

class FakeGitHub:
    """The fake GitHub API server.

    ``tokens`` are the credentials that count as valid; each one gets a budget
    of ``rate_limit`` per hour.  Anonymous callers get ``anon_rate_limit`` per
    client IP.  The socket is bound in the constructor so ``url`` is known
    before ``start()``; ``port=0`` picks a free port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        tokens: list[str] | tuple[str, ...] | set[str] | None = None,
        rate_limit: int = 5000,
        *,
        anon_rate_limit: int = 60,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.latency_ms = float(latency_ms)
        self.tokens = frozenset(tokens or ())
        self.rate_limit = int(rate_limit)
        self.anon_rate_limit = int(anon_rate_limit)
        self.verbose = verbose

        # One lock guards every piece of mutable state below.  Handlers do
        # all their bookkeeping and body building while holding it (it is all
        # in-memory and quick) and only sleep / do socket I/O outside it.
        self._lock = threading.Lock()
        self._reset_state()

        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._serving = False

    # -- lifecycle ---------------------------------------------------------- #

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "FakeGitHub":
        """Serve from a background daemon thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
            name="fakegithub", daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread (used by the command line)."""
        self._serving = True
        try:
            self._server.serve_forever(poll_interval=POLL_INTERVAL)
        finally:
            self._serving = False

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections."""
        if self._serving:
            self._serving = False
            self._server.shutdown()
        self._server.server_close()
        # Handler threads idling on keep-alive connections would otherwise
        # keep answering after stop(); cutting their sockets ends them.
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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

    def reset(self) -> None:
        """Zero counters, budgets, versions, pending failures and the log."""
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
            return self._bump(_normalize(path))

    def fail(self, status: int, count: int = 1, retry_after: int = 60) -> None:
        """Make the next ``count`` API requests answer ``status``."""
        if not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        with self._lock:
            self._failures.extend([(status, retry_after)] * max(0, count))

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

    def _credential(self, authorization: str | None, client: str) -> _Credential | None:
        """Who is calling; None means a token GitHub would reject."""
        if not authorization:
            return _Credential(f"anon:{client}", False, client)
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() in ("token", "bearer") and value in self.tokens:
            digest = hashlib.sha256(value.encode()).hexdigest()
            login = "user-" + digest[:8]
            return _Credential(f"token:{digest[:16]}", True,
                               f"user ID {_num(login, 10**8)}", login)
        return None

    def _bucket(self, cred: _Credential, resource: str, now: float) -> _Bucket:
        key = (cred.key, resource)
        bucket = self._buckets.get(key)
        if bucket is None:
            if resource == "graphql":
                # GitHub's GraphQL API has no anonymous allowance at all.
                limit = self.rate_limit if cred.authenticated else 0
            else:
                limit = self.rate_limit if cred.authenticated else self.anon_rate_limit
            bucket = self._buckets[key] = _Bucket(limit)
        bucket.roll(now)
        return bucket

    def _request_id(self) -> str:
        self._seq += 1
        h = hashlib.sha256(f"{self.port}:{self._seq}".encode()).hexdigest().upper()
        return f"{h[:4]}:{h[4:8]}:{h[8:14]}:{h[14:20]}:{self._seq:08X}"

    def _process(self, req: "_Request") -> tuple[_Reply, dict[str, str]]:
        """Answer one API request; returns the reply and its full headers.

        Order of checks mirrors GitHub's edge: injected (infrastructure)
        failures, then authentication, then the primary budget, then the
        resource itself, then conditional-request evaluation.
        """
        now = time.time()
        with self._lock:
            rid = self._request_id()
            cred = self._credential(req.authorization, req.client)
            resource = "graphql" if req.norm == "/graphql" else "core"
            # Headers on errors for a rejected token report the caller's
            # anonymous budget, which is what GitHub shows.
            shown = cred or _Credential(f"anon:{req.client}", False, req.client)
            bucket = self._bucket(shown, resource, now)
            spend = False

            if self._failures:
                status, retry_after = self._failures.popleft()
                reply = self._injected(status, retry_after, rid)
            elif cred is None:
                reply = _error(401, "Bad credentials")
            elif not cred.authenticated and (
                req.method in WRITE_METHODS or req.norm in ("/user", "/graphql")
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
            elif req.method in ("GET", "HEAD"):
                reply = self._read(req, cred)
                spend = True
            elif req.norm == "/graphql" and req.method == "POST":
                reply = self._graphql(req)
                spend = True
            else:
                reply = self._write(req)
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

            headers = self._headers(reply, etag, bucket, rid, cred)
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
                "status": reply.status,
            })
            return reply, headers

    def _headers(self, reply: _Reply, etag: str | None, bucket: _Bucket,
                 rid: str, cred: _Credential | None) -> dict[str, str]:
        h: dict[str, str] = {}
        if reply.status not in (204, 304):
            h["Content-Type"] = "application/json; charset=utf-8"
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
        h["X-GitHub-Media-Type"] = "github.v3; format=json"
        h["X-GitHub-Api-Version-Selected"] = "2022-11-28"
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

    def _read(self, req: "_Request", cred: _Credential) -> _Reply:
        parts = req.norm.strip("/").split("/")
        if _is_missing(parts):
            return _error(404, "Not Found")
        lm = self._last_modified(req.norm)
        if parts[0] == "repos" and parts[3:] == ["actions", "secrets", "public-key"]:
            return self._secrets_public_key()
        if parts[0] == "repos" and len(parts) == 3:
            payload = _repo(parts[1], parts[2], self._version(req.norm), lm)
        elif parts[0] == "repos" and len(parts) == 4 and parts[3] in LIST_KINDS:
            return self._list(req, parts[1], parts[2], parts[3], lm)
        elif parts[0] == "users" and len(parts) == 2:
            payload = _user(parts[1], self._version(req.norm), lm)
        elif req.norm == "/user":
            payload = _user(cred.login or "user", self._version(req.norm), lm)
        else:
            payload = {"path": req.norm, "n": self._version(req.norm)}
        return _Reply(200, payload, lm)

    def _list(self, req: "_Request", owner: str, repo: str, kind: str, lm: int) -> _Reply:
        per_page = _int_param(req.query, "per_page", DEFAULT_PER_PAGE)
        if per_page < 1:
            per_page = DEFAULT_PER_PAGE
        per_page = min(per_page, MAX_PER_PAGE)
        page = max(1, _int_param(req.query, "page", 1))
        last = max(1, math.ceil(LIST_LENGTH / per_page))

        full = f"{owner}/{repo}"
        version = self._version(req.norm)
        start = (page - 1) * per_page
        # Newest first, like GitHub's default sort for all three lists.
        numbers = range(LIST_LENGTH - start, max(0, LIST_LENGTH - start - per_page), -1)
        make = {"issues": _issue, "pulls": _pull, "commits": _commit}[kind]
        items = [make(full, n, version, lm) for n in numbers]

        reply = _Reply(200, items, lm)
        if last > 1:
            reply.headers["Link"] = _link_header(req, page, last)
        return reply

    def _rate_limit_body(self, cred: _Credential, now: float) -> _Reply:
        def view(b: _Bucket) -> dict:
            return {"limit": b.limit, "used": b.used,
                    "remaining": b.remaining, "reset": b.reset_at}

        core = view(self._bucket(cred, "core", now))
        search_limit = 30 if cred.authenticated else 10
        search = {"limit": search_limit, "used": 0, "remaining": search_limit,
                  "reset": int(now) + 60}
        payload = {
            "resources": {
                "core": core,
                "search": search,
                "graphql": view(self._bucket(cred, "graphql", now)),
            },
            "rate": core,
        }
        return _Reply(200, payload)

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

    def _write(self, req: "_Request") -> _Reply:
        parts = req.norm.strip("/").split("/")
        if _is_missing(parts):
            return _error(404, "Not Found")
        try:
            received = json.loads(req.body) if req.body.strip() else None
        except ValueError:
            return _error(400, "Problems parsing JSON")
        if parts[0] == "repos" and parts[3:5] == ["actions", "secrets"] and len(parts) == 6:
            return self._put_secret(req, "/".join(parts[1:3]), parts[5], received)

        # A write makes both the resource and the collection listing it stale,
        # so caches holding either must see a new ETag on revalidation.
        version = self._bump(req.norm)
        parent = _parent(req.norm)
        if parent is not None:
            self._bump(parent)

        if req.method == "DELETE":
            self._written.discard(req.norm)
            return _Reply(204)
        if req.method == "POST":
            status = 201
        elif req.method == "PUT":
            # Create-or-replace: created the first time, replaced afterwards.
            status = 200 if req.norm in self._written else 201
        else:  # PATCH
            status = 200
        self._written.add(req.norm)
        payload = {
            "id": _num(f"{req.norm}:{version}", 10**9),
            "path": req.norm,
            "method": req.method,
            "n": version,
            "received": received,
        }
        return _Reply(status, payload, self._last_modified(req.norm))

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
# Body builders (module level: pure functions of path, version and time)
# --------------------------------------------------------------------------- #

def _error(status: int, message: str, docs: str = DOCS) -> _Reply:
    # GitHub (since 2024) also repeats the status as a string in error bodies.
    return _Reply(status, {"message": message, "documentation_url": docs,
                           "status": str(status)})


def _is_missing(parts: list[str]) -> bool:
    return parts[0] == "notfound" or (
        parts[0] == "repos" and len(parts) >= 3 and parts[2].startswith("missing-")
    )


def _not_modified_since(header: str, last_modified: int) -> bool:
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False  # an unparseable date is ignored, per RFC 9110
    return last_modified <= since


def _owner(login: str) -> dict:
    return {
        "login": login,
        "id": _num("user:" + login, 10**8),
        "type": "User",
        "site_admin": False,
        "url": f"{API_ORIGIN}/users/{login}",
        "html_url": f"{WEB_ORIGIN}/{login}",
    }


def _repo(owner: str, name: str, version: int, lm: int) -> dict:
    full = f"{owner}/{name}"
    rid = _num("repo:" + full, 10**9)
    return {
        "id": rid,
        "node_id": f"R_kgDO{rid:08x}",
        "name": name,
        "full_name": full,
        "private": False,
        "owner": _owner(owner),
        "html_url": f"{WEB_ORIGIN}/{full}",
        "description": f"Fake repository {full}",
        "fork": False,
        "url": f"{API_ORIGIN}/repos/{full}",
        "created_at": _iso(EPOCH - 86400 * (1 + _num("age:" + full, 2000))),
        "updated_at": _iso(lm),
        "pushed_at": _iso(lm),
        "homepage": None,
        "size": _num("size:" + full, 100000),
        "stargazers_count": _num("stars:" + full, 50000) + version,
        "watchers_count": _num("stars:" + full, 50000) + version,
        "language": "Python",
        "forks_count": _num("forks:" + full, 5000),
        "open_issues_count": LIST_LENGTH,
        "default_branch": "main",
        "visibility": "public",
        "archived": False,
        "disabled": False,
        "topics": [],
    }


def _user(login: str, version: int, lm: int) -> dict:
    user = _owner(login)
    user.update({
        "node_id": f"U_kgDO{user['id']:08x}",
        "name": login.title(),
        "company": None,
        "blog": "",
        "location": None,
        "public_repos": _num("repos:" + login, 300),
        "followers": _num("followers:" + login, 10000) + version,
        "following": _num("following:" + login, 500),
        "created_at": _iso(EPOCH - 86400 * (1 + _num("age:" + login, 4000))),
        "updated_at": _iso(lm),
    })
    return user


def _issue(full: str, n: int, version: int, lm: int) -> dict:
    owner = full.split("/", 1)[0]
    return {
        "id": _num(f"issue:{full}#{n}", 10**9),
        "number": n,
        "title": f"Issue {n} of {full}",
        "state": "open" if n % 3 else "closed",
        "user": _owner(owner),
        "comments": n % 7,
        "url": f"{API_ORIGIN}/repos/{full}/issues/{n}",
        "html_url": f"{WEB_ORIGIN}/{full}/issues/{n}",
        "created_at": _iso(EPOCH - 3600 * (LIST_LENGTH - n + 1)),
        "updated_at": _iso(lm),
    }


def _pull(full: str, n: int, version: int, lm: int) -> dict:
    owner = full.split("/", 1)[0]
    return {
        "id": _num(f"pull:{full}#{n}", 10**9),
        "number": n,
        "title": f"Pull request {n} of {full}",
        "state": "open" if n % 4 else "closed",
        "draft": n % 5 == 0,
        "user": _owner(owner),
        "head": {"ref": f"feature-{n}",
                 "sha": hashlib.sha1(f"{full}:head:{n}:{version}".encode()).hexdigest()},
        "base": {"ref": "main"},
        "url": f"{API_ORIGIN}/repos/{full}/pulls/{n}",
        "html_url": f"{WEB_ORIGIN}/{full}/pull/{n}",
        "created_at": _iso(EPOCH - 3600 * (LIST_LENGTH - n + 1)),
        "updated_at": _iso(lm),
    }


def _commit(full: str, n: int, version: int, lm: int) -> dict:
    owner = full.split("/", 1)[0]
    # The version is part of the sha: a change to the collection reads as
    # a push that rewrote the list.
    sha = hashlib.sha1(f"{full}:commit:{n}:{version}".encode()).hexdigest()
    date = _iso(lm - 600 * (LIST_LENGTH - n))
    return {
        "sha": sha,
        "node_id": f"C_kwDO{sha[:16]}",
        "commit": {
            "message": f"Commit {n} of {full}",
            "author": {"name": owner, "email": f"{owner}@example.com", "date": date},
            "committer": {"name": owner, "email": f"{owner}@example.com", "date": date},
        },
        "author": _owner(owner),
        "url": f"{API_ORIGIN}/repos/{full}/commits/{sha}",
        "html_url": f"{WEB_ORIGIN}/{full}/commit/{sha}",
    }


def _link_header(req: "_Request", page: int, last: int) -> str:
    """GitHub's Link header: absolute URLs, other query params kept, page
    last, rels in GitHub's order (prev, next, last, first)."""
    keep = [(k, v) for k, v in req.query_pairs if k != "page"]

    def url(n: int) -> str:
        return f"http://{req.host}{req.path}?{urlencode(keep + [('page', str(n))])}"

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
    client: str
    authorization: str | None
    if_none_match: str | None
    if_modified_since: str | None
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True       # never let a stuck client block shutdown
    allow_reuse_address = True
    request_queue_size = 512    # a fleet connecting at once must not hit SYN retries (1 s)
    fake: FakeGitHub

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


class _Server6(_Server):
    address_family = socket.AF_INET6


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

    def setup(self) -> None:
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
        delay = fake.latency_ms
        if delay > 0:
            time.sleep(delay / 1000.0)

        req = _Request(
            method=method,
            path=path,
            norm=_normalize(path),
            raw_path=path + (f"?{split.query}" if split.query else ""),
            query_pairs=pairs,
            query=dict(pairs),
            host=self.headers.get("Host") or f"{fake.host}:{fake.port}",
            client=self.client_address[0],
            authorization=self.headers.get("Authorization"),
            if_none_match=self.headers.get("If-None-Match"),
            if_modified_since=self.headers.get("If-Modified-Since"),
            body=body,
        )
        reply, headers = fake._process(req)
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
            text = query.get("ip") or self.client_address[0]
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
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request to stderr")
    args = parser.parse_args(argv)

    fake = FakeGitHub(args.host, args.port, args.latency_ms, args.token,
                      args.rate_limit, anon_rate_limit=args.anon_rate_limit,
                      verbose=args.verbose)
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
