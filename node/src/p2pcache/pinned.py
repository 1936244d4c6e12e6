"""Reaching the real upstream while its name points at this node.

In transparent mode /etc/hosts sends HOST to the node itself, so the node resolves HOST
before that and connects to those addresses, with SNI and Host still HOST, verifying the
certificate against the public roots (certifi's bundle, or a configured one for a GitHub
Enterprise Server with a private CA) and never against the system store, which now trusts
the node's own per-job CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Sequence

import certifi
import httpx


def public_roots(bundle: Path | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(bundle) if bundle else certifi.where())


class PinnedTransport(httpx.AsyncBaseTransport):
    """Requests for HOST go to ADDRESSES in order (the next one on a connect failure);
    others go out as usual."""

    def __init__(self, host: str, addresses: Sequence[str], verify: ssl.SSLContext,
                 limits: httpx.Limits | None = None) -> None:
        self.host = host.lower()
        self.addresses = list(addresses)
        self._inner = httpx.AsyncHTTPTransport(
            verify=verify, trust_env=False,
            limits=limits or httpx.Limits(max_connections=64, max_keepalive_connections=32))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != self.host or not self.addresses:
            return await self._inner.handle_async_request(request)
        failure: httpx.ConnectError | None = None
        for address in self.addresses:
            # Host stays HOST (it is already in request.headers); SNI and the certificate
            # check use sni_hostname, not the address the URL now names.
            pinned = httpx.Request(
                request.method, request.url.copy_with(host=address),
                headers=request.headers, stream=request.stream,
                extensions={**request.extensions, "sni_hostname": self.host})
            try:
                return await self._inner.handle_async_request(pinned)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        await self._inner.aclose()


def transport(upstream: str, addresses: Sequence[str],
              ca_bundle: Path | None) -> httpx.AsyncBaseTransport | None:
    """The upstream's transport from settings, or None for httpx's default."""
    if not addresses and ca_bundle is None:
        return None
    host = httpx.URL(upstream).host
    return PinnedTransport(host, addresses, public_roots(ca_bundle))
