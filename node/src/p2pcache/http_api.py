"""The local HTTP API: GitHub's REST paths answered through the cache, and the node's
own endpoints under /-/. HTTP/1.1 with keep-alive, on h11 and trio streams, over TCP, a Unix
socket, or TLS (tls.py hands its streams to `serve_connection`).

This is where a client's bytes enter, so they are checked here, once: the request-target
(targets.py), the header fields, the body size, who may ask (no web pages), and which base
URL the client used. The handler behind it gets only well-formed ApiRequests.
"""

from __future__ import annotations

import ipaddress
import errno
import json
import logging
import os
import re
import socket
import stat
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import h11
import trio

from . import headers as fields
from . import policy, targets
from .models import ApiRequest, ApiResponse
from .targets import Base, TargetError

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # request line and header fields, all buffered bytes included
READ_CHUNK = 16 * 1024
MAX_REQUEST_BODY = 10 * 1024 * 1024  # per request; GET and HEAD carry none
MAX_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # all bodies of one listener together
# Per listener: a flood of one (any local process can open connections to the TCP API)
# never refuses the clients of another (the HTTPS listener, the Unix socket).
MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 120.0  # between requests on a kept-alive connection
HEAD_TIMEOUT = 10.0  # a new connection's first request head; any head, once begun
READ_TIMEOUT = 30.0
SEND_TIMEOUT = 60.0


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


Handler = Callable[[ApiRequest], Awaitable[Reply]]


@dataclass(frozen=True)
class Site:
    """What one listener knows about where it is, to judge a request's Host."""

    scheme: str  # "http" or "https"
    upstream: Base
    default_base: str  # the base to point answers at when a client sends no Host
    bound_host: str | None = None  # the TCP address bound; None for a Unix socket


def json_reply(status: int, data: object) -> Reply:
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    return Reply(status, [("content-type", "application/json; charset=utf-8")], body)


def text_reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, [("content-type", content_type)], text.encode())


def error_reply(status: int, message: str) -> Reply:
    """An error in GitHub's shape, so clients print our message as they print GitHub's."""
    return json_reply(status, {"message": f"p2pcache: {message}",
                               "documentation_url": "https://docs.github.com/rest"})


def api_reply(response: ApiResponse, upstream_base: str, client_base: str | None,
              rewrite: Callable[[bytes, str], bytes] | None = None) -> Reply:
    """A GitHub answer as the client sees it through the node: Links and hypermedia URLs
    point back at the base the client used (`rewrite`: hypermedia.Rewrites.body, else
    policy.rewrite_hypermedia); GitHub's bytes are untouched for a client that used the
    upstream's own host (client_base None)."""
    body = response.body
    if client_base is not None and "json" in response.headers.get("content-type", ""):
        body = rewrite(body, client_base) if rewrite is not None \
            else policy.rewrite_hypermedia(body, upstream_base, client_base)
    headers = []
    for name, value in response.headers.items():
        if name == "link" and client_base is not None:
            value = policy.rewrite_links(value, upstream_base, client_base)
        headers.append((name, value))
    headers.append(("x-p2p-cache", response.source))
    if response.stale:
        headers.append(("x-p2p-cache-stale", "true"))
    return Reply(response.status, headers, body)


# -- who may ask, and at which base ------------------------------------------------------

_HOST = re.compile(r"(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def refusal(request: ApiRequest, site: Site) -> Reply | None:
    """The API spends the node's token, so web pages must not reach it: a browser marks
    cross-site requests with Origin or Sec-Fetch-Site (no-cors GETs carry no Origin), and
    DNS rebinding shows up as a foreign Host."""
    if "origin" in request.headers or request.headers.get("sec-fetch-site", "none") != "none":
        return error_reply(403, "requests from web pages are refused")
    host = request.headers.get("host", "")
    if host and not _HOST.fullmatch(host):
        return error_reply(400, "the Host header is not a host[:port]")
    name = _hostname(host)
    # Only a loopback-bound API is reachable by rebinding alone; one bound wider (in a
    # container, say) was exposed on purpose and is addressed by service names. The
    # upstream's own name is never a rebinding: it is how gh (Unix socket) and the
    # transparent mode (TLS, our certificate for that name only) address the node.
    if site.bound_host is not None and _loopback(site.bound_host) and name \
            and not _local_name(name, site.bound_host) and name != site.upstream.host:
        return error_reply(403, f"unexpected Host {host!r}")
    return None


def client_base(request: ApiRequest, site: Site) -> str | None:
    """The base URL the client used: None if it addressed the upstream's own host."""
    host = request.headers.get("host", "").lower()
    if host and host in site.upstream.authorities:
        return None
    base = f"{site.scheme}://{host}" if host else site.default_base
    return base + request.target.prefix


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower()


def _loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _local_name(name: str, bound_host: str) -> bool:
    if name in ("localhost", bound_host) or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)  # any literal address: rebinding needs a DNS name
        return True
    except ValueError:
        return False


# -- listeners ---------------------------------------------------------------------------


