"""The request chain: key → coalesce → store → peers → upstream (ghproxy's shape).

Decisions come from policy.py; this module only sequences the I/O around them and
counts what happened, once per request. What the fleet knows changed (a write, a peer's
drop, a reconnect: invalidation.Drops) and the event floor (--not-before) are applied where
an entry is judged (`_decide`), where a flight is keyed (`_flight_key`), and where an
answer is stored (`_save`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict, deque
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Protocol

import trio

from . import access, graphql, invalidation, policy, targets
from .access import Caller, Scope, Verdict
from .coalesce import Flights
from .invalidation import Drop, Drops
from .limits import Limits
from .models import ApiRequest, ApiResponse, Entry, Keyed
from .policy import Action, RateLimit
from .stats import Counters
from .store import Store, StoreError
from .upstream import CONDITIONALS, Credentials, Upstream, UpstreamError

log = logging.getLogger(__name__)

# What a store held when this process started was asked for before it: by a millisecond at
# least (so what this process asks for at once, on a clock that has not moved, is its own).
STARTED_BEFORE_S = 0.001
RECENT_GRAPHQL_REPOSITORIES = 256  # remembered for mutations that do not say theirs
# When the flight now storing an answer began asking (this node's clock): the entry is
# `asked_at` then, and is not stored at all if a drop that covers it came meanwhile.
_ASKED_AT: ContextVar[float | None] = ContextVar("asked_at", default=None)


@dataclass
class PeerAnswer:
    response: ApiResponse  # status 304 means "the entry you hold is still good"
    fetched_at: float


class Peers(Protocol):
    def available(self) -> bool: ...

    async def ask(self, request: ApiRequest, key: str, etag: str | None,
                  not_before: float | None = None) -> PeerAnswer | None:
        """An answer from a peer (vouched for by GitHub after `not_before`, its clock), or
        None if no peer answered in time."""

    async def invalidate(self, drop: Drop) -> bool:
        """Tell the fleet; True once every server acknowledged."""


@dataclass
class _Outcome:
    response: ApiResponse
    counted_as: str  # the counter this answer falls in (a per-request bucket, or a refresh's)


@dataclass
class Refreshed:
    """What a refresh-ahead left behind, for refresh.py's bookkeeping."""

    fetched_at: float | None  # when GitHub last vouched for the entry; None: nothing to refresh
    pause_until: float = 0.0  # refresh nothing before this (GitHub refused, failed, or holds)
    paid: bool = False  # GitHub charged for it (a 200, or an error it counts): limits.PaidShare


# Why a caller's own credentials answered it (each a counter; stats.py).
_REASONS = {Verdict.IDENTITY: "identity_requests", Verdict.FLEET_BLIND: "fleet_blind_requests",
            Verdict.REFUSED: "refused_requests"}
_RATE_LIMIT = targets.parse("/rate_limit")  # GitHub does not count asking it


def _path(request: ApiRequest) -> str:
    """The path an answer is stored, dropped and floored under."""
    return request.keyed.path if request.keyed is not None else request.target.path


def _coalesced(outcome: _Outcome) -> _Outcome:
    """Another caller's flight answered: the same answer, counted as coalesced."""
    return _Outcome(dataclasses.replace(outcome.response, source="coalesced"), "coalesced")


def _credential_headers(headers: dict[str, str]) -> dict[str, str]:
    """What a check asked on a caller's behalf carries of its request: who it is."""
    return {k: v for k, v in headers.items() if k in ("authorization", "user-agent")}


class _RefreshFailed(Exception):
    def __init__(self, pause_until: float | None, paid: bool = False) -> None:
        self.pause_until = pause_until
        self.paid = paid


class NotForPeers(ValueError):
    """A peer asked for an answer that depends on who asks: the fleet never shares those."""


