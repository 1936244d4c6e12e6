"""The GitHub REST client: one pooled async connection set, the token, no retries of its own.

Retry and stale-serving decisions live in policy.py and cache.py; this module only moves a
request to GitHub and the answer back, with a deadline. URLs are built from the parsed base
and a canonical Target (targets.py), so the token only ever goes to the configured host.
"""

from __future__ import annotations

import enum
from http.cookiejar import CookieJar

import httpx

from . import __version__, headers as fields
from .models import ApiRequest, ApiResponse
from .targets import GRAPHQL_PATHS, Base

# Request headers that select GitHub's representation: the fleet's own requests carry only
# these (and its token), so its answer is the same whoever's request caused it.
REPRESENTATION = ("accept", "x-github-api-version", "content-type")
# A client's own conditionals: passed on only when it asks with its own credentials; a
# fill made for everyone never carries them (its 304 would be another client's answer).
CONDITIONALS = ("if-none-match", "if-modified-since")
# What a client's own request loses on the way: fields about this hop (RFC 9110 §7.6.1),
# its Host (ours, not GitHub's), framing and encodings that the HTTP client sets itself.
NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"})
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class Credentials(enum.Enum):
    FLEET = "fleet"  # the fleet's reads: the node's token, representation headers only
    CLIENT = "client"  # a caller's own request (writes, GraphQL, its own reads): as it came
    CLIENT_OR_FLEET = "client-or-fleet"  # writes when the operator lends the node's token


class UpstreamError(Exception):
    """GitHub could not be reached at all (DNS, connect, timeout), or answered too much."""


class _NoCookies(CookieJar):
    """Keeps none. httpx holds a client's cookies and sends them with every later request:
    a Set-Cookie in one caller's answer would go to GitHub with the next caller's token."""

    def set_cookie(self, cookie) -> None:  # type: ignore[no-untyped-def]
        pass

    def extract_cookies(self, response, request) -> None:  # type: ignore[no-untyped-def]
        pass


class Upstream:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = Base.parse(base_url)
        self.base_url = str(self.base)
        self._token = token
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"user-agent": f"p2pcache/{__version__}"},
            follow_redirects=False, transport=transport, cookies=_NoCookies(),
        )

    def authorization(self, request: ApiRequest | None, credentials: Credentials) -> str | None:
        """The Authorization value `send` uses: whose budget the request spends."""
        fleet = f"Bearer {self._token}" if self._token else None
        if credentials is Credentials.FLEET:
            return fleet
        client_auth = request.headers.get("authorization") if request is not None else None
        if client_auth:
            return client_auth
        return fleet if credentials is Credentials.CLIENT_OR_FLEET else None

    def _headers(self, request: ApiRequest, conditional: dict[str, str],
                 credentials: Credentials) -> dict[str, str]:
        if credentials is Credentials.FLEET:
            headers = {k: v for k, v in request.headers.items() if k in REPRESENTATION}
            if self._token:
                headers["authorization"] = f"Bearer {self._token}"
            headers.setdefault("accept", "application/vnd.github+json")
        else:
            # As the client asked it: its headers (User-Agent, GraphQL-Features, Time-Zone,
            # If-Match ...) and only its credentials.
            headers = {k: v for k, v in request.headers.items()
                       if k not in NOT_FORWARDED and not k.startswith("x-p2p-")}
            if "authorization" not in headers and credentials is Credentials.CLIENT_OR_FLEET \
                    and self._token:
                headers["authorization"] = f"Bearer {self._token}"
        headers.update(conditional)
        return headers

    async def send(self, request: ApiRequest, conditional: dict[str, str] | None = None,
                   credentials: Credentials = Credentials.FLEET) -> ApiResponse:
        url = self.base.graphql_url() if request.method == "POST" \
            and request.target.path in GRAPHQL_PATHS and not request.target.query \
            else self.base.url(request.target)
        outgoing = self._client.build_request(
            request.method, url, headers=self._headers(request, conditional or {}, credentials),
            content=request.body or None)
        try:
            response = await self._client.send(outgoing, stream=True)
            try:
                body = await _read_bounded(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from None
        # Validation where GitHub's bytes enter: fields h11 could not send are dropped.
        headers = fields.clean((k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in response.headers.raw)
        for name in ("content-length", "content-encoding", "transfer-encoding", "connection",
                     "keep-alive"):
            headers.pop(name, None)  # httpx decoded the body; we frame it ourselves
        return ApiResponse(response.status_code, headers, body)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UpstreamError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
