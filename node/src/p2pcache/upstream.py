"""The GitHub REST client: one pooled async connection set, the token, no retries of its own.

Retry and stale-serving decisions live in policy.py and cache.py; this module only moves a
request to GitHub and the answer back, with a deadline.
"""

from __future__ import annotations

import httpx

from . import __version__
from .models import ApiRequest, ApiResponse

# Request headers passed to GitHub. Everything else (Host, Connection, Cookie ...) is ours.
FORWARDED = ("accept", "x-github-api-version", "content-type", "if-none-match",
             "if-modified-since", "authorization")
# Response headers that describe the transfer, not the resource: we re-frame the body.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-encoding",
                        "content-length", "date", "server", "strict-transport-security",
                        "set-cookie"})


class UpstreamError(Exception):
    """GitHub could not be reached at all (DNS, connect, timeout)."""


class Upstream:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"user-agent": f"p2pcache/{__version__}"},
            follow_redirects=False,
            transport=transport,  # pinned.py in transparent mode
        )

    def _headers(self, request: ApiRequest, conditional: dict[str, str],
                 use_client_auth: bool) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        if not use_client_auth or "authorization" not in headers:
            headers.pop("authorization", None)
            if self._token:
                headers["authorization"] = f"Bearer {self._token}"
        headers.setdefault("accept", "application/vnd.github+json")
        headers.update(conditional)
        return headers

    async def send(self, request: ApiRequest, conditional: dict[str, str] | None = None,
                   use_client_auth: bool = True) -> ApiResponse:
        """use_client_auth=False for fetches made on the fleet's behalf (peer requests)."""
        try:
            response = await self._client.request(
                request.method, self.base_url + request.target,
                headers=self._headers(request, conditional or {}, use_client_auth),
                content=request.body or None)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from None
        headers = {k.lower(): v for k, v in response.headers.items()
                   if k.lower() not in HOP_BY_HOP}
        return ApiResponse(response.status_code, headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
