"""GitHub webhook deliveries: the signature, the replay guard, which API paths each event
changed, and the listener that receives them (`p2pcache serve --webhook HOST:PORT`).

A delivery is judged in this order, and stops at the first refusal: the request line and
the declared size (nothing read yet), the signature over the raw body (nothing parsed yet),
the delivery GUID (seen before: no second effect), then the payload. Every value taken from
a verified payload is still checked before it becomes part of a path: a path can only ever
name something under `/repos/OWNER/REPO` or `/repositories/ID`.

The listener answers once the drop is queued; the drop itself (local today, fleet-wide
later) runs beside it, so GitHub gets its answer well within its 10 s whatever the drop
costs.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qs

import h11
import trio

from .stats import Counters

log = logging.getLogger(__name__)

PATH = "/webhook"
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
MAX_HEAD = 32 * 1024  # GitHub's headers are about 1 KB
READ_CHUNK = 16 * 1024
# A delivery GitHub has not finished sending within its own 10 s has failed on GitHub's side
# already: nothing legitimate is slower, so a connection gets that long per request.
REQUEST_TIMEOUT = 10.0
# Between requests on a kept-alive connection (a TLS terminator's): longer than proxies keep
# idle connections (Caddy 2 min, nginx 1 min), so that the proxy closes first and never sends
# a delivery on a connection we are closing. Idle connections are evicted first when full.
IDLE_TIMEOUT = 300.0
SEND_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
# Memory: every connection may hold SMALL_BODY of body; bytes beyond that come out of one
# shared budget, so a few large pushes fit but a flood of 25 MB bodies (unverifiable until
# read) cannot take the memory of the node.
SMALL_BODY = 1024 * 1024
LARGE_BODY_BUDGET = 64 * 1024 * 1024
INLINE_BYTES = 64 * 1024  # verify and parse smaller bodies on the loop; larger in a thread
MAX_QUEUED_DROPS = 256
DROP_DEADLINE = 30.0
MAX_REPLAYS = 16384
# GitHub lets a delivery be redelivered for three days.
REPLAY_WINDOW = 3 * 24 * 3600.0
SIGNATURE_PREFIX = "sha256="
# Bounds on lists a payload carries (a status names up to 10 branches).
MAX_LISTED = 20

Drop = Callable[[list[str], str], Awaitable[None]]


# -- the signature --------------------------------------------------------------------------


def signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes | bytearray, header: str | None) -> bool:
    """Whether X-Hub-Signature-256 is the HMAC-SHA256 of the raw body under the secret.
    The prefix is GitHub's exactly (`sha256=`); the hex digits may be in either case. The
    digests are compared in constant time."""
    if not secret or header is None or not header.startswith(SIGNATURE_PREFIX):
        return False
    hexdigits = header[len(SIGNATURE_PREFIX):]
    if len(hexdigits) != 64 or not hexdigits.isascii():
        return False
    try:
        given = bytes.fromhex(hexdigits)
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), given)


# -- the replay guard -----------------------------------------------------------------------


class ReplayGuard:
    """Delivery GUIDs seen lately: at most `size`, none older than `window` seconds. Only
    verified deliveries get here, so only the secret's holder can fill it."""

    def __init__(self, size: int = MAX_REPLAYS, window: float = REPLAY_WINDOW) -> None:
        self.size = size
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def claim(self, guid: str, now: float) -> bool:
        """True the first time a GUID is claimed (then it counts as seen), False after."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.window and len(self._seen) < self.size:
                break
            del self._seen[oldest]
        if guid in self._seen:
            return False
        self._seen[guid] = now
        return True

    def release(self, guid: str) -> None:
        """Forget a claim whose effect did not happen, so that a redelivery gets it."""
        self._seen.pop(guid, None)

    def __len__(self) -> int:
        return len(self._seen)


# -- event -> paths ---------------------------------------------------------------------------

# GitHub's names: a login is letters, digits, '-' (and '_' for Enterprise Managed Users); a
# repository name is letters, digits, '.', '-', '_', but never '.' or '..'.
_OWNER = re.compile(r"[A-Za-z0-9_-]{1,100}")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# A branch name spelled in a path: the characters of most branch names. Others (unicode,
# '%', '?', '#', '\' ...) are not spelled at all: the drop falls back to the whole list.
_REF = re.compile(r"[A-Za-z0-9._/+=@-]{1,255}")
_EVENT = re.compile(r"[a-z_]{1,64}")
_GUID = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_ID = 2**63 - 1


class PayloadError(ValueError):
    """A verified delivery that names no repository it could have come from."""


@dataclass(frozen=True)
class Repository:
    owner: str
    name: str
    id: int | None = None

    def roots(self) -> list[str]:
        """Every spelling of the repository a cache key may start with: GitHub's, the
        lower-case one people type (keys are case-sensitive, GitHub is not), and the
        `/repositories/ID` form that GitHub's Link headers use."""
        canonical = f"/repos/{self.owner}/{self.name}"
        roots = [canonical]
        if canonical.lower() != canonical:
            roots.append(canonical.lower())
        if self.id is not None:
            roots.append(f"/repositories/{self.id}")
        return roots


