"""Fleet-wide drops: what a write changes, what a peer may ask us to drop, and when a drop
makes an entry or an answer unusable.

Pure: no I/O and no clock of its own (every function takes `now`), so each rule is
unit-tested without sockets. The mesh carries a Drop between nodes (mesh/invalidating.py);
the cache asks Drops whether an entry or a fill predates a drop that covers it.

A Drop names exact paths (the resource at that path: every query, page and representation
of it) and trees (the path and everything under it). Paths are compared without regard to
case, as GitHub compares owner and repository names: dropping too much only costs a
revalidation, dropping too little serves an old state.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterable

from . import targets
from .policy import repo_root

# What one message may carry, and what a peer may make this node do with it (the flood
# bounds of docs/protocol.md §7.5). A write changes a dozen paths, two dozen with aliases.
MAX_PATHS = 64  # exact paths and trees together, per message
MAX_PATH_CHARS = 1024
# Per sending peer, and for all peers together: paths recorded (each costs a record held
# for the horizon), messages taken, and entries deleted from the store.
PEER_PATHS_PER_S, PEER_PATHS_BURST = 100.0, 1000.0
ALL_PATHS_PER_S, ALL_PATHS_BURST = 400.0, 4000.0
PEER_MESSAGES_PER_S, PEER_MESSAGES_BURST = 50.0, 200.0
ENTRIES_PER_S, ENTRIES_BURST = 5000.0, 20000.0
# How long a drop is remembered beyond the freshness window: the longest a fill may take
# (GitHub's 30 s, a peer's patience of up to 6 x the peer timeout at up to 3 servers ...).
FILL_BOUND_S = 120.0
MAX_RECORDS = 50_000  # paths remembered; past this, everything older counts as dropped
SEEN_IDS = 10_000  # message ids remembered for dedupe
SEEN_FOR_S = 600.0

_ID = re.compile(r"[0-9a-f]{32}")
_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{1,128}")  # base58btc
_REPOSITORIES = re.compile(r"/repositories/[0-9]{1,20}")
_NUMBER = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Drop:
    """What a change makes stale: `paths` exactly (with any query), `trees` and all below."""

    paths: tuple[str, ...] = ()
    trees: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.paths or self.trees)

    def __len__(self) -> int:
        return len(self.paths) + len(self.trees)

    def covers(self, path: str) -> bool:
        path = _fold(path)
        return path in {_fold(p) for p in self.paths} or any(
            path == t or path.startswith(t + "/") for t in map(_fold, self.trees))

    def merged(self, other: Drop) -> Drop:
        return minimal(self.paths + other.paths, self.trees + other.trees)

    def roots(self) -> set[str]:
        """The repositories (`/repos/O/R`) this drop touches."""
        return {r for p in self.paths + self.trees if (r := repo_root(p)) is not None}

    def aliased(self, ids: dict[str, set[str]]) -> Drop:
        """The same drop with GitHub's `/repositories/<id>` spellings of each repository
        whose ids are known (`ids`: root -> ids), so list pages cached under the Link form
        go too."""
        def spell(items: tuple[str, ...]) -> tuple[str, ...]:
            out = list(items)
            for path in items:
                root = repo_root(path)
                for rid in sorted(ids.get(root, ())) if root else ():
                    out.append(f"/repositories/{rid}{path[len(root):]}")
            return tuple(out)
        return minimal(spell(self.paths), spell(self.trees))

    def chunks(self, size: int = MAX_PATHS) -> list[Drop]:
        """The drop split into messages of at most `size` paths."""
        items = [("t", t) for t in self.trees] + [("p", p) for p in self.paths]
        out = []
        for start in range(0, len(items), size):
            part = items[start:start + size]
            out.append(Drop(tuple(p for k, p in part if k == "p"),
                            tuple(p for k, p in part if k == "t")))
        return out

    def as_meta(self) -> dict[str, list[str]]:
        return {"paths": list(self.paths), "trees": list(self.trees)}


def minimal(paths: Iterable[str], trees: Iterable[str]) -> Drop:
    """A drop without repeats: a tree inside another tree, or a path inside a tree, goes."""
    kept_trees: list[str] = []
    for tree in sorted(dict.fromkeys(trees), key=lambda t: (t.count("/"), t)):
        if not any(_under(tree, other) for other in kept_trees):
            kept_trees.append(tree)
    kept_paths = [p for p in dict.fromkeys(paths)
                  if not any(_under(p, t) for t in kept_trees)]
    return Drop(tuple(kept_paths), tuple(kept_trees))


def _fold(path: str) -> str:
    return path.lower()


def _under(path: str, tree: str) -> bool:
    path, tree = _fold(path), _fold(tree)
    return path == tree or path.startswith(tree + "/")


# -- what a write changes ------------------------------------------------------------------

# Writes that move code or refs: branches, commits, contents, compare, trees ... all change.
_WHOLE_REPOSITORY = frozenset({"git", "contents", "merges", "merge-upstream", "branches",
                               "dispatches", "transfer", "rename"})
_ISSUE_LISTS = ("/issues", "/pulls", "/issues/comments", "/issues/events", "/pulls/comments")


def for_write(method: str, target: targets.Target, status: int, body: bytes = b"") -> Drop:
    """What a successful write (2xx) to `target` changes, conservatively: the target and all
    under it, every collection above it, and for issues and pull requests (a pull request
    is an issue) both spellings of the item with their sub-resources and the lists and counts
    that show them. Writes that move code or refs drop the whole repository. `body`, GitHub's
    answer, names the issue a comment belongs to (`issue_url`); without it (a DELETE's 204)
    every issue of the repository goes."""
    path = target.path.rstrip("/") or "/"
    root = repo_root(path) or _repositories_root(path)
    if root is None:
        return minimal([], [path]).merged(Drop(tuple(_ancestors(path, "/")), ()))
    rest = path[len(root):].strip("/").split("/") if path != root else []
    trees = [path]
    paths = _ancestors(path, root) + [root]
    if not rest:
        trees = [root]
    elif rest[0] in _WHOLE_REPOSITORY or (rest[0] == "pulls" and len(rest) >= 3
                                          and rest[2] in ("merge", "update-branch")):
        trees = [root]
    elif rest[0] in ("issues", "pulls") and len(rest) >= 2 and _NUMBER.fullmatch(rest[1]):
        trees += [f"{root}/issues/{rest[1]}", f"{root}/pulls/{rest[1]}"]
        paths += [root + suffix for suffix in _ISSUE_LISTS]
        if len(rest) >= 3 and rest[2] == "labels":
            trees.append(f"{root}/labels")  # adding a label may create it
    elif rest[0] in ("issues", "pulls") and len(rest) >= 3 and rest[1] == "comments":
        paths += [root + suffix for suffix in _ISSUE_LISTS]
        owner = _owning_item(body, root)
        trees += owner if owner else [f"{root}/issues", f"{root}/pulls"]
    elif rest[0] in ("issues", "pulls"):  # a new issue or pull request
        trees = [] if len(rest) == 1 else trees  # the others did not change: only the lists
        paths += [root + suffix for suffix in _ISSUE_LISTS]
    elif rest[0] in ("statuses", "check-runs", "check-suites"):
        trees.append(f"{root}/commits")  # read back as /commits/REF/status, /check-runs ...
    elif rest[0] in ("labels", "milestones"):
        # Issues and pull requests embed their labels and milestone.
        trees += [f"{root}/{rest[0]}", f"{root}/issues", f"{root}/pulls"]
    elif rest[0] == "releases":
        trees += [f"{root}/releases", f"{root}/tags", f"{root}/git"]  # a release may tag
    return minimal(paths, trees)


def shareable(drop: Drop) -> Drop:
    """The part of a drop peers accept: paths inside one repository (parse_peer_drop)."""
    def inside(path: str) -> bool:
        return repo_root(path) is not None or _repositories_root(path) is not None
    return Drop(tuple(filter(inside, drop.paths)), tuple(filter(inside, drop.trees)))


def for_repositories(names: Iterable[tuple[str, str]] = (), ids: Iterable[int] = ()) -> Drop:
    """Everything of these repositories (owner and name, or GitHub's database id): what a
    write that cannot be told more precisely changes (a GraphQL mutation:
    graphql.mutation_targets says which repositories)."""
    return minimal([], [f"/repos/{owner}/{name}" for owner, name in names]
                   + [f"/repositories/{int(rid)}" for rid in ids])


def with_graphql(drop: Drop) -> Drop:
    """A drop inside a repository also drops that repository's GraphQL answers (stored under
    `/repos/O/R/graphql`: cache.py): a REST write, a webhook or a peer's drop can change
    anything a query of the repository reads."""
    extra = tuple(f"{root}/graphql" for root in sorted(drop.roots()))
    return drop.merged(Drop(extra, ())) if extra else drop


def _repositories_root(path: str) -> str | None:
    match = _REPOSITORIES.match(path)
    if match and path[match.end():match.end() + 1] in ("", "/"):
        return match.group(0)
    return None


def _ancestors(path: str, stop: str) -> list[str]:
    """The collections above `path`, nearest first, down to (not including) `stop`."""
    out = []
    while True:
        path = path.rsplit("/", 1)[0]
        if not path or path == stop or len(path) < len(stop):
            return out
        out.append(path)


def _owning_item(body: bytes, root: str) -> list[str]:
    """The issue (and its pull request spelling) a comment answer names, if it names one of
    this repository."""
    if not body or len(body) > 1024 * 1024:
        return []
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    for name in ("issue_url", "pull_request_url"):
        url = data.get(name)
        if not isinstance(url, str):
            continue
        match = re.search(r"/(?:repos/[^/]+/[^/]+|repositories/[0-9]+)/(?:issues|pulls)/"
                          r"([0-9]{1,20})$", url)
        if match and _fold(url).find(_fold(root) + "/") >= 0:
            n = match.group(1)
            return [f"{root}/issues/{n}", f"{root}/pulls/{n}"]
    return []


# -- what a peer may ask ----------------------------------------------------------------------

class DropRefused(ValueError):
    """A drop a peer may not ask for. str() is the `error` the peer gets."""


def parse_peer_drop(meta: dict[str, object]) -> Drop:
    """A peer's `paths` and `trees`, validated where they enter: lists of at most MAX_PATHS
    canonical API paths (targets.parse), no query, each inside one repository
    (`/repos/O/R[/...]` or `/repositories/ID[/...]`): never `/` or `/repos`, which would drop
    everything. DropRefused otherwise."""
    raw_paths, raw_trees = meta.get("paths", []), meta.get("trees", [])
    if not isinstance(raw_paths, list) or not isinstance(raw_trees, list):
        raise DropRefused("paths and trees must be lists")
    if len(raw_paths) + len(raw_trees) > MAX_PATHS:
        raise DropRefused(f"more than {MAX_PATHS} paths in one message")
    if not raw_paths and not raw_trees:
        raise DropRefused("nothing to drop")
    return Drop(tuple(_peer_path(p) for p in raw_paths),
                tuple(_peer_path(t) for t in raw_trees))


def _peer_path(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) > MAX_PATH_CHARS:
        raise DropRefused(f"a path must be a string of at most {MAX_PATH_CHARS} characters")
    try:
        target = targets.parse(raw)
    except targets.TargetError as exc:
        raise DropRefused(f"{raw[:80]!r}: {exc}") from None
    if target.query or "?" in raw:
        raise DropRefused(f"{raw[:80]!r}: a path to drop has no query")
    path = target.path
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/")
    if repo_root(path) is None and _repositories_root(path) is None:
        raise DropRefused(f"{raw[:80]!r} is not inside one repository (/repos/OWNER/REPO/... "
                          "or /repositories/ID/...)")
    return path


def valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.fullmatch(value))


def valid_peer_id(value: object) -> bool:
    return isinstance(value, str) and bool(_PEER_ID.fullmatch(value))


# -- when a drop makes something unusable ------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    """A drop: when (this node's clock) and its sequence number."""

    at: float = 0.0
    seq: int = 0


class Drops:
    """The drops this node applied recently, to judge entries and fills against.

    An entry whose fill began (`asked_at`) at or before a drop covering its path is not
    served without revalidation; a fill that began before one is not stored; a request that
    arrives after one never shares a fill that began before it (the flight key carries the
    drop's sequence number). A drop is remembered for the freshness window plus the longest
    fill: anything older is revalidated by its age anyway. `everything(now)` (a reconnect, a
    start, too many records) covers every path at once.
    """

    def __init__(self, ttl: float, max_records: int = MAX_RECORDS) -> None:
        self.horizon = ttl + FILL_BOUND_S
        self.max_records = max_records
        self._exact: dict[str, Mark] = {}
        self._trees: dict[str, Mark] = {}
        self._order: deque[tuple[float, bool, str]] = deque()  # (at, is_tree, folded path)
        self._all = Mark()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._exact) + len(self._trees)

    @property
    def seq(self) -> int:
        """Changes with every drop recorded (what was built before it may hold its paths)."""
        return self._seq

    def record(self, drop: Drop, now: float) -> Mark:
        self._expire(now)
        self._seq += 1
        mark = Mark(now, self._seq)
        for is_tree, items in ((False, drop.paths), (True, drop.trees)):
            table = self._trees if is_tree else self._exact
            for path in items:
                folded = _fold(path)
                table[folded] = mark
                self._order.append((now, is_tree, folded))
        if len(self) > self.max_records:
            return self.everything(now)  # bounded memory: cover all instead
        return mark

    def everything(self, now: float) -> Mark:
        """Every entry asked for at or before `now` is to be revalidated before use (nothing
        is deleted)."""
        self._seq += 1
        self._all = Mark(max(now, self._all.at), self._seq)
        # Later drops (recorded after `now`) still count; the ones it covers are forgotten.
        self._exact = {p: m for p, m in self._exact.items() if m.at > now}
        self._trees = {p: m for p, m in self._trees.items() if m.at > now}
        self._order = deque(item for item in self._order if item[0] > now)
        return self._all

    def latest(self, path: str) -> Mark:
        """The drops covering `path`: the latest time one came, and the highest sequence
        number (Mark() if none)."""
        folded = _fold(path)
        marks = [self._all, self._exact.get(folded)]
        if self._trees:
            probe = folded
            while probe:
                marks.append(self._trees.get(probe))
                probe = probe.rsplit("/", 1)[0]
        found = [m for m in marks if m is not None]
        return Mark(max(m.at for m in found), max(m.seq for m in found))

    def dropped_since(self, path: str, since: float) -> bool:
        """Whether a drop covering `path` came at or after `since` (this node's clock)."""
        mark = self.latest(path)
        return mark.seq > 0 and mark.at >= since

    def snapshot(self) -> Drops:
        """A copy for a thread to read (warm start offers) while this one changes."""
        copy = Drops.__new__(Drops)
        copy.horizon, copy.max_records = self.horizon, self.max_records
        copy._exact, copy._trees = dict(self._exact), dict(self._trees)
        copy._order, copy._all, copy._seq = deque(), self._all, self._seq
        return copy

    def _expire(self, now: float) -> None:
        while self._order and now - self._order[0][0] > self.horizon:
            at, is_tree, folded = self._order.popleft()
            table = self._trees if is_tree else self._exact
            mark = table.get(folded)
            if mark is not None and mark.at <= at:
                del table[folded]


# -- bounds ----------------------------------------------------------------------------------------

@dataclass
class Bucket:
    """A token bucket: `rate` a second, up to `burst` at once."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def available(self, now: float) -> float:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, now: float, amount: float = 1.0) -> bool:
        if amount > self.available(now):
            return False
        self.tokens -= amount
        return True


@dataclass
class Admission:
    """Whether a peer's drop is taken: message and path budgets per sending peer and for all
    peers together. Refused drops are not applied (the peer is told, and counted)."""

    max_peers: int = 4096
    _peers: OrderedDict[str, tuple[Bucket, Bucket]] = field(default_factory=OrderedDict)
    _all: Bucket = field(default_factory=lambda: Bucket(ALL_PATHS_PER_S, ALL_PATHS_BURST))

    def admit(self, peer: str, paths: int, now: float) -> str | None:
        """None if taken, else why not."""
        buckets = self._peers.pop(peer, None)
        if buckets is None:
            buckets = (Bucket(PEER_MESSAGES_PER_S, PEER_MESSAGES_BURST),
                       Bucket(PEER_PATHS_PER_S, PEER_PATHS_BURST))
        self._peers[peer] = buckets
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        messages, peer_paths = buckets
        if not messages.take(now):
            return f"more than {PEER_MESSAGES_PER_S:.0f} invalidations a second"
        if not peer_paths.take(now, paths):
            return f"more than {PEER_PATHS_PER_S:.0f} dropped paths a second"
        if not self._all.take(now, paths):
            return f"more than {ALL_PATHS_PER_S:.0f} dropped paths a second from all peers"
        return None


class Seen:
    """Message ids applied recently: a drop that arrives twice (from two servers, or again
    after a reconnect) is applied once."""

    def __init__(self, size: int = SEEN_IDS, keep_for: float = SEEN_FOR_S) -> None:
        self.size, self.keep_for = size, keep_for
        self._ids: OrderedDict[str, float] = OrderedDict()

    def first(self, message_id: str, now: float) -> bool:
        """True the first time `message_id` is seen (and remembers it)."""
        while self._ids and (len(self._ids) >= self.size
                             or now - next(iter(self._ids.values())) > self.keep_for):
            self._ids.popitem(last=False)
        if message_id in self._ids:
            return False
        self._ids[message_id] = now
        return True
