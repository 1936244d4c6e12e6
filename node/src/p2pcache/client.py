"""Talking to a running node over its local HTTP API (the CLI and get_global_cache use it)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

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

    def next_page(self, response: httpx.Response) -> str | None:
        match = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("link", ""))
        if not match:
            return None
        url = urlsplit(match.group(1))
        return url.path + ("?" + url.query if url.query else "")


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


__all__ = ["GlobalCache", "NodeClient", "NodeUnavailable", "get_global_cache"]
