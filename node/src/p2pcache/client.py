"""Talking to a running node over its local HTTP API (the CLI and get_global_cache use it)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import targets
from .targets import Base

TIMEOUT = httpx.Timeout(60.0, connect=3.0)


class NodeUnavailable(Exception):
    pass


class NodeClient:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        # One client for all calls, and no CA bundle: the local API is plain HTTP, and
        # loading certifi's bundle costs ~0.3 s per client (`actions start` polls ~20 times).
        self._http = httpx.Client(timeout=TIMEOUT, verify=False, trust_env=False)
        # GitHub answers each caller as itself (docs/security.md §8.1): API reads carry the
        # user's token, as gh sends GH_TOKEN; without one they are anonymous, public only.
        self._auth = {"authorization": f"Bearer {token}"} if token else {}

    def get(self, target: str, headers: dict[str, str] | None = None,
            timeout: float | None = None) -> httpx.Response:
        if self._auth and not target.startswith("/-/"):
            headers = {**self._auth, **(headers or {})}
        try:
            return self._http.get(self.base + target, headers=headers,
                                  timeout=TIMEOUT if timeout is None else timeout)
        except httpx.TransportError as exc:
            raise NodeUnavailable(
                f"no node answers at {self.base} ({exc.__class__.__name__}); start one with "
                "`p2pcache serve`, or point --http / P2P_CACHE_HTTP at it") from None

    def get_text(self, target: str) -> str:
        response = self.get(target)
        response.raise_for_status()
        return response.text

    def stats(self) -> dict[str, Any]:
        response = self.get("/-/stats")
        response.raise_for_status()
        return response.json()

    def get_capped(self, target: str, headers: dict[str, str] | None,
                   max_bytes: int) -> tuple[httpx.Response, bytes, bool]:
        """GET, reading at most `max_bytes` of the body (a page can be 64 MiB): the response
        (headers only), the bytes read, and whether that is the whole body."""
        if self._auth and not target.startswith("/-/"):
            headers = {**self._auth, **(headers or {})}
        chunks: list[bytes] = []
        size = 0
        try:
            with self._http.stream("GET", self.base + target, headers=headers,
                                   timeout=TIMEOUT) as response:
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        break
        except httpx.TransportError as exc:
            raise NodeUnavailable(
                f"no node answers at {self.base} ({exc.__class__.__name__}); start one with "
                "`p2pcache serve`, or point --http / P2P_CACHE_HTTP at it") from None
        return response, b"".join(chunks)[:max_bytes], size <= max_bytes

    def next_page(self, response: httpx.Response) -> str | None:
        """The next page's target on this node, None on the last page; LinkError if the
        next link would leave the node."""
        return next_target(response.headers.get("link", ""), self.base)


class LinkError(ValueError):
    """A next-page link that does not name a page of the API on the node."""


def next_target(link: str, base: str) -> str | None:
    """The origin-form target of the `rel="next"` URL in a Link header, if it names an API
    path on `base` (the node) as targets.py parses a request-target: a path, or a URL with
    the node's own scheme, host and port. A hostile page's `<@evil:8999/x>` glued onto the
    base would name another host; LinkError for that, and for anything else."""
    for url, params in re.findall(r"<([^>]*)>([^<]*)", link):
        rel = re.search(r'\brel\s*=\s*"?([^";,]*)', params)
        if rel and "next" in rel.group(1).lower().split():
            return _target_on(url, base)
    return None


def _target_on(url: str, base: str) -> str:
    shown = url if len(url) <= 200 else url[:200] + "..."
    leaves = LinkError(f"the next page's link <{shown}> is not a path on {base}")
    if not url or not all("!" <= c <= "~" for c in url) or "\\" in url:
        raise leaves
    if url.startswith("/") and not url.startswith("//"):
        raw = url.partition("#")[0]
    else:
        node = Base.parse(base)
        parts = urlsplit(url)
        if parts.scheme.lower() != node.scheme or parts.netloc.lower() not in node.authorities:
            raise leaves
        path = parts.path
        if node.path:
            if not path.startswith(node.path + "/"):
                raise leaves
            path = path[len(node.path):]
        raw = path + ("?" + parts.query if parts.query else "")
    try:
        target = targets.parse(raw)
    except targets.TargetError:
        raise leaves from None
    if target.path == "/-" or target.path.startswith("/-/"):  # the node's own, not GitHub's
        raise leaves
    return str(target)


class GlobalCache:
    """The process's view of its node, as the setup guide's snippets use it.

    In a process that runs a node, stats come from it directly; elsewhere from the node at
    P2P_CACHE_HTTP; with no node running, the persistent peer ID and zero counters.
    """

    def get_stats(self) -> dict[str, Any]:
        from .node import running_node

        node = running_node()
        if node is not None:
            return node.stats()
        from . import config

        settings = config.load({}, need_data_dir=False)
        try:
            return NodeClient(settings.http_base).stats()
        except (NodeUnavailable, httpx.HTTPError):
            return _offline_stats(settings)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET a GitHub API path through the node."""
        from . import config

        settings = config.load({}, need_data_dir=False)
        return NodeClient(settings.http_base, settings.token).get("/" + path.lstrip("/"),
                                                                  headers)


def _offline_stats(settings: Any) -> dict[str, Any]:
    from . import identity
    from .stats import Counters

    peer_id = None
    if identity.key_path(settings.data_dir).exists():
        try:
            peer_id = str(identity.peer_id(identity.load_or_create(settings.data_dir)))
        except (identity.IdentityError, OSError):
            peer_id = None
    stats = Counters().as_dict()
    stats.update({"peer_id": peer_id, "p2p_enabled": False, "connected_peers": 0,
                  "entries": 0, "bytes": 0, "rate_limit_remaining": None,
                  "listen_addrs": [], "bootstrap_multiaddr": None,
                  "node_running": False})
    return stats


_global: GlobalCache | None = None


def get_global_cache() -> GlobalCache:
    global _global
    if _global is None:
        _global = GlobalCache()
    return _global


__all__ = ["GlobalCache", "LinkError", "NodeClient", "NodeUnavailable", "get_global_cache",
           "next_target"]
