"""Counters of what happened, each counted once, and their Prometheus exposition."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector


@dataclass
class Counters:
    # Every cacheable request this node answered (from local clients or from peers) is
    # exactly one of: local_hits, peer_hits, coalesced, misses.
    requests: int = 0
    local_hits: int = 0
    peer_hits: int = 0  # answers a peer gave this node
    coalesced: int = 0  # answered by an identical request already in flight here
    misses: int = 0  # this node had to ask GitHub (or relay GitHub's answer)
    upstream_requests: int = 0  # HTTP requests this node sent to GitHub
    not_modified: int = 0  # of which GitHub answered 304 (free of rate limit)
    stale_served: int = 0  # expired entries served because GitHub failed or limited us
    peer_requests_served: int = 0  # requests peers asked of this node
    # asks to peers that timed out, broke or got no usable answer, "paused" included (then
    # GitHub was asked)
    peer_failures: int = 0
    peer_suspicions: int = 0  # times a server let an ask time out and was skipped until it spoke
    auth_failures: int = 0  # peer frames that failed authentication (wrong secret)
    bad_frames: int = 0  # garbage, oversized or stale frames from peers
    peer_limited: int = 0  # peer streams reset for going over a limit (streams, bytes, time)
    passthrough: int = 0  # writes and GraphQL, never cached
    # Entries a write by this node's clients made unusable until revalidated.
    invalidated: int = 0
    # Fleet-wide drops (mesh/invalidating.py): messages sent (ours and those passed on),
    # received (sealed, from peers), applied (new and within bounds), refused (malformed or
    # over the bounds); stored entries the applied ones made unusable until revalidated.
    invalidations_sent: int = 0
    invalidations_received: int = 0
    invalidations_applied: int = 0
    invalidations_refused: int = 0
    invalidated_by_peers: int = 0
    floor_revalidations: int = 0  # fresh entries revalidated for the floor (--not-before)
    # GraphQL (POST /graphql): shared queries answered without this node asking GitHub, and
    # asked; their points as graphql.estimated_cost counts them (GitHub sends no cost); queries
    # answered with the caller's own credentials (they depend on who asks, or the caller may
    # not share them; mutations and unparsed bodies count in passthrough); mutations that
    # dropped what they touched
    graphql_hits: int = 0
    graphql_misses: int = 0
    graphql_points_saved: int = 0
    graphql_points_spent: int = 0
    graphql_own: int = 0
    graphql_mutation_drops: int = 0
    # local API connections closed while idle, to admit a new one at a listener's cap
    connections_evicted: int = 0
    store_errors: int = 0  # entries that could not be written (disk full ...)
    # Reads asked with a client's own credentials (access.py), and why: they spent the
    # client's budget, not the fleet's, and are no peer hit nor a call saved.
    client_credential_requests: int = 0  # all of them: the five reasons below add up to it
    identity_requests: int = 0  # the answer depends on who asks (/user, /repos/o/r ...)
    credential_checks: int = 0  # GitHub asked whether the client's token is valid (free)
    authorization_checks: int = 0  # ... whether it may read a private repository
    fleet_blind_requests: int = 0  # the fleet's token cannot read it (or is refused)
    refused_requests: int = 0  # GitHub refused the client (bad token, no access): its answer
    # GitHub's budgets (limits.py). Gauges of the moment are in the stats snapshot
    # (upstream_in_flight, upstream_in_flight_max, upstream_queued).
    upstream_waited: int = 0  # requests that waited for a turn (the token's slots were full)
    upstream_paused: int = 0  # pauses begun: GitHub said stop to a token (secondary or primary)
    peer_requests_paused: int = 0  # peer requests answered "paused": nothing asked of GitHub
    peer_paused_answers: int = 0  # "paused" answers a peer gave this node (then GitHub asked)
    # Refresh-ahead (refresh.py) is not a client request: none of the above but
    # upstream_requests counts it. refreshes = changed + not_modified + failed.
    refreshes: int = 0  # conditional requests sent to GitHub ahead of staleness
    refreshes_changed: int = 0  # answered 200: the entry changed (one unit)
    refreshes_not_modified: int = 0  # answered 304 (free)
    refreshes_failed: int = 0  # any other answer, or GitHub unreachable
    refreshes_skipped: int = 0  # due but not sent: already fresh, or held by the bounds
    refreshes_over_budget: int = 0  # due but not sent: the paid share of the budget is spent
    # Warm start (warmstart.py): entries taken from a server as a runner joined, and the
    # offers this node made to joining runners. Not requests either.
    warm_starts: int = 0  # offers taken (one per server connection)
    warm_start_entries: int = 0  # entries stored from them
    warm_start_bytes: int = 0  # body bytes of those entries
    warm_offers: int = 0  # offers this node sent to joining runners
    warm_offers_built: int = 0  # of which built for the asker (the rest: shelved, reused)
    # GitHub webhook deliveries (webhooks.py, server nodes with --webhook), each counted
    # once, by outcome; and the entries their drops removed here.
    webhook_applied: int = 0  # verified; what it changed was queued to be dropped
    webhook_ping: int = 0
    webhook_duplicate: int = 0  # a delivery GUID seen before: no second effect
    webhook_ignored: int = 0  # an event that changes nothing cached (answered 202)
    webhook_malformed: int = 0  # verified, but no payload GitHub sends (400)
    webhook_bad_signature: int = 0  # X-Hub-Signature-256 missing or wrong (401)
    webhook_too_large: int = 0  # over GitHub's 25 MB (413)
    webhook_busy: int = 0  # refused for connections, memory or queued drops (503)
    webhook_dropped: int = 0  # entries this node dropped for verified deliveries

    @property
    def hit_rate(self) -> float:
        hits = self.local_hits + self.peer_hits + self.coalesced
        return hits / self.requests if self.requests else 0.0

    @property
    def api_calls_saved(self) -> int:
        """Answers that spent none of this node's rate limit: hits, and 304 revalidations."""
        return self.local_hits + self.peer_hits + self.coalesced + self.not_modified

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hit_rate"] = round(self.hit_rate, 4)
        out["api_calls_saved"] = self.api_calls_saved
        return out


class StatsCollector(Collector):
    """Exposes the contract's stats snapshot as Prometheus metrics, read at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        stats = self._snapshot()
        for name in Counters.__dataclass_fields__:
            family = CounterMetricFamily(f"p2pcache_{name}", f"p2pcache {name.replace('_', ' ')}")
            family.add_metric([], stats[name])
            yield family
        for name in ("connected_peers", "entries", "bytes", "hit_rate", "api_calls_saved",
                     "upstream_in_flight", "upstream_in_flight_max", "upstream_queued"):
            yield GaugeMetricFamily(f"p2pcache_{name}", f"p2pcache {name.replace('_', ' ')}",
                                    value=stats[name])
        buckets = stats.get("rate_limits") or {}
        for field in ("remaining", "limit", "used"):
            family = GaugeMetricFamily(f"p2pcache_rate_limit_{field}",
                                       f"GitHub rate limit {field} per resource, as last seen",
                                       labels=["resource"])
            for resource, bucket in buckets.items():
                if bucket.get(field) is not None:
                    family.add_metric([resource], bucket[field])
            yield family
        yield GaugeMetricFamily("p2pcache_p2p_enabled", "1 if the libp2p host runs",
                                value=1 if stats["p2p_enabled"] else 0)


def prometheus_text(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry()
    registry.register(StatsCollector(snapshot))
    return generate_latest(registry)