def _number(value: object) -> int | None:
    """A positive integer as JSON gives it (not a bool, not a float, not a string)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def _get(obj: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def repository_of(obj: object) -> Repository | None:
    """A repository object of a payload, if its owner and name are GitHub's kind of names."""
    owner, name = _get(obj, "owner", "login"), _get(obj, "name")
    if not isinstance(owner, str) or not isinstance(name, str):
        return None
    if not _OWNER.fullmatch(owner) or not _REPO.fullmatch(name) or name in (".", ".."):
        return None
    full_name = _get(obj, "full_name")
    if full_name is not None and full_name != f"{owner}/{name}":
        return None
    return Repository(owner, name, _number(_get(obj, "id")))


def _sha(value: object) -> str | None:
    return value if isinstance(value, str) and _SHA.fullmatch(value) else None


def _ref(value: object) -> list[str] | None:
    """The spellings a branch name has in a path (`a/b` and `a%2Fb`), or None if it is not
    safe to spell."""
    if not isinstance(value, str) or not _REF.fullmatch(value):
        return None
    segments = value.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return None
    return list(dict.fromkeys([value, value.replace("/", "%2F")]))


# Every part of a repository that a push can change: its content, history and refs, the
# pull requests built on them, the repository's own pushed_at and size. So all of it.
_WHOLE = ("",)
_ISSUES = ("/issues",)  # issues, their comments, labels, events, timeline; the lists
_PULLS = ("/pulls",)  # pull requests, their reviews, review comments, commits, files
_REFS = ("/branches", "/tags", "/git", "/compare", "/commits", "/contents", "/readme")
# Actions that move a repository's open_issues_count (or its pushed_at).
_COUNTED = frozenset({"opened", "closed", "reopened", "deleted", "transferred"})


