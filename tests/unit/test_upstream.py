"""upstream.Upstream against hostile answers: the one HTTP client every caller's request to
GitHub goes through (httpx, with its real connection handling; only the socket is replaced by
httpx.MockTransport). What one answer carries must never ride along with another caller's
request, and what cannot be relayed is refused where it enters."""

from __future__ import annotations

import httpx
import pytest
import trio

from p2pcache.models import ApiRequest
from p2pcache.targets import parse
from p2pcache.upstream import MAX_RESPONSE_BYTES, Credentials, Upstream, UpstreamError


def _upstream(handler) -> Upstream:
    return Upstream("https://api.github.com", "ghp_fleet", transport=httpx.MockTransport(handler))


def test_a_cookie_set_in_one_callers_answer_never_goes_out_with_another_request() -> None:
    # httpx keeps a cookie jar per client by default and sends what it holds with every
    # later request: one caller's Set-Cookie would go to GitHub with the next caller's token
    # (or the fleet's). GitHub's API sets none; an answer that does gets it dropped.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={
            "set-cookie": "session=caller-a-secret; Path=/; Domain=api.github.com; Secure"})

    upstream = _upstream(handler)

    async def main() -> None:
        first = ApiRequest("GET", parse("/user"), {"authorization": "token ghp_caller_a"})
        await upstream.send(first, credentials=Credentials.CLIENT)
        later = [ApiRequest("GET", parse("/user"), {"authorization": "token ghp_caller_b"}),
                 ApiRequest("GET", parse("/repos/o/r"))]
        await upstream.send(later[0], credentials=Credentials.CLIENT)
        await upstream.send(later[1], credentials=Credentials.FLEET)
        await upstream.aclose()

    trio.run(main)
    assert len(seen) == 3
    for request in seen:
        assert "cookie" not in request.headers, request.headers
    assert seen[1].headers["authorization"] == "token ghp_caller_b"
    assert seen[2].headers["authorization"] == "Bearer ghp_fleet"


def test_a_redirect_is_relayed_as_it_came_never_followed_with_the_token() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(301, headers={"location": "https://evil.example/steal"})

    upstream = _upstream(handler)

    async def main() -> int:
        try:
            return (await upstream.send(ApiRequest("GET", parse("/repos/o/r")))).status
        finally:
            await upstream.aclose()

    assert trio.run(main) == 301
    assert seen == ["https://api.github.com/repos/o/r"]


def test_an_answer_larger_than_the_bound_is_refused_not_held() -> None:
    chunk = b"x" * (1 << 20)

    async def endless():
        for _ in range(MAX_RESPONSE_BYTES // len(chunk) + 1):
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    upstream = _upstream(handler)

    async def main() -> None:
        try:
            await upstream.send(ApiRequest("GET", parse("/repos/o/r")))
        finally:
            await upstream.aclose()

    with pytest.raises(UpstreamError, match="larger than"):
        trio.run(main)
