"""The local HTTP API: GitHub's REST paths answered through the cache, and the node's
own endpoints under /-/. HTTP/1.1 with keep-alive, on h11 and trio streams.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Awaitable, Callable

import h11
import trio

from . import policy
from .models import ApiRequest, ApiResponse

log = logging.getLogger(__name__)

MAX_REQUEST_BODY = 32 * 1024 * 1024
IDLE_TIMEOUT = 120.0
READ_TIMEOUT = 30.0


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


Handler = Callable[[ApiRequest], Awaitable[Reply]]


def json_reply(status: int, data: object) -> Reply:
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    return Reply(status, [("content-type", "application/json; charset=utf-8")], body)


def text_reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, [("content-type", content_type)], text.encode())


def api_reply(response: ApiResponse, upstream_base: str, local_base: str) -> Reply:
    """A GitHub answer as the client sees it through the node."""
    headers = []
    for name, value in response.headers.items():
        if name == "link":
            value = policy.rewrite_links(value, upstream_base, local_base)
        headers.append((name, value))
    headers.append(("x-p2p-cache", response.source))
    if response.stale:
        headers.append(("x-p2p-cache-stale", "true"))
    return Reply(response.status, headers, response.body)


def host_name(request: ApiRequest) -> str:
    """The name in the client's Host header, without port or brackets, lower case."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    return name.lower()


def refuse_browser(request: ApiRequest, bound_host: str,
                   upstream_host: str = "") -> Reply | None:
    """The API spends the node's token, so web pages must not reach it: a browser marks
    cross-site requests with Origin, and DNS rebinding shows up as a foreign Host. The
    upstream's own name is not foreign: transparent mode sends it here on purpose (and a
    rebinding page cannot present it)."""
    if "origin" in request.headers:
        return json_reply(403, {"message": "p2pcache: requests from web pages are refused"})
    host = request.headers.get("host", "")
    name = host_name(request)
    # Only a loopback-bound API is reachable by rebinding alone; one bound wider (in a
    # container, say) was exposed on purpose and is addressed by service names.
    if _loopback(bound_host) and name and name != upstream_host \
            and not _local_name(name, bound_host):
        return json_reply(403, {"message": f"p2pcache: unexpected Host {host!r}"})
    return None


def _loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _local_name(name: str, bound_host: str) -> bool:
    import ipaddress

    if name in ("localhost", bound_host) or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)  # any literal address: rebinding needs a DNS name
        return True
    except ValueError:
        return False


async def serve(host: str, port: int, handler: Handler,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners)
    await trio.serve_listeners(partial(_connection, handler), listeners)


async def serve_connection(handler: Handler, stream: trio.abc.Stream, scheme: str) -> None:
    """Answer one client connection (plain TCP, or TLS from tls.py: scheme "https")."""
    await _connection(handler, stream)


async def _connection(handler: Handler, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                event = await _next_event(conn, stream)
            if idle.cancelled_caught or isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            with trio.fail_after(READ_TIMEOUT):
                body = await _read_body(conn, stream)
            request = ApiRequest(
                event.method.decode("ascii").upper(), event.target.decode("latin-1"),
                {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
                body)
            try:
                reply = await handler(request)
            except Exception:
                log.exception("error answering %s %s", request.method, request.target)
                reply = json_reply(500, {"message": "p2pcache: internal error"})
            await _send(conn, stream, reply, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, _BodyTooLarge) as exc:
        status = 413 if isinstance(exc, _BodyTooLarge) else 400
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await _send(conn, stream, json_reply(status, {"message": str(exc)}))
            except Exception:
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
            h11.LocalProtocolError):
        pass
    finally:
        with trio.move_on_after(1):
            await stream.aclose()


class _BodyTooLarge(Exception):
    pass


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(64 * 1024)
            conn.receive_data(data)  # b"" tells h11 the peer closed
            continue
        return event  # type: ignore[return-value]


async def _read_body(conn: h11.Connection, stream: trio.SocketStream) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_REQUEST_BODY:
                raise _BodyTooLarge(f"request body over {MAX_REQUEST_BODY} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("client closed mid-request")


async def _send(conn: h11.Connection, stream: trio.SocketStream, reply: Reply,
                head: bool = False) -> None:
    headers = [(k, v) for k, v in reply.headers if k.lower() != "content-length"]
    headers.append(("content-length", str(len(reply.body))))
    data = conn.send(h11.Response(status_code=reply.status, headers=headers,
                                  reason=_reason(reply.status)))
    if not head and reply.body:
        data += conn.send(h11.Data(data=reply.body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


def _reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