class Limits:
    """One listener's budgets: connections, and request bodies in flight. Nothing is shared
    between listeners, so a local flood of one (slow bodies, idle connections) costs the
    clients of another nothing.

    A connection that has no request head in hand (a TLS handshake, a head on its way, a
    kept-alive connection between requests) is waiting on its client; at the cap, the one
    that has waited longest is closed to admit the new one. So idle connections cost their
    opener, and a client whose request arrives is served. Only when every connection is
    busy answering is a new one refused.
    """

    def __init__(self, name: str = "The local API", max_connections: int = MAX_CONNECTIONS,
                 on_evict: Callable[[], None] | None = None) -> None:
        self.name = name
        self.max_connections = max_connections
        self.on_evict = on_evict
        self.body_bytes = 0
        self.open: set[Slot] = set()
        self._waiting: dict[Slot, None] = {}  # insertion order: longest waiting first
        self._warned = False

    def admit(self) -> Slot | None:
        """A slot for a new connection, closing the longest-waiting one if at the cap;
        None if every connection is busy."""
        if len(self.open) >= self.max_connections:
            if not self._waiting:
                return None
            victim = next(iter(self._waiting))
            victim.evict()
            if self.on_evict is not None:
                self.on_evict()
            if not self._warned:
                self._warned = True
                log.warning("⚠️  %s holds %d connections: closing the longest idle ones to "
                            "admit new clients", self.name, self.max_connections)
        slot = Slot(self)
        self.open.add(slot)
        return slot


class Slot:
    """One admitted connection's place in its listener's budget."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.evicted = False
        self._scope: trio.CancelScope | None = None

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """While inside, the connection waits on its client and may be closed to make room:
        the block is cancelled then, and `evicted` says why."""
        with trio.CancelScope() as scope:
            self._scope = scope
            self.limits._waiting[self] = None
            try:
                yield
            finally:
                self.limits._waiting.pop(self, None)
                self._scope = None

    def evict(self) -> None:
        self.evicted = True
        self.release()
        if self._scope is not None:
            self._scope.cancel()

    def release(self) -> None:
        self.limits.open.discard(self)
        self.limits._waiting.pop(self, None)


async def serve(host: str, port: int, handler: Handler, site: Site, limits: Limits,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners)
    await trio.serve_listeners(lambda s: serve_connection(handler, s, site, limits), listeners)


async def serve_unix(path: Path, handler: Handler, site: Site, limits: Limits,
                     task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
    """The same API on a Unix socket, mode 0600: only this user's processes reach it (gh's
    `http_unix_socket` speaks plain HTTP with Host api.github.com over it)."""
    from .config import socket_answers

    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            try:
                await sock.bind(str(path))
            except OSError as exc:
                # Only a socket nobody answers on (left by a killed node) is ours to
                # replace: a live node's stays, whoever started second.
                if exc.errno != errno.EADDRINUSE or not path.is_socket() \
                        or await trio.to_thread.run_sync(socket_answers, path):
                    raise
                path.unlink()
                await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        sock.listen(128)
        listener = trio.SocketListener(sock)
        task_status.started(path)
        try:
            await trio.serve_listeners(lambda s: serve_connection(handler, s, site, limits),
                                       [listener])
        finally:
            with trio.CancelScope(shield=True):
                path.unlink(missing_ok=True)
    finally:
        sock.close()


async def serve_connection(handler: Handler, stream: trio.abc.Stream, site: Site,
                           limits: Limits,
                           handshake: Callable[[], Awaitable[bool]] | None = None) -> None:
    """One client connection, whatever it sends: nothing raised here may reach the
    listener's nursery (that would end the node). `handshake` (TLS) runs first, counted
    in the listener's budget as waiting on the client; False ends the connection."""
    try:
        slot = limits.admit()
        if slot is None:
            if handshake is None:  # on TLS a plain-text 503 would be noise: just close
                with trio.move_on_after(1):
                    await stream.send_all(_BUSY)
            return
        try:
            if handshake is not None:
                with slot.waiting():
                    ready = await handshake()
                if slot.evicted or not ready:
                    return
            await _Connection(handler, stream, site, limits, slot).run()
        finally:
            slot.release()
    except Exception:  # a bug must cost one connection, never the node
        _log_once("⚠️  A local API connection failed; the node serves on")
    finally:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await stream.aclose()
            except Exception:
                pass


_BUSY_BODY = b'{"message": "p2pcache: too many open connections; retry"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


_logged: set[str] = set()