class Cache:
    def __init__(self, store: Store, upstream: Upstream, counters: Counters, ttl: float,
                 peers: Peers | None = None, max_entry_bytes: int = 16 * 1024 * 1024,
                 clock: Callable[[], float] = time.time, lend_token: bool = False,
                 callers: access.Callers | None = None,
                 not_before: float | None = None,
                 limits: Limits | None = None) -> None:
        self.store = store
        self.upstream = upstream
        self.counters = counters
        self.ttl = ttl
        self.peers = peers
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        # Writes and GraphQL carry only the client's credentials, unless the operator lends
        # the node's token to local clients that send none (--lend-token).
        self.write_credentials = Credentials.CLIENT_OR_FLEET if lend_token \
            else Credentials.CLIENT
        self.callers = callers or access.Callers(os.urandom(32))
        self.grants = access.Grants()
        # Told of the fleet entries this node looks up for itself (a repository's
        # visibility), so refresh-ahead keeps them fresh as it does clients' asks.
        self.looked_up: Callable[[ApiRequest, ApiResponse], None] = lambda req, resp: None
        self._budgets = access.Budgets()  # each caller's rate limits, as last seen
        self.rate_limits: dict[str, RateLimit] = {}
        # GitHub's budgets per token: turns in flight, pauses (limits.py).
        self.limits = limits if limits is not None else Limits(counters=counters, clock=clock)
        self._flights: Flights[_Outcome] = Flights()
        self._checks: Flights[object] = Flights()
        self._store_warned_at = 0.0
        # What changed since: entries asked for earlier are revalidated before use. What
        # the store held before this process started may have missed anything.
        self.drops = Drops(ttl)
        self.drops.everything(clock() - STARTED_BEFORE_S)
        self.floor = not_before  # --not-before: GitHub's time, its clock
        # Our writes some server did not acknowledge: our reads of what they changed ask
        # for answers GitHub vouched for after the write (its Date) for a while.
        self._unconfirmed: deque[tuple[Drop, float, float]] = deque(maxlen=256)
        # The repositories recent GraphQL queries named (root -> when, monotonic): what a
        # mutation whose repository cannot be told may have changed.
        self._recent_graphql: OrderedDict[str, float] = OrderedDict()

    # -- entry points -------------------------------------------------------------------

    async def get(self, request: ApiRequest, from_peer: bool = False,
                  not_before: float | None = None) -> ApiResponse:
        """Answer a GET/HEAD. A client gets the answer GitHub would give it (access.py):
        the fleet's entry where the answer cannot depend on who asks and GitHub has
        confirmed the caller may read it, else the caller's own. A peer gets the fleet's,
        and never an answer that depends on who asks (peers decide for their clients);
        with `not_before`, only what GitHub vouched for after it (its clock)."""
        if from_peer:
            place = access.place(request.target.path)
            if place.scope is Scope.IDENTITY and request.target.path != place.repo:
                raise NotForPeers(f"{request.target.path} depends on who asks: ask GitHub "
                                  "with your own credentials")
            self.counters.peer_requests_served += 1
            return self._counted(await self._shared(request, True, not_before))
        caller = self.callers.of(request.headers)
        place = access.place(request.target.path)
        ahead: list[_Outcome] = []
        async with trio.open_nursery() as nursery:
            if self._ask_ahead(caller, place):
                nursery.start_soon(self._shared_ahead, request, ahead)
            verdict = await self._verdict(request, caller, place)
        if verdict is Verdict.SHARED:
            outcome = ahead[0] if ahead else await self._shared(request)
            response = outcome.response
            if place.scope is Scope.REPOSITORY \
                    and access.depends_on_caller(request.target.path, response.body):
                verdict = Verdict.IDENTITY
            elif response.status != 404 and self._refuses_fleet(response, place.repo_key):
                # (A 404 inside a repository the fleet reads is GitHub's answer to anyone
                # who may read it: that resource does not exist.)
                verdict = Verdict.FLEET_BLIND
            else:
                return self._to_client(outcome, caller)
        return self._to_client(await self._own(request, caller, _REASONS[verdict]), caller)

    def _counted(self, outcome: _Outcome) -> ApiResponse:
        """Each answer to a client or a peer falls in one bucket, once."""
        self.counters.requests += 1
        setattr(self.counters, outcome.counted_as,
                getattr(self.counters, outcome.counted_as) + 1)
        return outcome.response

    def _to_client(self, outcome: _Outcome, caller: Caller) -> ApiResponse:
        """A client's answer, counted, telling it what GitHub says about its own credential
        (its scopes, its expiry), never about the token that fetched the entry."""
        response = self._counted(outcome)
        if response.generated:
            return response
        return dataclasses.replace(response, headers=policy.for_caller(
            response.headers, self._budgets.credential(caller), not caller.anonymous,
            response.own))

    # -- who may see what (access.py decides; this asks GitHub what it must know) ---------

    async def _verdict(self, request: ApiRequest, caller: Caller,
                       place: access.Place) -> Verdict:
        """Whether the fleet's entry may answer this caller, or why it must not."""
        now = self.clock()
        if place.scope is Scope.IDENTITY:
            return Verdict.IDENTITY
        if self.grants.valid(caller, now) is False:
            return Verdict.REFUSED
        if place.scope is Scope.SHARED:
            if self.grants.fleet_refused(now):
                return Verdict.FLEET_BLIND
            return await self._valid(request, caller)
        repo, root = place.repo_key, place.repo
        assert repo is not None and root is not None
        if self.grants.is_blind(repo, now):
            return Verdict.FLEET_BLIND
        # The fleet's view of the repository says whether it is public: one entry for the
        # whole fleet, usually a hit, and remembered while it is fresh.
        lookup = ApiRequest("GET", targets.parse(root))
        vouched_at = self.grants.public_since(repo, now, self.ttl)
        if vouched_at is not None:
            self.looked_up(lookup, ApiResponse(200, {}, b"", "hit", fetched_at=vouched_at))
            return await self._valid(request, caller)
        granted = self.grants.granted(caller, repo, now)
        if granted is not None:
            return Verdict.SHARED if granted else Verdict.REFUSED
        view = (await self._shared(lookup)).response
        self.looked_up(lookup, view)
        if self._refuses_fleet(view, repo) or view.status != 200:
            return Verdict.FLEET_BLIND  # (not remembered when GitHub was only busy)
        facts = access.repository_facts(view.body)
        if facts.visibility == "public":
            for spelling in facts.roots(root):  # /repos/O/R and /repositories/ID alike
                self.grants.public(spelling, view.fetched_at or self.clock())
            return await self._valid(request, caller)
        if caller.anonymous:
            return Verdict.REFUSED  # private: GitHub's answer to anonymous is a 404
        verdict, _ = await self._checks.run(f"check {repo}{caller.key_suffix}",
                                            lambda: self._check(request, caller, place))
        return verdict  # type: ignore[return-value]

    async def _shared_ahead(self, request: ApiRequest, into: list[_Outcome]) -> None:
        try:
            into.append(await self._shared(request))
        except Exception as exc:  # asked again after the verdict if it is given at all
            log.debug("asking ahead for %s failed: %s", request.target, exc)

    def _ask_ahead(self, caller: Caller, place: access.Place) -> bool:
        """Whether to ask for the fleet's entry while GitHub is asked whether this caller
        may have it (the repository's visibility, unknown yet: one more round trip before
        the repository's first answer otherwise). Only for a caller whose token GitHub
        confirmed, or one that sends none (the node's own clients, which read public data
        with the fleet's token anyway), so a bad token never spends the fleet's budget;
        what the verdict then refuses is the fleet's entry all the same, and not given."""
        now = self.clock()
        repo = place.repo_key
        return place.scope is Scope.REPOSITORY and repo is not None \
            and self.grants.valid(caller, now) is True \
            and not self.grants.is_blind(repo, now) \
            and self.grants.public_since(repo, now, self.ttl) is None \
            and self.grants.granted(caller, repo, now) is None

    def _refuses_fleet(self, response: ApiResponse, repo: str | None = None) -> bool:
        """The fleet's token may not read this (not: GitHub is busy). A refused token, or a
        repository it cannot see, is remembered for a freshness window."""
        if response.generated or not access.fleet_cannot_see(
                response.status, policy.is_rate_limited(response)):
            return False
        now = self.clock()
        if response.status == 401:
            if not self.grants.fleet_refused(now):
                log.warning("⚠️  GitHub refuses the fleet's token (401): every caller gets "
                            "its own answer for the next %.0f s", self.ttl)
            self.grants.refuse_fleet(now + self.ttl)
        if repo is not None:
            self.grants.blind(repo, now + self.ttl)
        return True

    async def _valid(self, request: ApiRequest, caller: Caller) -> Verdict:
        """GitHub accepts the caller's credential: asked once a freshness window, with the
        /rate_limit request GitHub does not count. A bad token gets GitHub's own 401."""
        valid = self.grants.valid(caller, self.clock())
        if valid is None:
            valid, _ = await self._checks.run(f"valid{caller.key_suffix}",
                                              lambda: self._validate(request, caller))
        return Verdict.SHARED if valid is not False else Verdict.REFUSED

    async def confirm(self, credentials: dict[str, str]) -> bool | None:
        """Have GitHub confirm a credential before its first request comes (a job node's own
        token, as it starts): True, False (refused), None (anonymous, or GitHub unsure)."""
        caller = self.callers.of(credentials)
        if caller.anonymous:
            return None
        if self.grants.valid(caller, self.clock()) is None:
            await self._valid(ApiRequest("GET", _RATE_LIMIT, credentials), caller)
        return self.grants.valid(caller, self.clock())

    async def _validate(self, request: ApiRequest, caller: Caller) -> bool:
        asked = ApiRequest("GET", _RATE_LIMIT, _credential_headers(request.headers))
        response = (await self._own(asked, caller, "credential_checks")).response
        until = self.clock() + self.ttl
        if response.status == 401:
            self.grants.validated(caller, False, until)
            return False
        if response.status == 200:
            self.grants.validated(caller, True, until)
        return True  # GitHub busy or unreachable: not the caller's fault; not remembered

    async def _check(self, request: ApiRequest, caller: Caller,
                     place: access.Place) -> Verdict:
        """May this caller read this private repository? GitHub's answer to the caller's
        own GET of it, which is also the caller's own answer for the repository object:
        one request per caller and repository a freshness window (a free 304 after that)."""
        assert place.repo is not None and place.repo_key is not None
        asked = ApiRequest("GET", targets.parse(place.repo),
                           _credential_headers(request.headers))
        response = (await self._own(asked, caller, "authorization_checks")).response
        until = self.clock() + self.ttl
        if response.status == 200:
            for spelling in access.repository_facts(response.body).roots(place.repo):
                self.grants.grant(caller, spelling, True, until)
            self.grants.validated(caller, True, until)
            return Verdict.SHARED
        if response.status == 401:
            self.grants.validated(caller, False, until)
        elif response.status in (403, 404) and not policy.is_rate_limited(response):
            self.grants.grant(caller, place.repo_key, False, until)
        return Verdict.REFUSED  # the caller's own answer, whatever GitHub says to it

    # -- the fleet's entries ------------------------------------------------------------

    async def _shared(self, request: ApiRequest, from_peer: bool = False,
                      not_before: float | None = None) -> _Outcome:
        """The fleet's answer: store, then one flight per key (peers, then GitHub with the
        fleet's token). Peer requests are resolved here, never forwarded on."""
        key = policy.cache_key(request)
        floor = self._floor_for(_path(request), not_before)
        entry = self.store.get(key)  # a WAL read: fast, never waits for the writer
        if self._decide(entry, floor, count=True) is Action.SERVE:
            assert entry is not None
            return _Outcome(self._from_entry(entry, "hit"), "local_hits")
        flight = self._flight_key(key, _path(request))
        outcome, shared = await self._flights.run(flight, lambda: self._asking(
            lambda: self._fill(request, key, entry, from_peer, floor)))
        if shared and outcome.response.fetched_at is not None \
                and policy.below_floor(outcome.response.vouched, floor):
            # That flight's answer may predate our floor: one of our own, with it.
            outcome, shared = await self._flights.run(f"{flight} floor={floor}", lambda:
                self._asking(lambda: self._fill(request, key, entry, from_peer, floor)))
        return _coalesced(outcome) if shared else outcome

    # -- the caller's own entries -------------------------------------------------------

    async def _own(self, request: ApiRequest, caller: Caller, reason: str) -> _Outcome:
        """The caller's own answer, asked with its own credentials and kept under a key of
        its own on this node only (never given to a peer, never in a warm start). Its own
        If-None-Match is answered from the entry (node.py), not sent on."""
        get = ApiRequest("GET", request.target, {
            k: v for k, v in request.headers.items() if k not in CONDITIONALS})
        key = policy.cache_key(get) + caller.key_suffix
        floor = self._floor_for(request.target.path)
        entry = self.store.get(key)
        if self._decide(entry, floor, count=True) is Action.SERVE:
            assert entry is not None
            return _Outcome(self._from_entry(entry, "hit", own=caller), "local_hits")
        outcome, shared = await self._flights.run(
            self._flight_key(key, request.target.path), lambda: self._asking(
                lambda: self._own_fill(get, caller, key, entry, reason, floor)))
        return _coalesced(outcome) if shared else outcome

    async def _own_fill(self, request: ApiRequest, caller: Caller, key: str,
                        entry: Entry | None, reason: str,
                        floor: float | None = None) -> _Outcome:
        latest = self.store.get(key)
        if self._decide(latest, floor) is Action.SERVE:
            assert latest is not None
            return _Outcome(self._from_entry(latest, "hit", own=caller), "local_hits")
        entry = latest or entry
        # An entry that reaches here cannot be served as it is (stale, dropped, under the
        # floor): revalidated if it has a validator.
        conditional = policy.conditional_headers(entry)
        self.counters.client_credential_requests += 1
        setattr(self.counters, reason, getattr(self.counters, reason) + 1)
        try:
            response = await self._upstream(request, conditional, Credentials.CLIENT)
        except UpstreamError as exc:
            if entry is not None:
                log.warning("GitHub unreachable (%s); serving a caller's stale entry", exc)
                return _Outcome(self._stale(entry, own=caller), "misses")
            unreachable = _unreachable(exc)
            unreachable.own = True
            return _Outcome(unreachable, "misses")
        now = self.clock()
        self._budgets.seen(caller, response.headers, response.status)
        if response.status == 304 and entry is not None:
            self.counters.not_modified += 1
            entry = policy.refreshed(entry, response, now)
            self._save(entry)
            return _Outcome(self._from_entry(entry, "revalidated", moment=response.headers,
                                             own=caller), "misses")
        if self._storable(request, response):
            fresh = policy.entry_from(key, request, response, now)
            self._save(fresh)
            return _Outcome(self._from_entry(fresh, "miss", moment=response.headers,
                                             own=caller), "misses")
        response.source, response.own = "miss", True
        return _Outcome(response, "misses")

    @property
    def rate_limit(self) -> RateLimit:
        """The REST budget (`core`), the one most answers spend."""
        return self.rate_limits.get("core", RateLimit())

    async def passthrough(self, request: ApiRequest) -> ApiResponse:
        """Writes and GraphQL go to GitHub as they are; a write drops what it changes."""
        self.counters.passthrough += 1
        try:
            response = await self._upstream(request, {}, self.write_credentials)
        except UpstreamError as exc:
            return _unreachable(exc)
        if request.method not in policy.CACHEABLE_METHODS and response.status < 400:
            drop = invalidation.for_write(request.method, request.target, response.status,
                                          response.body)
            self.counters.invalidated += await self.dropped(
                drop, tell_fleet=True, since=policy.github_date(response.headers))
        response.source = "miss"
        return response

    # -- GraphQL (graphql.py decides what a body is; this sequences the asking) -----------

    async def graphql(self, request: ApiRequest, from_peer: bool = False,
                      not_before: float | None = None) -> ApiResponse:
        """A POST /graphql. A query the fleet may share (one repository, nothing in it that
        depends on who asks: graphql.classify) is answered as a REST read of that repository
        is: the fleet's entry, once GitHub confirmed the caller may read the repository.
        Everything else goes to GitHub as it came, with the caller's credentials; a mutation
        then drops, fleet-wide, what it touched. A peer gets only shared queries."""
        read = await trio.to_thread.run_sync(graphql.parse_request, request.body,
                                             request.headers)
        query = self._shared_query(request, read)
        if from_peer:
            if query is None:
                raise NotForPeers("only a GraphQL query of one repository that does not "
                                  "depend on who asks is answered for peers")
            self.counters.peer_requests_served += 1
            return self._counted(self._graphql_counted(
                query, await self._shared(query, True, not_before)))
        if query is None:
            return await self._graphql_as_sent(request, read)
        assert query.keyed is not None
        caller = self.callers.of(request.headers)
        place = access.place(query.keyed.path)  # repository content
        if await self._verdict(query, caller, place) is Verdict.SHARED:
            outcome = self._graphql_counted(query, await self._shared(query))
            body = outcome.response.body
            if not graphql.spent_budget(body) and not graphql.shows_drafts(read, body):
                return self._to_client(outcome, caller)
        self.counters.graphql_own += 1  # the caller may not share it: its own answer
        return await self._graphql_as_sent(request, read)

    def _shared_query(self, request: ApiRequest,
                      read: graphql.GraphQLRequest | graphql.Passthrough) -> ApiRequest | None:
        """The request as the fleet asks and stores it, if it may be shared."""
        if not isinstance(read, graphql.GraphQLRequest) or read.kind != "query":
            return None
        shape = graphql.classify(read)
        if not shape.shared or len(shape.repositories) != 1:
            return None  # several repositories: per identity (each would need a check)
        repository = next(iter(shape.repositories))
        path = f"/repos/{repository.owner}/{repository.name}/graphql"
        key = graphql.cache_key(read, self.upstream.base_url)
        self._recent_graphql[path.removesuffix("/graphql").lower()] = time.monotonic()
        while len(self._recent_graphql) > RECENT_GRAPHQL_REPOSITORIES:
            self._recent_graphql.popitem(last=False)
        return dataclasses.replace(request, keyed=Keyed(key, path,
                                                         graphql.estimated_cost(read)))

    def _graphql_counted(self, query: ApiRequest, outcome: _Outcome) -> _Outcome:
        assert query.keyed is not None
        if outcome.counted_as == "misses":
            self.counters.graphql_misses += 1
            self.counters.graphql_points_spent += query.keyed.cost
        else:
            self.counters.graphql_hits += 1
            self.counters.graphql_points_saved += query.keyed.cost
        return outcome

    async def _graphql_as_sent(self, request: ApiRequest,
                               read: graphql.GraphQLRequest | graphql.Passthrough
                               ) -> ApiResponse:
        """GitHub's answer to the caller's own request; a mutation that GitHub took drops
        the repositories it touched (all those our recent queries named, when it cannot be
        told), fleet-wide, before the caller hears back."""
        self.counters.passthrough += 1
        try:
            response = await self._upstream(request, {}, self.write_credentials)
        except UpstreamError as exc:
            return _unreachable(exc)
        response.source = "miss"
        if isinstance(read, graphql.GraphQLRequest) and read.kind == "mutation" \
                and response.status < 400:
            touched = graphql.mutation_targets(read)
            names = [(r.owner, r.name) for r in touched.repositories]
            if touched.unknown:
                horizon = time.monotonic() - self.drops.horizon
                names += [(root.split("/")[2], root.split("/")[3]) for root, at
                          in self._recent_graphql.items() if at >= horizon]
            drop = invalidation.for_repositories(names, touched.repository_ids)
            if drop:
                self.counters.graphql_mutation_drops += 1
                self.counters.invalidated += await self.dropped(
                    drop, tell_fleet=True, since=policy.github_date(response.headers))
        return response

    def _storable(self, request: ApiRequest, response: ApiResponse) -> bool:
        return policy.is_cacheable_response(response, self.max_entry_bytes) and (
            request.keyed is None or graphql.is_storable(response.status, response.body))

    # -- what changed ---------------------------------------------------------------------

    async def dropped(self, drop: Drop, tell_fleet: bool = False,
                      since: float | None = None) -> int:
        """A change this node knows of (a client's write, a webhook, a GraphQL mutation):
        what it covers is unusable here at once, in the `/repositories/<id>` spellings too;
        with `tell_fleet`, the fleet is told (waiting briefly for the servers: our next read
        must not race them) and, if a server did not acknowledge, our reads of it ask for
        what GitHub vouched for after `since` (the write's Date). Returns how many stored
        entries it covers: they stay, to be revalidated (free when GitHub says unchanged,
        which a deleted entry could not be), and are never served as they are."""
        drop = invalidation.with_graphql(drop)
        self.drops.record(drop, self.clock())
        self._forget_grants(drop)
        try:
            aliased = drop.aliased(await trio.to_thread.run_sync(self._repository_ids, drop))
        except StoreError as exc:
            self._store_failed(exc)
        else:
            if len(aliased) > len(drop):
                self.drops.record(aliased, self.clock())
            drop = aliased
        shared = invalidation.shareable(drop)
        if tell_fleet and shared and self.peers is not None \
                and not await self.peers.invalidate(shared):
            self._unconfirmed.append((shared, since or self.clock(),
                                      time.monotonic() + self.drops.horizon))
        try:
            return await trio.to_thread.run_sync(self.store.count_under, drop.paths,
                                                 drop.trees)
        except StoreError as exc:
            self._store_failed(exc)
            return 0

    async def drop(self, paths: list[str]) -> int:
        """Drop, fleet-wide, the entries at these paths and under them (a webhook
        delivery's paths, webhooks.py); how many stored entries they cover."""
        return await self.dropped(Drop((), tuple(paths)), tell_fleet=True)

    def dropped_by_peer(self, drop: Drop) -> None:
        """A peer's drop: what it covers is unusable from now (`settle` does the rest)."""
        drop = invalidation.with_graphql(drop)
        self.drops.record(drop, self.clock())
        self._forget_grants(drop)

    def _forget_grants(self, drop: Drop) -> None:
        """Dropping a repository's root also forgets who may read it (its settings or
        members may have changed): each caller is checked again."""
        for tree in drop.trees:
            place = access.place(tree)
            if place.repo is not None and place.repo == tree.rstrip("/"):
                self.grants.forget(place.repo_key)  # type: ignore[arg-type]

    async def settle(self, drop: Drop, limit: int) -> int:
        """A peer's drop, after it was applied: in the `/repositories/<id>` spellings this
        node knows too; returns how many stored entries it covers (at most `limit`)."""
        try:
            aliased = drop.aliased(await trio.to_thread.run_sync(self._repository_ids, drop))
            if len(aliased) > len(drop):
                self.drops.record(aliased, self.clock())
            return await trio.to_thread.run_sync(self.store.count_under, aliased.paths,
                                                 aliased.trees, limit)
        except StoreError as exc:
            self._store_failed(exc)
            return 0

    def revalidate_all(self, before: float) -> None:
        """Everything asked for before `before` may have missed a change (we were apart
        from the fleet)."""
        self.drops.everything(before)

    def _repository_ids(self, drop: Drop) -> dict[str, set[str]]:
        """The numeric ids of the repositories a drop touches, from what is cached (a
        thread: it reads the store)."""
        return {root: policy.repository_ids(root, self.store.entries_under(root))
                for root in drop.roots()}

    def _decide(self, entry: Entry | None, floor: float | None,
                count: bool = False) -> Action:
        """policy.decide with what this node knows changed, and the floor."""
        if entry is None:
            return Action.FETCH
        dropped = self.drops.dropped_since(entry.path, entry.asked_at or 0.0)
        now = self.clock()
        action = policy.decide(entry, now, self.ttl, dropped=dropped, floor=floor)
        if count and action is not Action.SERVE and not dropped \
                and policy.decide(entry, now, self.ttl) is Action.SERVE:
            self.counters.floor_revalidations += 1  # fresh, but maybe older than the floor
        return action

    def _floor_for(self, path: str, not_before: float | None = None) -> float | None:
        """The time (GitHub's clock) an answer for `path` must be vouched for after: the
        event floor, a peer's, or that of our own write a server did not acknowledge."""
        floors = [f for f in (self.floor, not_before) if f is not None]
        now = time.monotonic()
        while self._unconfirmed and self._unconfirmed[0][2] < now:
            self._unconfirmed.popleft()
        floors += [since for drop, since, _ in self._unconfirmed if drop.covers(path)]
        return max(floors, default=None)

    def _flight_key(self, key: str, path: str) -> str:
        """A request that arrives after a drop never shares a flight begun before it."""
        return f"{key} drop={self.drops.latest(path).seq}"

    async def _asking(self, fill: Callable[[], Awaitable[_Outcome]]) -> _Outcome:
        token = _ASKED_AT.set(self.clock())
        try:
            return await fill()
        finally:
            _ASKED_AT.reset(token)

    async def refresh(self, request: ApiRequest) -> Refreshed:
        """Revalidate a hot entry before it goes stale (refresh.py chooses which, and when).

        It runs as the key's flight: a client whose entry went stale meanwhile shares its
        answer (counted coalesced), and a client's fill already under way is shared instead
        of repeated. Its 304 is free and its 200 costs the unit the change is worth."""
        key = policy.cache_key(request)
        entry = self.store.get(key)
        if entry is None or not policy.refreshable(entry):
            return Refreshed(None)  # dropped by a write or evicted, or never worth it
        if self.clock() < self._blocked_until:
            self.counters.refreshes_skipped += 1
            return Refreshed(entry.fetched_at, self._blocked_until)
        try:
            outcome, shared = await self._flights.run(
                self._flight_key(key, request.target.path),
                lambda: self._asking(lambda: self._refill(request, key)))
        except _RefreshFailed as failed:
            return Refreshed(None if failed.pause_until is None else self._fetched_at(key),
                             failed.pause_until or 0.0, failed.paid)
        counted_as = "refreshes_skipped" if shared else outcome.counted_as
        setattr(self.counters, counted_as, getattr(self.counters, counted_as) + 1)
        return Refreshed(outcome.response.fetched_at, paid=counted_as == "refreshes_changed")

    @property
    def _fleet_key(self) -> str:
        return self.limits.key(self.upstream.authorization(None, Credentials.FLEET))

    @property
    def _blocked_until(self) -> float:
        """Until when GitHub asked the node's token to wait (0: it did not)."""
        return self.limits.paused_until(self._fleet_key) or 0.0

    def paused_for(self) -> float:
        """Seconds the node's token still waits on GitHub's word (0: it does not)."""
        return max(0.0, self._blocked_until - self.clock())

    async def _refill(self, request: ApiRequest, key: str) -> _Outcome:
        entry = self.store.get(key)
        if entry is None:
            raise _RefreshFailed(None)  # dropped while a client's flight held the key
        now = self.clock()
        if now - entry.fetched_at < self.ttl - policy.refresh_lead(self.ttl):
            # A client's revalidation got there first.
            return _Outcome(self._from_entry(entry, "hit"), "refreshes_skipped")
        self.counters.refreshes += 1
        get = ApiRequest("GET", request.target, request.headers)
        try:
            response = await self._upstream(get, policy.conditional_headers(entry),
                                            Credentials.FLEET)
        except UpstreamError as exc:
            log.warning("Refresh-ahead: GitHub unreachable (%s)", exc)
            self.counters.refreshes_failed += 1
            raise _RefreshFailed(now + policy.REFRESH_PAUSE_S) from None
        now = self.clock()
        if response.status == 304:
            entry = policy.refreshed(entry, response, now)
            self._save(entry)
            return _Outcome(self._from_entry(entry, "revalidated", moment=response.headers),
                            "refreshes_not_modified")
        if self._storable(request, response):
            fresh = policy.entry_from(key, request, response, now)
            self._save(fresh)
            return _Outcome(self._from_entry(fresh, "miss", moment=response.headers),
                            "refreshes_changed")
        self.counters.refreshes_failed += 1
        # GitHub charges for what it answered, unless it refused or failed (limits.PaidShare).
        paid = response.status < 500 and not policy.is_rate_limited(response)
        raise _RefreshFailed(policy.refresh_pause_until(response, now), paid)

    def _fetched_at(self, key: str) -> float | None:
        entry = self.store.get(key)
        return entry.fetched_at if entry is not None else None

    # -- the miss path ------------------------------------------------------------------

    async def _fill(self, request: ApiRequest, key: str, entry: Entry | None,
                    from_peer: bool, floor: float | None = None) -> _Outcome:
        # A flight that landed between our store read and our taking the lead has
        # already stored the answer: look again before asking anyone.
        latest = self.store.get(key)
        if self._decide(latest, floor) is Action.SERVE:
            assert latest is not None
            return _Outcome(self._from_entry(latest, "hit"), "local_hits")
        entry = latest or entry
        if not from_peer and self.peers is not None and self.peers.available():
            answer = await self.peers.ask(request, key, entry.etag if entry else None, floor)
            if answer is not None and answer.response.status in (200, 304) \
                    and policy.below_floor(answer.response.vouched, floor):
                answer = None  # a server that does not know not_before: GitHub it is
            if answer is not None:
                return _Outcome(await self._take_peer_answer(request, key, entry, answer),
                                "peer_hits")
            self.counters.peer_failures += 1
        return _Outcome(await self._from_upstream(request, key, entry), "misses")

    async def _take_peer_answer(self, request: ApiRequest, key: str, entry: Entry | None,
                                answer: PeerAnswer) -> ApiResponse:
        response = answer.response
        # The server's budget is the fleet's budget: show it to our clients too.
        self.rate_limits = policy.seen_rate_limits(self.rate_limits, response.headers)
        if response.status == 304 and entry is not None:
            entry = replace(entry, fetched_at=answer.fetched_at,
                            vouched=response.vouched or entry.vouched)
            self._save(entry)
            return self._from_entry(entry, "peer")
        if self._storable(request, response):
            fresh = policy.entry_from(key, request, response, answer.fetched_at)
            self._save(fresh)
            return self._from_entry(fresh, "peer")
        response.source = "peer"
        return response

    def adopt(self, offered: list[tuple[ApiRequest, ApiResponse]],
              asked_at: float | None = None) -> list[Entry]:
        """Store what a peer offered at warm start (warmstart.py), each entry as a peer's
        answer is stored, unless we hold one GitHub vouched for at least as recently, or a
        drop since we asked (`asked_at`) covers it. Blocking (SQLite): the node runs it in
        a thread. Returns the entries stored."""
        fresh: list[Entry] = []
        for request, response in offered:
            assert response.fetched_at is not None
            key = policy.cache_key(request)
            held = self.store.get(key)
            if held is not None and held.fetched_at >= response.fetched_at \
                    and not self.drops.dropped_since(held.path, held.asked_at or 0.0):
                continue
            if asked_at is not None and self.drops.dropped_since(request.target.path, asked_at):
                continue
            if policy.is_cacheable_response(response, self.max_entry_bytes):
                fresh.append(policy.entry_from(key, request, response, response.fetched_at,
                                               asked_at=asked_at))
        self.store.put_many(fresh)
        return fresh

    async def _from_upstream(self, request: ApiRequest, key: str,
                             entry: Entry | None) -> ApiResponse:
        now = self.clock()
        # An entry that reaches here cannot be served as it is (stale, dropped, under the
        # floor): revalidated if it has a validator.
        conditional = policy.conditional_headers(entry)
        get = request if request.keyed is not None \
            else ApiRequest("GET", request.target, request.headers)
        try:
            response = await self._upstream(get, conditional, Credentials.FLEET)
        except UpstreamError as exc:
            if entry is not None:
                log.warning("GitHub unreachable (%s); serving a stale entry", exc)
                return self._stale(entry)
            return _unreachable(exc)
        now = self.clock()
        if response.status == 304 and entry is not None:
            self.counters.not_modified += 1
            entry = policy.refreshed(entry, response, now)
            self._save(entry)
            return self._from_entry(entry, "revalidated", moment=response.headers)
        if self._storable(request, response):
            fresh = policy.entry_from(key, request, response, now)
            self._save(fresh)
            return self._from_entry(fresh, "miss", moment=response.headers)
        if entry is not None and policy.serve_stale_instead(response):
            stale = self._stale(entry)
            stale.paused_until = response.paused_until  # a peer is told "paused" instead
            return stale
        response.source = "miss"
        return response

    def _hold_if_limited(self, response: ApiResponse, key: str) -> None:
        """A limit answer pauses its token for the time GitHub gave (limits.py); the answer
        is marked with it, so a peer gets "paused" instead of our refusal."""
        now = self.clock()
        until = policy.blocked_until(response, now)
        if until is None:
            return
        if self.limits.pause(key, until, response):
            log.warning("GitHub rate limit: holding upstream requests for %.0f s (%s)",
                        until - now, "the node's token" if key == self._fleet_key
                        else "a client's token")
        response.paused_until = self.limits.paused_until(key)

    async def _upstream(self, request: ApiRequest, conditional: dict[str, str],
                        credentials: Credentials) -> ApiResponse:
        """One request to GitHub within its token's budget: nothing is sent while GitHub
        asked the token to wait (its refusal is replayed), and at most N go at once."""
        key = self.limits.key(self.upstream.authorization(request, credentials))
        async with self.limits.turn(key) as refusal:
            if refusal is not None:
                return refusal  # asking again would only extend the penalty
            self.counters.upstream_requests += 1
            response = await self.upstream.send(request, conditional, credentials)
        self._hold_if_limited(response, key)
        if credentials is Credentials.FLEET:  # a client's own budget is not the fleet's
            self.rate_limits = policy.seen_rate_limits(self.rate_limits, response.headers)
        return response

    # -- answers ------------------------------------------------------------------------

    def _from_entry(self, entry: Entry, source: str, moment: dict[str, str] | None = None,
                    own: Caller | None = None) -> ApiResponse:
        """An answer from an entry; `moment` is the GitHub answer that just vouched for it,
        whose request id and date the client should see (octokit reports the id). It shows
        the budget it spends, as last seen: the fleet's, or a caller's own for its own."""
        # (An entry an older version stored may hold the fetching token's credential headers.)
        headers = {k: v for k, v in entry.headers.items() if k not in policy.CREDENTIAL_HEADERS}
        if moment:
            headers.update(policy.moment_headers(moment))
        limits = self.rate_limits if own is None else self._budgets.of(own)
        bucket = limits.get(policy.resource_of(entry.headers))
        if bucket is not None:
            headers.update(bucket.headers())
        return ApiResponse(entry.status, headers, entry.body, source, fetched_at=entry.fetched_at,
                           own=own is not None, vouched=entry.vouched)

    def _stale(self, entry: Entry, own: Caller | None = None) -> ApiResponse:
        self.counters.stale_served += 1
        response = self._from_entry(entry, "hit", own=own)
        response.stale = True
        return response

    def _save(self, entry: Entry) -> None:
        # On the event loop: a put is ~0.2 ms of CPU, a thread hop for it cost more than the
        # put itself (39% of a runner's CPU per GET, bench/profile_get.py). It never waits on
        # fsync: checkpoints run in the node's flush thread (store.py).
        began = _ASKED_AT.get()
        if began is not None:
            if self.drops.dropped_since(entry.path, began):
                return  # it changed while we asked: the old state goes nowhere
            entry.asked_at = began
        try:
            self.store.put(entry)
        except StoreError as exc:
            self._store_failed(exc)

    def _store_failed(self, exc: StoreError) -> None:
        self.counters.store_errors += 1
        now = self.clock()
        if now - self._store_warned_at > 60:  # a full disk must not flood the log
            self._store_warned_at = now
            log.warning("⚠️  Cache store write failed, answering uncached: %s", exc)


def _unreachable(exc: Exception) -> ApiResponse:
    body = json.dumps({"message": f"p2pcache: GitHub API unreachable ({exc})",
                       "documentation_url": "https://docs.github.com/rest"}).encode()
    return ApiResponse(502, {"content-type": "application/json; charset=utf-8"}, body, "miss",
                       generated=True)
