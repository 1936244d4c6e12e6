"""The HTTPS listener of transparent mode: the intercepted host (api.github.com) served on
443 with the per-job leaf, each connection handed to the SAME handler as the local API.

Only HTTP/1.1 is offered (ALPN), so clients that prefer HTTP/2 (curl, Go) fall back to it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from functools import partial
from pathlib import Path

import trio

from . import http_api

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def listeners(address: str) -> list[trio.SocketListener]:
    """`fd:N` is a socket the parent bound for us (port 443 needs root, the node does not
    run as root); `host:port` is bound here."""
    if address.startswith("fd:"):
        sock = socket.socket(fileno=int(address[3:]))
        sock.setblocking(False)
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    host, _, port = address.rpartition(":")
    return await trio.open_tcp_listeners(int(port), host=host.strip("[]"))


async def serve(address: str, context: ssl.SSLContext, handler: http_api.Handler,
                site: http_api.Site, limits: http_api.Limits,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    bound = await listeners(address)
    secure = [trio.SSLListener(listener, context, https_compatible=True) for listener in bound]
    task_status.started()
    await trio.serve_listeners(partial(_connection, handler, site, limits), secure)


async def _connection(handler: http_api.Handler, site: http_api.Site, limits: http_api.Limits,
                      stream: trio.SSLStream) -> None:
    async def handshake() -> bool:
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError) as exc:
            # A client that does not trust the CA (yet) hangs up here: say so once, quietly.
            log.debug("TLS handshake failed: %s", exc)
            return False
        return True

    # Counted from accept: a connection that never finishes its handshake takes a place in
    # the listener's budget, and is the first to go when a client needs it.
    await http_api.serve_connection(handler, stream, site, limits, handshake)