def _log_once(message: str) -> None:
    """The traceback of each kind of failure once; a repeated bug must not flood the log."""
    exc = sys.exc_info()[1]
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc and exc.__traceback__ else None
    kind = f"{type(exc).__name__}@{frame.filename}:{frame.lineno}" if frame else repr(exc)
    if kind in _logged or len(_logged) > 100:
        log.warning("%s (%s: %s)", message, type(exc).__name__, exc)
        return
    _logged.add(kind)
    log.exception("%s", message)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection:
    def __init__(self, handler: Handler, stream: trio.abc.Stream, site: Site,
                 limits: Limits, slot: Slot) -> None:
        self.handler = handler
        self.stream = stream
        self.site = site
        self.limits = limits
        self.slot = slot
        # h11 counts only unparsed bytes; with reads of READ_CHUNK the buffer stays under
        # MAX_HEAD in all.
        self.conn = h11.Connection(h11.SERVER,
                                   max_incomplete_event_size=MAX_HEAD - READ_CHUNK)
        self.head = False  # the request being answered is a HEAD: its answer has no body

    async def run(self) -> None:
        conn = self.conn
        first = True
        try:
            while True:
                event = await self._request_head(first)
                first = False
                if not isinstance(event, h11.Request):
                    return
                self.head = event.method.upper() == b"HEAD"
                await self._exchange(event)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, _BadRequest) as exc:
            status = exc.status if isinstance(exc, _BadRequest) else exc.error_status_hint
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with trio.move_on_after(5):
                    try:
                        await _send(conn, self.stream, error_reply(status, str(exc)),
                                    head=self.head, close=True)
                    except (trio.BrokenResourceError, trio.ClosedResourceError,
                            h11.LocalProtocolError):
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass

    async def _exchange(self, event: h11.Request) -> None:
        request = self._request(event)  # raises _BadRequest before any body is read
        with trio.fail_after(READ_TIMEOUT):
            body = await self._read_body(request.method)
        if body:
            request = ApiRequest(request.method, request.target, request.headers, body,
                                 request.client_base)
        try:
            reply = refusal(request, self.site) or await self.handler(request)
        except Exception:
            _log_once(f"⚠️  Error answering {request.method} {request.target}; answered 500")
            reply = error_reply(500, "internal error (logged by the node)")
        finally:
            self.limits.body_bytes -= len(body)
        with trio.fail_after(SEND_TIMEOUT):
            await _send(self.conn, self.stream, reply, head=self.head)

    def _request(self, event: h11.Request) -> ApiRequest:
        try:
            method = event.method.decode("ascii").upper()
            target = targets.parse(event.target)
        except TargetError as exc:
            raise _BadRequest(400, str(exc)) from None
        raw: list[tuple[str, str]] = []
        for name, value in event.headers:
            try:
                raw.append((name.decode("ascii"), value.decode("ascii")))
            except UnicodeDecodeError:
                raise _BadRequest(400, f"header {name.decode('latin-1')!r} is not ASCII") \
                    from None
        headers = fields.clean(raw)
        if method in ("GET", "HEAD") and (headers.get("content-length", "0") != "0"
                                          or "transfer-encoding" in headers):
            raise _BadRequest(400, f"a {method} request has no body")
        request = ApiRequest(method, target, headers)
        return ApiRequest(method, target, headers, b"", client_base(request, self.site))

    async def _request_head(self, first: bool) -> h11.Event | None:
        """The next request's head (or whatever h11 makes of the bytes); None if the client
        waited too long, or the connection was closed to make room while it waited."""
        event = None
        with self.slot.waiting():
            event = await self._head_within(first)
        # Evicted: even a head that came in just then (its place went to a newcomer).
        return None if self.slot.evicted else event

    async def _head_within(self, first: bool) -> h11.Event | None:
        begun = first or bool(self.conn.trailing_data[0])
        deadline = trio.current_time() + (HEAD_TIMEOUT if begun else IDLE_TIMEOUT)
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = None
            with trio.move_on_at(deadline):
                data = await self.stream.receive_some(READ_CHUNK)
            if data is None:
                return None
            if data and not begun:  # idle is fine; a head on its way must be quick
                begun = True
                deadline = min(deadline, trio.current_time() + HEAD_TIMEOUT)
            self.conn.receive_data(data)  # b"" tells h11 the client closed

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(READ_CHUNK))
                continue  # b"" above tells h11 the client closed
            return event  # type: ignore[return-value]

    async def _read_body(self, method: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    self.limits.body_bytes += len(event.data)
                    if size > MAX_REQUEST_BODY:
                        raise _BadRequest(413, f"request body over {MAX_REQUEST_BODY} bytes")
                    if self.limits.body_bytes > MAX_BODY_BYTES_IN_FLIGHT:
                        raise _BadRequest(503, "too many request bodies in flight; retry")
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("client closed mid-request")
        except BaseException:
            self.limits.body_bytes -= size
            raise


_NO_BODY = frozenset({204, 304})


async def _send(conn: h11.Connection, stream: trio.abc.Stream, reply: Reply,
                head: bool = False, close: bool = False) -> None:
    headers = [(k, v) for k, v in reply.headers
               if k.lower() not in ("content-length", "connection", "transfer-encoding")]
    if not any(k.lower() == "date" for k, _ in headers):
        headers.append(("date", formatdate(usegmt=True)))
    if reply.status not in _NO_BODY:  # a 304's length would be the 200's (RFC 9110 §8.6)
        headers.append(("content-length", str(len(reply.body))))
    if close:
        headers.append(("connection", "close"))
    data = conn.send(h11.Response(status_code=reply.status, headers=headers,
                                  reason=_reason(reply.status)))
    if not head and reply.body and reply.status not in _NO_BODY:
        data += conn.send(h11.Data(data=reply.body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
