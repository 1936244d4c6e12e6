"""Plain data passed between the layers: requests, responses, stored entries."""

from __future__ import annotations

from dataclasses import dataclass, field

from .targets import Target


@dataclass(frozen=True)
class Keyed:
    """What a request whose answer is not named by its target is stored as: a GraphQL query
    (graphql.py) is a POST to /graphql, its entry is keyed by the query and lives under the
    path of the repository it reads, so that the repository's drops reach it."""

    key: str
    path: str  # the entry's path: /repos/O/R/graphql
    cost: int = 1  # GraphQL points GitHub charges for it (graphql.estimated_cost)


@dataclass(frozen=True)
class ApiRequest:
    """A GitHub REST request as a client made it to this node."""

    method: str
    target: Target  # canonical: parsed where the request entered (targets.parse)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, valid values
    body: bytes = b""
    # The base URL the client used (scheme://its Host), for Links and hypermedia URLs in
    # answers; None when it used the upstream's own host, so GitHub's bytes go out unchanged.
    client_base: str | None = None
    # Set for a GraphQL query the fleet may share: its key and entry path (None: REST).
    keyed: Keyed | None = None


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    source: str = "miss"  # X-P2P-Cache: hit | peer | miss | revalidated | coalesced
    stale: bool = False  # served from an expired entry because upstream could not answer
    fetched_at: float | None = None  # when GitHub last vouched for this body, if cached
    generated: bool = False  # made by this node (GitHub unreachable), not GitHub's answer
    own: bool = False  # the caller's own answer (its credentials), never the fleet's
    vouched: float | None = None  # GitHub's own Date of the answer that last vouched for it
    # GitHub asked the node's token to wait until then (unix s); nothing was asked for this
    # answer, or GitHub refused it. Peers are told "paused" instead (limits.py).
    paused_until: float | None = None


@dataclass
class Entry:
    """A cached GitHub answer."""

    key: str
    path: str  # target path without the query, for invalidation by writes
    status: int
    headers: dict[str, str]
    body: bytes
    fetched_at: float  # unix seconds when GitHub last vouched for it (200 or 304)
    stored_size: int | None = None  # Store.head: the size of an entry read without its body
    # GitHub's Date (Unix seconds, its clock) of the answer that last vouched for it, for
    # --not-before; None when unknown (an older store, an answer without Date).
    vouched: float | None = None
    # When this node began asking for what it holds (this node's clock): a drop at or after
    # it means the entry may predate the change (invalidation.Drops). None: the store's now.
    asked_at: float | None = None

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def size(self) -> int:
        if self.stored_size is not None:
            return self.stored_size
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers.items())