def _action(payload: dict[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


def _issue_paths(payload: dict[str, Any], key: str) -> list[str]:
    """An issue or pull request event: the item and all its lists live under /issues (and
    /pulls); the repository's lists of them too."""
    action = _action(payload)
    item = payload.get(key)
    paths = list(_ISSUES)
    if key == "pull_request" or _get(item, "pull_request") is not None:
        paths += _PULLS
    if action in _COUNTED:
        paths += _WHOLE
    if action in ("milestoned", "demilestoned") or (
            action in _COUNTED and _get(item, "milestone") is not None):
        paths.append("/milestones")  # a milestone counts its open and closed issues
    if key == "pull_request":
        if action == "synchronize" or (action == "edited" and _get(payload, "changes", "base")):
            paths += _REFS  # the head branch moved, or the base did
        if action == "closed" and _get(item, "merged") is True:
            paths += _WHOLE  # the base branch moved
    return paths


def _commit_paths(shas: Iterable[object], refs: Iterable[object]) -> list[str]:
    """What a status or check changes: each commit's (and each branch's) statuses, check
    runs and suites, all under /commits/REF. A value that cannot be spelled safely drops
    every commit's instead."""
    paths: list[str] = []
    for sha in shas:
        spelled = _sha(sha)
        paths += [f"/commits/{spelled}", f"/statuses/{spelled}"] if spelled else \
            ["/commits", "/statuses"]
    refs = list(refs)
    if len(refs) > MAX_LISTED:
        return paths + ["/commits"]
    for ref in refs:
        if ref is None:
            continue
        spellings = _ref(ref)
        paths += [f"/commits/{s}" for s in spellings] if spellings else ["/commits"]
    return paths


def _numbered(prefix: str, value: object) -> list[str]:
    number = _number(value)
    return [f"{prefix}/{number}"] if number is not None else [prefix]


def _pull_numbers(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    if len(items) > MAX_LISTED:
        return list(_PULLS)
    paths: list[str] = []
    for item in items:
        paths += _numbered("/pulls", _get(item, "number"))
    return paths


def _status(p: dict[str, Any]) -> list[str]:
    branches = p.get("branches")
    # A branch without a usable name ("" is not one) drops every commit's statuses.
    names = [_get(b, "name") or "" for b in branches] if isinstance(branches, list) else []
    return _commit_paths([p.get("sha")], names)


def _check_run(p: dict[str, Any]) -> list[str]:
    run = p.get("check_run")
    suite = _get(run, "check_suite")
    return (_commit_paths([_get(run, "head_sha")], [_get(suite, "head_branch")])
            + _numbered("/check-runs", _get(run, "id"))
            + _numbered("/check-suites", _get(suite, "id"))
            + _pull_numbers(_get(run, "pull_requests")))


def _check_suite(p: dict[str, Any]) -> list[str]:
    suite = p.get("check_suite")
    return (_commit_paths([_get(suite, "head_sha")], [_get(suite, "head_branch")])
            + _numbered("/check-suites", _get(suite, "id"))
            + _pull_numbers(_get(suite, "pull_requests")))


def _workflow_run(p: dict[str, Any]) -> list[str]:
    run = p.get("workflow_run")
    # Runs are listed per repository, per workflow (by id or file name) and per run: all
    # under /actions/runs and /actions/workflows.
    return (["/actions/runs", "/actions/workflows"]
            + _commit_paths([_get(run, "head_sha")], [_get(run, "head_branch")])
            + _pull_numbers(_get(run, "pull_requests")))


def _workflow_job(p: dict[str, Any]) -> list[str]:
    job = p.get("workflow_job")
    return (_numbered("/actions/runs", _get(job, "run_id"))
            + _numbered("/actions/jobs", _get(job, "id"))
            + _commit_paths([_get(job, "head_sha")], []))


def _commit_comment(p: dict[str, Any]) -> list[str]:
    return ["/comments"] + _commit_paths([_get(p, "comment", "commit_id")], [])


def _fixed(*paths: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda payload: list(paths)


def _label(p: dict[str, Any]) -> list[str]:
    # A renamed or deleted label changes every issue that showed it.
    return ["/labels"] + (list(_ISSUES + _PULLS) if _action(p) != "created" else [])


def _milestone(p: dict[str, Any]) -> list[str]:
    return ["/milestones"] + (list(_ISSUES + _PULLS) if _action(p) != "created" else [])


# The table: each event GitHub sends that changes what REST answers under a repository, and
# the paths (relative to the repository's root; "" is the root and all under it) it changes.
# Entries under a path are dropped with it (prefix match), so a list's path drops its items
# too. docs/consistency.md ("Webhooks") has this table in prose.
EVENTS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "issues": lambda p: _issue_paths(p, "issue"),
    "issue_comment": lambda p: _issue_paths(p, "issue"),
    "sub_issues": _fixed(*_ISSUES),
    "pull_request": lambda p: _issue_paths(p, "pull_request"),
    "pull_request_review": _fixed(*_PULLS, *_ISSUES),
    "pull_request_review_comment": _fixed(*_PULLS, *_ISSUES),
    "pull_request_review_thread": _fixed(*_PULLS, *_ISSUES),
    "label": _label,
    "milestone": _milestone,
    "push": _fixed(*_WHOLE),
    "create": _fixed(*_REFS, "/releases"),
    "delete": _fixed(*_REFS, "/releases"),
    "release": _fixed("/releases", "/tags", "/git"),
    "repository": _fixed(*_WHOLE),
    "public": _fixed(*_WHOLE),
    "member": _fixed(*_WHOLE),  # who may read and write: permissions in every answer
    "team_add": _fixed(*_WHOLE),
    "star": _fixed(*_WHOLE),  # stargazers_count in the repository itself
    "watch": _fixed(*_WHOLE),  # GitHub's older name for starring
    "fork": _fixed(*_WHOLE),  # forks_count
    "security_and_analysis": _fixed(*_WHOLE),
    "status": _status,
    "check_run": _check_run,
    "check_suite": _check_suite,
    "workflow_run": _workflow_run,
    "workflow_job": _workflow_job,
    "deployment": _fixed("/deployments", "/environments"),
    "deployment_status": _fixed("/deployments", "/environments"),
    "deployment_review": _fixed("/actions/runs", "/deployments", "/environments"),
    "commit_comment": _commit_comment,
    "branch_protection_rule": _fixed("/branches", "/rules", "/rulesets"),
    "branch_protection_configuration": _fixed("/branches", "/rules", "/rulesets"),
    "repository_ruleset": _fixed("/branches", "/rules", "/rulesets"),
    "deploy_key": _fixed("/keys"),
    "page_build": _fixed("/pages"),
    "custom_property_values": _fixed("/properties"),
    "code_scanning_alert": _fixed("/code-scanning"),
    "secret_scanning_alert": _fixed("/secret-scanning"),
    "secret_scanning_alert_location": _fixed("/secret-scanning"),
    "dependabot_alert": _fixed("/dependabot"),
    "repository_vulnerability_alert": _fixed("/dependabot", "/vulnerability-alerts"),
    "repository_advisory": _fixed("/security-advisories"),
}


def _other_repositories(event: str, payload: dict[str, Any],
                        repo: Repository) -> list[Repository]:
    """Repositories besides the payload's own that an event changes, or old names that still
    hold entries: an issue moved to another repository, a repository renamed or moved."""
    others: list[Repository] = []
    if event == "issues" and _action(payload) == "transferred":
        other = repository_of(_get(payload, "changes", "new_repository"))
        if other is not None:
            others.append(other)
    if event == "repository" and _action(payload) in ("renamed", "transferred"):
        old_name = _get(payload, "changes", "repository", "name", "from")
        if isinstance(old_name, str):
            others.append(Repository(repo.owner, old_name))
        for kind in ("user", "organization"):
            old_owner = _get(payload, "changes", "owner", "from", kind, "login")
            if isinstance(old_owner, str):
                others.append(Repository(old_owner, repo.name))
    return [o for o in others if _OWNER.fullmatch(o.owner) and _REPO.fullmatch(o.name)
            and o.name not in (".", "..")]


def changed_paths(event: str, payload: object) -> list[str] | None:
    """The API paths an event changed, each standing for itself and all under it; None for
    an event not in the table. Raises PayloadError when a known event names no usable
    repository (nothing is dropped then)."""
    describe = EVENTS.get(event)
    if describe is None:
        return None
    if not isinstance(payload, dict):
        raise PayloadError("the payload is not a JSON object")
    repo = repository_of(payload.get("repository"))
    if repo is None:
        raise PayloadError("the payload names no repository (owner/name) GitHub could have")
    suffixes = describe(payload)
    paths = [root + suffix for root in repo.roots() for suffix in suffixes]
    for other in _other_repositories(event, payload, repo):
        paths += other.roots()
    return minimal(paths)


def minimal(paths: Iterable[str]) -> list[str]:
    """The paths, sorted, without those another one already covers (a drop of `/a` drops
    `/a/b`, not `/a-b`)."""
    kept: set[str] = set()
    for path in sorted(set(paths), key=len):
        parts = path.split("/")
        if not any("/".join(parts[:i]) in kept for i in range(2, len(parts) + 1)):
            kept.add(path)
    return sorted(kept)


# -- a delivery, judged ---------------------------------------------------------------------


class Outcome(enum.Enum):
    """What became of a delivery: its answer's status and the counter it falls in."""

    APPLIED = (200, "webhook_applied")  # verified, and its drop queued
    PING = (200, "webhook_ping")
    DUPLICATE = (200, "webhook_duplicate")  # a GUID seen before: no second effect
    IGNORED = (202, "webhook_ignored")  # an event that changes nothing cached
    MALFORMED = (400, "webhook_malformed")  # verified, but not a payload GitHub sends
    BAD_SIGNATURE = (401, "webhook_bad_signature")
    TOO_LARGE = (413, "webhook_too_large")
    BUSY = (503, "webhook_busy")  # connections, memory or the drop queue are full

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def counter(self) -> str:
        return self.value[1]


@dataclass
class Verdict:
    outcome: Outcome
    message: str
    paths: list[str] = field(default_factory=list)
    reason: str = ""  # for the drop: which delivery this was

    def body(self) -> bytes:
        data: dict[str, Any] = {"outcome": self.outcome.name.lower(), "message": self.message}
        if self.paths:
            data["dropped"] = self.paths
        return (json.dumps(data, indent=2) + "\n").encode()


def examine(event: str | None, guid: str | None, content_type: str,
            body: bytes | bytearray) -> Verdict:
    """A delivery whose signature was verified: its payload, and what it changed. Pure; runs
    in a thread for large bodies."""
    if event is None or not _EVENT.fullmatch(event):
        return Verdict(Outcome.MALFORMED, "X-GitHub-Event is missing or not an event name")
    if guid is None or not _GUID.fullmatch(guid):
        return Verdict(Outcome.MALFORMED, "X-GitHub-Delivery is missing or not a GUID")
    if event == "ping":
        return Verdict(Outcome.PING, "pong: the secret matches")
    if event not in EVENTS:
        return Verdict(Outcome.IGNORED, f"event {event!r} changes nothing p2pcache caches")
    try:
        payload = _payload(content_type, body)
        paths = changed_paths(event, payload)
    except PayloadError as exc:
        return Verdict(Outcome.MALFORMED, str(exc))
    assert paths is not None
    if not paths:
        return Verdict(Outcome.IGNORED, f"event {event!r} changes nothing p2pcache caches")
    action = _action(payload) if isinstance(payload, dict) else None
    reason = f"webhook {event}" + (f".{action}" if action and _EVENT.fullmatch(action)
                                   else "") + f" {guid}"
    return Verdict(Outcome.APPLIED, "queued", paths, reason)


def _payload(content_type: str, body: bytes | bytearray) -> object:
    """The JSON of a delivery: the body itself (content type application/json), or its
    `payload` field (application/x-www-form-urlencoded, which GitHub also offers)."""
    text: str | bytes | bytearray = body
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            raise PayloadError("the form body is not url-encoded") from None
        values = fields.get("payload", [])
        if len(values) != 1:
            raise PayloadError("the form body has no single `payload` field")
        text = values[0]
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise PayloadError("the body is not JSON") from None


# -- the listener ---------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, message: str, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


@dataclass(eq=False)
class _Slot:
    """One open connection: while it waits for a request or reads one, it may be evicted to
    make room (the oldest first), so slow clients cannot hold every slot."""

    scope: trio.CancelScope
    waiting_since: float | None  # None while its request is being answered


class WebhookListener:
    """`POST /webhook` on HTTP/1.1 (h11 over trio). Answers after the drop is queued; a
    worker task hands queued drops to `drop` one at a time."""

    def __init__(self, secret: bytes, drop: Drop, counters: Counters,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.drop = drop
        self.counters = counters
        self.clock = clock
        self.wall_clock = wall_clock
        self.replays = ReplayGuard()
        self.large_bytes = 0
        self._slots: list[_Slot] = []
        self._threads = trio.CapacityLimiter(2)
        self._send, self._receive = trio.open_memory_channel[tuple[list[str], str]](
            MAX_QUEUED_DROPS)
        self._bad_signature_logged_at = -1e9

    async def serve(self, host: str, port: int,
                    task_status: trio.TaskStatus[list[trio.SocketListener]]
                    = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._apply_drops)
            task_status.started(listeners)
            await trio.serve_listeners(self._connection, listeners)

    async def _apply_drops(self) -> None:
        async for paths, reason in self._receive:
            with trio.move_on_after(DROP_DEADLINE) as deadline:
                try:
                    await self.drop(paths, reason)
                except Exception as exc:  # one failed drop must not stop the next ones
                    log.warning("⚠️  Dropping what %s changed failed: %s", reason, exc)
            if deadline.cancelled_caught:
                log.warning("⚠️  Dropping what %s changed took over %.0f s; gave up",
                            reason, DROP_DEADLINE)

    # -- connections -----------------------------------------------------------------------

    async def _connection(self, stream: trio.abc.Stream) -> None:
        """One connection, whatever it sends: nothing raised here may reach the listener's
        nursery (that would end the node)."""
        try:
            slot = _Slot(trio.CancelScope(), self.clock())
            if len(self._slots) >= MAX_CONNECTIONS and not self._evict_one():
                self._count(Outcome.BUSY)
                with trio.move_on_after(1):
                    await stream.send_all(_BUSY)
                return
            self._slots.append(slot)
            try:
                with slot.scope:
                    await _Exchange(self, stream, slot).run()
            finally:
                if slot in self._slots:  # an evicted one is gone already
                    self._slots.remove(slot)
        except Exception:  # a bug must cost one connection, never the node
            log.exception("⚠️  A webhook connection failed; the listener serves on")
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except Exception:
                    pass

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for its request to arrive: a
        delivery from GitHub arrives within milliseconds, so the oldest is the slowest."""
        waiting = [s for s in self._slots if s.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda s: s.waiting_since)  # type: ignore[arg-type,return-value]
        self._slots.remove(oldest)
        oldest.scope.cancel()
        return True

    def _count(self, outcome: Outcome) -> None:
        setattr(self.counters, outcome.counter, getattr(self.counters, outcome.counter) + 1)

    # -- one verified delivery -------------------------------------------------------------

    async def judge(self, headers: dict[str, str], body: bytes | bytearray) -> Verdict:
        """The signature, then the GUID, then the payload; queue the drop."""
        inline = len(body) <= INLINE_BYTES
        valid = signature_valid(self.secret, body, headers.get("x-hub-signature-256")) \
            if inline else await trio.to_thread.run_sync(
                signature_valid, self.secret, body, headers.get("x-hub-signature-256"),
                limiter=self._threads)
        if not valid:
            self._warn_bad_signature()
            return Verdict(Outcome.BAD_SIGNATURE,
                           "X-Hub-Signature-256 does not match the body under the secret")
        guid = headers.get("x-github-delivery")
        if guid is not None and _GUID.fullmatch(guid) \
                and not self.replays.claim(guid, self.wall_clock()):
            return Verdict(Outcome.DUPLICATE, "delivery seen before; nothing done again")
        args = (headers.get("x-github-event"), guid, headers.get("content-type", ""), body)
        verdict = examine(*args) if inline else await trio.to_thread.run_sync(
            examine, *args, limiter=self._threads)
        if verdict.outcome is Outcome.APPLIED:
            try:
                self._send.send_nowait((verdict.paths, verdict.reason))
            except trio.WouldBlock:
                assert guid is not None
                self.replays.release(guid)  # not done: a redelivery must do it
                return Verdict(Outcome.BUSY, "too many drops queued; redeliver later")
            log.debug("Webhook %s: dropping %s", verdict.reason, verdict.paths)
        return verdict

    def _warn_bad_signature(self) -> None:
        now = self.clock()
        if now - self._bad_signature_logged_at > 300:  # a flood must not flood the log
            self._bad_signature_logged_at = now
            log.warning("⚠️  Webhook delivery refused: bad or missing X-Hub-Signature-256 (is "
                        "P2P_CACHE_WEBHOOK_SECRET the secret set in GitHub's webhook "
                        "settings?)")


_BUSY_BODY = b'{"outcome": "busy", "message": "too many open connections; retry"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class _Exchange:
    """The requests of one connection, in turn."""

    def __init__(self, listener: WebhookListener, stream: trio.abc.Stream,
                 slot: _Slot) -> None:
        self.listener = listener
        self.stream = stream
        self.slot = slot
        self.conn = h11.Connection(h11.SERVER,
                                   max_incomplete_event_size=MAX_HEAD - READ_CHUNK)
        self.large = 0  # this request's bytes in the listener's shared large-body budget
        self.head = False  # the request is a HEAD: its answer has no body

    async def run(self) -> None:
        conn = self.conn
        idle_timeout = REQUEST_TIMEOUT  # a new connection owes its request at once
        try:
            while True:
                self.slot.waiting_since = self.listener.clock()
                begun = False
                with trio.move_on_after(idle_timeout):
                    begun = await self._first_bytes()
                if not begun:
                    return  # idle too long, or closed: nothing to answer
                idle_timeout = IDLE_TIMEOUT
                with trio.move_on_after(REQUEST_TIMEOUT) as timer:
                    request = await self._next_event()
                    if not isinstance(request, h11.Request):
                        return
                    self.head = request.method == b"HEAD"
                    headers, body = await self._read(request)
                if timer.cancelled_caught:
                    raise _Refused(408, "request not received within 10 s")
                self.slot.waiting_since = None
                try:
                    verdict = await self.listener.judge(headers, body)
                finally:
                    self._release()
                self.listener._count(verdict.outcome)
                with trio.fail_after(SEND_TIMEOUT):
                    await self._send(verdict.outcome.status, verdict.body())
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, _Refused) as exc:
            self._release()
            if isinstance(exc, _Refused):
                status, outcome = exc.status, exc.outcome
            else:
                status, outcome = exc.error_status_hint, None
            if outcome is not None:
                self.listener._count(outcome)
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and status != 408:
                await self._refuse(status, str(exc), outcome)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        finally:
            self._release()

    async def _read(self, request: h11.Request) -> tuple[dict[str, str], bytearray]:
        """Check what can be checked before the body (where, how much, signed at all), then
        read the body within its bounds."""
        target = request.target.split(b"?", 1)[0]
        if target != PATH.encode():
            raise _Refused(404, f"nothing here; GitHub deliveries go to POST {PATH}")
        if request.method != b"POST":
            raise _Refused(405, f"{PATH} takes POST only")
        headers: dict[str, str] = {}
        for name, value in request.headers:
            try:
                headers[name.decode("ascii").lower()] = value.decode("ascii")
            except UnicodeDecodeError:
                raise _Refused(400, "a header is not ASCII", Outcome.MALFORMED) from None
        length = headers.get("content-length", "")  # h11 checked it is all digits
        if len(length) > 9 or (length and int(length) > MAX_BODY):
            raise _Refused(413, f"body over {MAX_BODY} bytes (GitHub's limit)",
                           Outcome.TOO_LARGE)
        if "x-hub-signature-256" not in headers:
            self.listener._warn_bad_signature()
            raise _Refused(401, "X-Hub-Signature-256 is missing", Outcome.BAD_SIGNATURE)
        body = bytearray()  # grown in place: a 25 MB body is held once, not twice
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size = len(body) + len(event.data)
                if size > MAX_BODY:
                    raise _Refused(413, f"body over {MAX_BODY} bytes (GitHub's limit)",
                                   Outcome.TOO_LARGE)
                self._reserve(max(0, size - SMALL_BODY) - self.large)
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return headers, body
            else:  # ConnectionClosed mid-body
                raise trio.BrokenResourceError("client closed mid-request")

    def _reserve(self, more: int) -> None:
        if more <= 0:
            return
        if self.listener.large_bytes + more > LARGE_BODY_BUDGET:
            raise _Refused(503, "too many large deliveries in flight; redeliver later",
                           Outcome.BUSY)
        self.listener.large_bytes += more
        self.large += more

    def _release(self) -> None:
        self.listener.large_bytes -= self.large
        self.large = 0

    async def _first_bytes(self) -> bool:
        """Wait until the next request has begun: True once bytes of it are in, False if
        the client closed instead."""
        if self.conn.trailing_data[0]:
            return True  # pipelined behind the last one
        if self.conn.trailing_data[1]:
            return False
        data = await self.stream.receive_some(READ_CHUNK)
        self.conn.receive_data(data)
        return bool(data)

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(READ_CHUNK))
                continue
            return event  # type: ignore[return-value]

    async def _refuse(self, status: int, message: str, outcome: Outcome | None) -> None:
        """Answer a request refused before its body was read, then close: say so first,
        and read a little of what is still coming so the answer is not lost to a reset."""
        name = outcome.name.lower() if outcome else "refused"
        body = (json.dumps({"outcome": name, "message": message}) + "\n").encode()
        with trio.move_on_after(2):
            try:
                await self._send(status, body, close=True)
                if isinstance(self.stream, trio.SocketStream):
                    await self.stream.send_eof()
                drained = 0
                while drained < 4 * READ_CHUNK:
                    data = await self.stream.receive_some(READ_CHUNK)
                    if not data:
                        break
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError,
                    h11.LocalProtocolError):
                pass

    async def _send(self, status: int, body: bytes, close: bool = False) -> None:
        headers = [("content-type", "application/json; charset=utf-8"),
                   ("content-length", str(len(body))),
                   ("date", formatdate(usegmt=True))]
        if status == 405:
            headers.append(("allow", "POST"))
        if status == 503:
            headers.append(("retry-after", "1"))
        if close:
            headers.append(("connection", "close"))
        data = self.conn.send(h11.Response(status_code=status, headers=headers))
        if not self.head:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
