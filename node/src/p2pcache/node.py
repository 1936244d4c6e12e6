"""The composition root: wires settings, identity, store, upstream, mesh and HTTP API, and
owns the one nursery they all run in.
"""

from __future__ import annotations

import logging
import math
import resource
import signal
import socket
import time
from typing import Any

import multiaddr
import trio

from libp2p.peer.id import ID

from . import (__version__, access, addresses, graphql, http_api, hypermedia, identity,
               invalidation, pinned, policy, tls, warmstart, webhooks)
from .cache import Cache
from .config import Settings
from .crypto import PBKDF2_ITERATIONS, Sealer, derive_key
from .http_api import Limits, Reply, Site, api_reply, error_reply, json_reply, text_reply
from .invalidation import Bucket, Drop
from .limits import Limits as GitHubLimits
from .mesh import Mesh, short
from .nat import Mapping, UpnpError, UpnpMapper
from .publish import PublishError, publish_secret, write_file
from .models import ApiRequest, ApiResponse
from .protocol import Message
from .refresh import MAX_IN_FLIGHT, PER_MINUTE, Asks, Refresher
from .stats import Counters, prometheus_text
from .store import Store, StoreError
from .upstream import Upstream

log = logging.getLogger("p2pcache")

STORE_FILE = "cache.sqlite3"
SETTLE_QUEUE = 1024  # peers' drops waiting to be looked up in the store
MULTIADDR_FILE = "multiaddr"
REPUBLISH_INTERVAL = 30.0

_running: Node | None = None  # the node of this process, for get_global_cache()


def running_node() -> Node | None:
    return _running


class StartupError(Exception):
    """The node cannot start (port taken, store unusable); one line for the user."""


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.key_pair = identity.load_or_create(settings.data_dir)
        self.peer_id = str(identity.peer_id(self.key_pair))
        self.store = Store(settings.data_dir / STORE_FILE, settings.max_bytes)
        self.upstream = Upstream(settings.upstream, settings.token, transport=pinned.transport(
            settings.upstream, settings.upstream_addresses, settings.upstream_ca_bundle))
        # Answers as a client of the node's own address reads them (hypermedia.py).
        self.rewrites = hypermedia.Rewrites(self.upstream.base_url)
        self.limits = GitHubLimits(settings.upstream_concurrency, self.counters)
        self.cache = Cache(self.store, self.upstream, self.counters, settings.ttl,
                           lend_token=settings.lend_token, limits=self.limits,
                           callers=access.Callers(
                               identity.derived_key(self.key_pair, "callers")),
                           not_before=settings.not_before)
        # Peers' drops apply at once (cache.dropped_by_peer); the store is read for them
        # after (aliases, entries covered), within a budget a peer cannot push past.
        self._to_settle, self._settling = trio.open_memory_channel[Drop](SETTLE_QUEUE)
        self._settle_budget = Bucket(invalidation.ENTRIES_PER_S, invalidation.ENTRIES_BURST)
        # What clients and peers ask for: refresh-ahead keeps it fresh, warm start offers it.
        self.asks = Asks()
        self.cache.looked_up = lambda request, response: self.asks.note(request, response,
                                                                        time.time())
        self.refresher = Refresher(self.cache, settings.ttl, asks=self.asks) \
            if settings.refresh_ahead else None
        # Each listener its own budgets: a local flood of one never refuses another's clients.
        self.tcp_limits = Limits("The local API", on_evict=self._evicted)
        self.unix_limits = Limits("The Unix socket", on_evict=self._evicted)
        self.https_limits = Limits("The HTTPS listener", on_evict=self._evicted)
        self.mesh: Mesh | None = None
        self.http_base = settings.http_base
        self.started_at = time.time()
        self.upnp: UpnpMapper | None = None
        self.echo_ip: str | None = None
        self.published: str | None = None
        # "off", "waiting" (for the first server, or its answer), "deferred" (the server said
        # when to ask again: taken later, in the background) or "done" (taken, empty, refused
        # or failed): `actions start` waits, briefly, while it is "waiting".
        self.warm_start = "waiting" if settings.bootstrap and settings.warm_start_bytes \
            else "off"

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        global _running
        s = self.settings
        log.info("p2pcache %s starting: data dir %s, upstream %s, freshness %.0f s",
                 __version__, s.data_dir, s.upstream, s.ttl)
        if s.token and _cleartext(s.upstream):
            log.warning("⚠️  %s is plain http on a non-local host: the token travels "
                        "unencrypted", s.upstream)
        for rejected in s.bootstrap_rejected:
            log.warning("⚠️  Ignoring bootstrap peer %s", rejected)
        raise_fd_limit()
        try:
            async with trio.open_nursery() as nursery:
                if s.confirm_token and s.token:
                    nursery.start_soon(self._confirm_token)
                sealer = await self._sealer()
                if sealer is not None:
                    await self._start_mesh(nursery, sealer)
                if self.mesh is not None:
                    # Before the API answers, so /-/multiaddr is final once healthz is up.
                    await self._discover_address(nursery)
                if s.webhook:  # before the API: healthz up means deliveries are received
                    await self._start_webhooks(nursery)
                await self._start_http(nursery)
                if s.https:
                    await self._start_https(nursery)
                await self._publish()
                log.info("GitHub budget: at most %d requests in flight per token; a rate-limit "
                         "answer pauses its token for the time GitHub asks",
                         s.upstream_concurrency)
                _running = self
                task_status.started(self)
                nursery.start_soon(self._stop_on_signal, nursery.cancel_scope)
                nursery.start_soon(self._republish_loop)
                nursery.start_soon(self._flush_recency_loop)
                nursery.start_soon(self._settle_loop)
                if s.not_before is not None:
                    log.info("Event floor %s: nothing GitHub vouched for earlier is served "
                             "without revalidation", time.strftime(
                                 "%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.not_before)))
                if self.refresher is not None:
                    log.info("Refresh-ahead on: entries asked for more than once are "
                             "revalidated up to %.0f s before they go stale (at most %d at "
                             "once, %d a minute)", policy.refresh_lead(s.ttl), MAX_IN_FLIGHT,
                             PER_MINUTE)
                    nursery.start_soon(self.refresher.run)
        finally:
            _running = None
            await self._close()

    async def _sealer(self) -> Sealer | None:
        s = self.settings
        if not s.secret:
            log.warning("⚠️  No fleet secret (set P2P_CACHE_SECRET, GH_TOKEN or GITHUB_TOKEN): "
                        "P2P sharing is off, this node caches for itself only")
            return None
        log.info("Deriving the fleet key (PBKDF2-HMAC-SHA256, %s iterations)...",
                 f"{PBKDF2_ITERATIONS:,}")
        key = await trio.to_thread.run_sync(derive_key, s.secret, s.namespace)
        sealer = Sealer(key)
        log.info("Fleet key fingerprint %s, namespace %r (must match on every node)",
                 sealer.fingerprint, s.namespace)
        return sealer

    async def _start_mesh(self, nursery: trio.Nursery, sealer: Sealer) -> None:
        s = self.settings
        family = "ip6" if ":" in s.listen_host else "ip4"
        listen = multiaddr.Multiaddr(f"/{family}/{s.listen_host}/tcp/{s.port}")
        _check_port_free(s.listen_host, s.port)
        mesh = Mesh(self.key_pair, listen, s.bootstrap, sealer, self.counters,
                    self._serve_peer, s.peer_timeout, s.namespace, s.peer_silence,
                    offer=self._offer_warm, offer_version=self._offer_version,
                    on_server=self._warm_start if s.warm_start_bytes else None,
                    apply_drop=self._apply_peer_drop, revalidate_all=self.cache.revalidate_all,
                    ttl=s.ttl)
        ready = trio.Event()

        async def run_mesh() -> None:
            try:
                async with mesh.running():
                    ready.set()
                    await trio.sleep_forever()
            except OSError as exc:
                raise StartupError(f"cannot listen for peers on {listen}: {exc.strerror or exc}")

        nursery.start_soon(run_mesh)
        await ready.wait()
        self.mesh = mesh
        self.cache.peers = mesh

    async def _start_http(self, nursery: trio.Nursery) -> None:
        s = self.settings
        site = Site("http", self.upstream.base, self.http_base, bound_host=s.http_host)
        try:
            await nursery.start(http_api.serve, s.http_host, s.http_port, self.handle_http,
                                site, self.tcp_limits)
        except OSError as exc:
            raise StartupError(f"cannot serve the local API on {s.http_host}:{s.http_port}: "
                               f"{exc.strerror or exc}") from None
        if s.unix_socket is not None:
            try:
                # gh (http_unix_socket) believes it speaks https to the host it names.
                await nursery.start(http_api.serve_unix, s.unix_socket, self.handle_http,
                                    Site("https", self.upstream.base, self.http_base),
                                    self.unix_limits)
            except OSError as exc:
                raise StartupError(f"cannot serve the local API on the Unix socket "
                                   f"{s.unix_socket}: {exc.strerror or exc}") from None
            log.info("✓ Local API also on the Unix socket %s (mode 0600; for gh: "
                     "gh config set http_unix_socket %s)", s.unix_socket, s.unix_socket)
        bound = f"{s.http_host}:{s.http_port}"
        where = self.http_base if self.http_base.endswith("//" + bound) else \
            f"{bound} ({self.http_base} from this machine)"
        log.info("✓ Local API on %s (GitHub REST paths, /-/stats, /-/multiaddr)", where)

    async def _start_https(self, nursery: trio.Nursery) -> None:
        s = self.settings
        assert s.https and s.tls_cert and s.tls_key
        try:
            context = tls.server_context(s.tls_cert, s.tls_key)
            # No Host check beyond the upstream's: our certificate names only that host, so
            # no rebinding page can complete a handshake here.
            site = Site("https", self.upstream.base, self.http_base)
            await nursery.start(tls.serve, s.https, context, self.handle_http, site,
                                self.https_limits)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot serve HTTPS for {self.upstream.base.host} on "
                               f"{s.https}: {getattr(exc, 'strerror', None) or exc}") from None
        log.info("✓ HTTPS for %s on %s (transparent mode)", self.upstream.base.host,
                 "the socket we were given" if s.https.startswith("fd:") else s.https)

    async def _start_webhooks(self, nursery: trio.Nursery) -> None:
        s = self.settings
        assert s.webhook and s.webhook_secret
        host, port = s.webhook
        # The seam for fleet-wide invalidation: what a delivery changed is dropped here
        # today; the same call can drop it everywhere.
        listener = webhooks.WebhookListener(s.webhook_secret, self._drop_for_webhook,
                                            self.counters)
        try:
            await nursery.start(listener.serve, host, port)
        except OSError as exc:
            raise StartupError(f"cannot receive webhooks on {host}:{port}: "
                               f"{exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        log.info("✓ Webhooks on http://%s:%d%s (GitHub deliveries; put a TLS terminator in "
                 "front)", shown, port, webhooks.PATH)

    async def _drop_for_webhook(self, paths: list[str], reason: str) -> None:
        self.counters.webhook_dropped += await self.cache.drop(paths)

    def _evicted(self) -> None:
        self.counters.connections_evicted += 1

    async def _discover_address(self, nursery: trio.Nursery) -> None:
        s = self.settings
        if s.upnp:
            self.upnp = UpnpMapper(s.port, lease=s.upnp_lease)
            log.info("UPnP: looking for the router's Internet Gateway Device...")
            try:
                m = await self.upnp.map()
            except (UpnpError, trio.TooSlowError) as exc:
                log.warning("⚠️  UPnP: %s. The port is not mapped; forward TCP %d on the "
                            "router by hand, or set --announce.", exc or "timed out", s.port)
            else:
                log.info("✓ UPnP: mapped %s:%d → %s:%d (lease %s)", m.external_ip,
                         m.external_port, m.internal_ip, m.internal_port,
                         f"{m.lease} s" if m.lease else "permanent")
            nursery.start_soon(self.upnp.keep, self._mapping_changed)
        if s.ip_echo_url and not s.announce:
            self.echo_ip = await _ip_echo(s.ip_echo_url)

    async def _mapping_changed(self, mapping: Mapping | None) -> None:
        await self._publish()

    async def _publish(self) -> None:
        """Say where this node is: log, file, and (if asked) the repository secret."""
        address = self.bootstrap_multiaddr()
        if address is None:
            if self.mesh is not None and self.published is None:
                log.warning("⚠️  No address to publish: set --announce / P2P_CACHE_ANNOUNCE")
            return
        if address == self.published:
            return
        self.published = address
        log.info("Bootstrap Multiaddr:\n%s", address)
        ip = addresses.multiaddr_ip(address)
        if ip and not addresses.is_public(ip) and not (self.settings.announce or self.upnp):
            log.warning("⚠️  That address is private or local: runners elsewhere cannot reach "
                        "it. Set P2P_CACHE_ANNOUNCE to the address they reach, or use --upnp.")
        path = self.settings.data_dir / MULTIADDR_FILE
        try:
            await trio.to_thread.run_sync(write_file, path, address)
        except OSError as exc:
            log.warning("⚠️  Could not write %s: %s", path, exc.strerror)
        repo = self.settings.publish_secret
        if repo:
            try:
                result = await trio.to_thread.run_sync(
                    publish_secret, self.settings.upstream, self.settings.token, repo,
                    self.settings.data_dir, address)
            except PublishError as exc:
                log.warning("⚠️  Could not publish the multiaddr to %s: %s", repo, exc)
            else:
                if result == "unchanged":
                    log.info("Secret MCP_P2P_BOOTSTRAP_PEERS on %s already holds it", repo)
                else:
                    log.info("✓ Secret MCP_P2P_BOOTSTRAP_PEERS %s on %s", result, repo)

    async def _republish_loop(self) -> None:
        """Addresses peers observe arrive after start; publish again when ours changes.
        A failure here (out of file descriptors listing interfaces, say) must not end the
        node: it is said once, and the next round tries again."""
        failing = False
        while True:
            await trio.sleep(REPUBLISH_INTERVAL)
            try:
                await self._publish()
            except Exception as exc:
                if not failing:
                    log.warning("⚠️  Could not check the node's address: %s (will retry every "
                                "%.0f s)", exc, REPUBLISH_INTERVAL)
                failing = True
            else:
                failing = False

    def _apply_peer_drop(self, drop: Drop) -> None:
        self.cache.dropped_by_peer(drop)
        try:
            self._to_settle.send_nowait(drop)
        except trio.WouldBlock:
            pass  # a flood: applied all the same, only not looked up in the store

    async def _settle_loop(self) -> None:
        """Peers' drops in the store's terms (their aliases; the entries they cover), at most
        ENTRIES_PER_S entries a second, however many drops peers send."""
        budget = self._settle_budget
        async for drop in self._settling:
            while budget.available(time.monotonic()) < 1:
                await trio.sleep(1 / budget.rate)
            covered = await self.cache.settle(drop, int(budget.tokens))
            budget.take(time.monotonic(), min(covered, budget.available(time.monotonic())))
            self.counters.invalidated_by_peers += covered

    async def _flush_recency_loop(self) -> None:
        """Hits note recency in memory; write it now and then so LRU eviction sees it."""
        while True:
            await trio.sleep(10)
            await trio.to_thread.run_sync(self.store.flush_touches)

    async def _stop_on_signal(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("Received %s, shutting down", signal.Signals(signum).name)
                scope.cancel()
                return

    async def _close(self) -> None:
        if self.upnp is not None:
            await self.upnp.unmap()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.upstream.aclose()
        self.store.close()
        log.info("Stopped; cache store closed")

    # -- answering ----------------------------------------------------------------------

    async def _serve_peer(self, request: ApiRequest, not_before: float | None) -> ApiResponse:
        if request.method == "POST":  # a GraphQL query (mesh/answering.py)
            return await self.cache.graphql(request, from_peer=True, not_before=not_before)
        response = await self.cache.get(request, from_peer=True, not_before=not_before)
        self.asks.note(request, response, time.time())
        return response

    async def _offer_warm(self, max_bytes: int) -> Message:
        now = time.time()
        chosen = warmstart.candidates(self.asks, now, self.settings.ttl)
        return await trio.to_thread.run_sync(warmstart.offer, chosen, self.store, now,
                                             self.settings.ttl, max_bytes,
                                             self.cache.drops.snapshot())

    def _offer_version(self) -> tuple[int, int, int]:
        """Changes when an offer built before may hold less or older than one built now: a
        drop, an entry added or replaced by one of another size (a 304 refresh is not)."""
        return self.cache.drops.seq, self.store.count, self.store.bytes

    async def _warm_start(self, server: ID) -> None:
        """Take a server's hot entries as we join it (warmstart.py): best effort, a failed
        or empty warm start only means the first asks go to the server as usual."""
        try:
            await self._take_warm_start(server)
        finally:
            self.warm_start = "done"

    async def _confirm_token(self) -> None:
        """As the node starts, GitHub confirms the job's token (the free /rate_limit that
        each caller's first shared answer waits for otherwise, access.py): the job's first
        calls need not wait for it, fleet or no fleet. `actions start` asks for it
        (P2P_CACHE_CONFIRM_TOKEN): a job's clients use the job's token."""
        valid = await self.cache.confirm({"authorization": f"token {self.settings.token}"})
        if valid is False:
            log.warning("⚠️  GitHub refuses this node's token (401): its clients get "
                        "GitHub's own answers, never the fleet's")

    async def _take_warm_start(self, server: ID) -> None:
        assert self.mesh is not None
        began = time.monotonic()
        asked_at = self.cache.clock()  # a drop after this covers what the offer holds
        budget = self.settings.warm_start_bytes

        def deferred(seconds: float) -> None:
            # The server is busy with other joiners: `actions start` need not wait for it.
            if self.warm_start == "waiting":
                self.warm_start = "deferred"
                log.info("Warm start deferred: %s offers one again in %.1f s (the job goes on; "
                         "it lands when it comes)", short(server), seconds)

        message = await self.mesh.warm(server, budget, deferred)
        if message is None:
            return
        try:
            offered = warmstart.take(message, budget)
        except warmstart.WarmStartError as exc:
            log.warning("⚠️  Warm start from %s: unusable answer (%s)", short(server), exc)
            return
        try:
            stored = await trio.to_thread.run_sync(self.cache.adopt, offered, asked_at)
        except StoreError as exc:
            log.warning("⚠️  Warm start from %s not stored: %s", short(server), exc)
            return
        if self.settings.https is None:  # the job's clients use our address: rewrite now
            await trio.to_thread.run_sync(self.rewrites.prepare, [
                e.body for e in stored if "json" in e.headers.get("content-type", "")],
                self.settings.http_base)
        size = sum(len(e.body) for e in stored)
        self.counters.warm_starts += 1
        self.counters.warm_start_entries += len(stored)
        self.counters.warm_start_bytes += size
        log.info("✓ Warm start: %d fresh %s (%.1f MB) from %s in %.2f s", len(stored),
                 "entry" if len(stored) == 1 else "entries", size / 1e6, short(server),
                 time.monotonic() - began)

    async def handle_http(self, request: ApiRequest) -> Reply:
        """A well-formed request (http_api checked it) answered as GitHub would."""
        path = request.target.path
        if path == "/-/reachability" and request.method == "GET":
            return json_reply(200, await self.reachability())
        if path.startswith("/-/"):
            return self._own_endpoint(path, request.method)
        if request.method == "POST" and path in graphql.PATHS:
            response = await self.cache.graphql(request)
        elif policy.is_cacheable_request(request):
            response = await self.cache.get(request)
            if not response.own:  # a caller's own answer is never refreshed nor offered
                self.asks.note(request, response, time.time())
            if policy.not_modified_for(request.headers, response):
                response = policy.not_modified_response(response)
        elif request.method in policy.WRITE_METHODS:
            response = await self.cache.passthrough(request)
        else:
            return error_reply(405, f"{request.method} is not passed on")
        return api_reply(response, self.upstream.base_url, request.client_base,
                         self.rewrites.body)

    def _own_endpoint(self, path: str, method: str) -> Reply:
        if method not in ("GET", "HEAD"):
            return json_reply(405, {"message": "the node's own endpoints are read-only"})
        if path == "/-/healthz":
            return json_reply(200, {"status": "ok", "peer_id": self.peer_id})
        if path == "/-/stats":
            return json_reply(200, self.stats())
        if path == "/-/multiaddr":
            lines = [self.bootstrap_multiaddr() or ""] + self.listen_addrs()
            return text_reply(200, "\n".join(lines) + "\n")
        if path == "/-/peers":
            return json_reply(200, self.peers())
        if path == "/-/metrics":
            return text_reply(200, prometheus_text(self.stats).decode(),
                              "text/plain; version=0.0.4; charset=utf-8")
        return json_reply(404, {"message": f"no such node endpoint {path}",
                                "endpoints": ["/-/healthz", "/-/stats", "/-/multiaddr",
                                              "/-/peers", "/-/metrics", "/-/reachability"]})

    # -- what the node knows about itself ----------------------------------------------

    def listen_addrs(self) -> list[str]:
        return self.mesh.listen_addrs() if self.mesh else []

    def bootstrap_multiaddr(self) -> str | None:
        if self.mesh is None:
            return None
        s = self.settings
        mapping = self.upnp.mapping if self.upnp else None
        return addresses.bootstrap_multiaddr(
            self.peer_id, s.port, s.announce, s.listen_host, addresses.interface_ips(),
            upnp=(mapping.external_ip, mapping.external_port) if mapping else None,
            observed=self.mesh.observed_ips(), echo=self.echo_ip)

    async def reachability(self) -> dict[str, Any]:
        """Whether peers can dial our published address from outside (asks one to try)."""
        address = self.bootstrap_multiaddr()
        if self.mesh is None or address is None:
            return {"reachable": None, "error": "P2P is off or there is no address to test"}
        return await self.mesh.check_reachability(address)

    def peers(self) -> list[dict[str, Any]]:
        if self.mesh is None:
            return []
        bootstrap = {p.peer_id for p in self.settings.bootstrap}
        return [{"peer_id": str(p), "bootstrap": str(p) in bootstrap}
                for p in self.mesh.connected_peers()]

    def stats(self) -> dict[str, Any]:
        stats = self.counters.as_dict()
        stats.update({
            "peer_id": self.peer_id,
            "p2p_enabled": self.mesh is not None,
            "connected_peers": len(self.mesh.connected_peers()) if self.mesh else 0,
            # bootstrap servers connected that answer our fleet key, and those that do not
            "fleet_servers": self.mesh.fleet_servers() if self.mesh else 0,
            "unsealed_servers": self.mesh.bootstrap.unsealed() if self.mesh else 0,
            "entries": self.store.count,
            "bytes": self.store.bytes,
            "rate_limit_remaining": self.cache.rate_limit.remaining,
            "rate_limit_reset": self.cache.rate_limit.reset,
            "rate_limits": {name: bucket.as_dict()
                            for name, bucket in sorted(self.cache.rate_limits.items())},
            "upstream_concurrency": self.limits.concurrency,
            "upstream_in_flight": self.limits.in_flight,
            "upstream_in_flight_max": self.limits.in_flight_max,
            "upstream_queued": self.limits.queued,
            # Rounded up: 0 only once the pause is over (a peer asked then is not told wait).
            "upstream_paused_s": math.ceil(self.cache.paused_for() * 10) / 10,
            "listen_addrs": self.listen_addrs(),
            "bootstrap_multiaddr": self.bootstrap_multiaddr(),
            "bootstrap_peers": [p.multiaddr for p in self.settings.bootstrap],
            "namespace": self.settings.namespace,
            "ttl": self.settings.ttl,
            "refresh_ahead": self.refresher is not None,
            "warm_start": self.warm_start,
            "webhook": "%s:%d" % self.settings.webhook if self.settings.webhook else None,
            "uptime_s": round(time.time() - self.started_at, 1),
            "version": __version__,
        })
        return stats


def raise_fd_limit() -> int:
    """Peers, clients and GitHub connections each hold a descriptor: take all the system
    allows (the soft limit is often 1024 while the hard one is far higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.debug("could not raise the open file limit from %d to %d: %s", soft, hard, exc)
    log.debug("open file limit: %s (hard %s)", soft, hard)
    return soft


def _check_port_free(host: str, port: int) -> None:
    """py-libp2p listens with SO_REUSEPORT, so a second node on a taken port would start
    and silently share the peers' connections with the first. Refuse that here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen for peers on {host}:{port}: "
                               f"{exc.strerror or exc} (is another node running?)") from None


def _cleartext(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1")


async def _ip_echo(url: str) -> str | None:
    """The public IP as an echo service sees it (the setup guide's api.ipify.org step)."""
    import ipaddress

    import httpx

    try:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(url)).text.strip()
        ipaddress.ip_address(text)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("⚠️  IP echo %s gave no address: %s", url, exc)
        return None
    log.info("Public IP (from %s): %s", url, text)
    return text
