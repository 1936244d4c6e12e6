"""The event floor: when (on GitHub's clock) the event that triggered a job happened, read
from its payload, so the job's node never serves a state GitHub vouched for before it.

Pure: `event_time(name, payload, started)` picks, per event, the payload fields that are
the event's time (docs/consistency.md has the table) and takes the latest; the payload file
(the job's) is read by jobfiles.read, bounded, and parsed tolerantly by `parse_event`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

MAX_EVENT_BYTES = 26 * 1024 * 1024  # GitHub caps a payload at 25 MB
MAX_TIME_CHARS = 64
# A floor more than this ahead of our clock is refused: GitHub's Date would not pass it
# until then, so every read would be a revalidation.
MAX_AHEAD_S = 3600.0

# event -> the payload fields (dotted paths) that say when it happened, on GitHub's clock.
# The latest of those present counts: a label added to a pull request moves its updated_at,
# a review's submitted_at may be later than the pull request's last update.
FIELDS: dict[str, tuple[str, ...]] = {
    "pull_request": ("pull_request.updated_at",),
    "pull_request_target": ("pull_request.updated_at",),
    "pull_request_review": ("review.submitted_at", "pull_request.updated_at"),
    "pull_request_review_comment": ("comment.updated_at", "pull_request.updated_at"),
    "pull_request_review_thread": ("pull_request.updated_at",),
    "issues": ("issue.updated_at",),
    "issue_comment": ("comment.updated_at", "issue.updated_at"),
    # GitHub's own push time (an integer); a commit's timestamp is the committer's clock,
    # so it only counts when GitHub's is missing.
    "push": ("repository.pushed_at",),
    "create": ("repository.pushed_at",),
    "delete": ("repository.pushed_at",),
    "release": ("release.updated_at", "release.published_at", "release.created_at"),
    "milestone": ("milestone.updated_at",),
    "discussion": ("discussion.updated_at",),
    "discussion_comment": ("comment.updated_at", "discussion.updated_at"),
    "workflow_run": ("workflow_run.updated_at",),
    "check_run": ("check_run.completed_at", "check_run.started_at"),
    "check_suite": ("check_suite.updated_at",),
    "deployment": ("deployment.updated_at",),
    "deployment_status": ("deployment_status.updated_at",),
    "status": ("updated_at",),
    "fork": ("forkee.updated_at", "forkee.created_at"),
    "registry_package": ("registry_package.updated_at",),
    "package": ("package.updated_at",),
    "branch_protection_rule": ("rule.updated_at",),
    "page_build": ("build.updated_at",),
    "merge_group": ("merge_group.head_commit.timestamp",),
}
FALLBACKS: dict[str, tuple[str, ...]] = {"push": ("head_commit.timestamp",)}
# Nothing changed to trigger it: no floor (the freshness window alone applies).
NO_FLOOR = frozenset({"schedule"})


class EventError(Exception):
    """The payload could not be used: one line for the user (never its content)."""


def event_time(name: str, payload: object, started: float) -> tuple[float | None, str]:
    """The floor for a job triggered by event `name` with `payload`, and where it came
    from. Events without a time of their own (workflow_dispatch, repository_dispatch, label,
    an unknown event, or a payload lacking the fields) take the job's start (`started`,
    this machine's clock: a hosted runner's is kept to GitHub's by NTP); `schedule` none."""
    if name in NO_FLOOR:
        return None, f"{name}: no floor"
    found = _latest(payload, FIELDS.get(name, ())) or _latest(payload, FALLBACKS.get(name, ()))
    if found is not None:
        return found
    return started, f"{name or 'no event'}: the job's start"


def _latest(payload: object, fields: tuple[str, ...]) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for dotted in fields:
        value: object = payload
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        when = parse_time(value)
        if when is not None and (best is None or when > best[0]):
            best = (when, dotted)
    return best


def parse_time(value: object) -> float | None:
    """An ISO 8601 time (`2024-05-01T12:00:00Z`, offsets too) or Unix seconds, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value > 0 else None
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # GitHub always says which zone; a time without one is not its
    return when.timestamp()


def parse_not_before(text: str, now: float) -> float:
    """--not-before / P2P_CACHE_NOT_BEFORE: Unix seconds. ValueError with the reason."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("expected Unix seconds, e.g. 1714560000") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected Unix seconds, e.g. 1714560000")
    if value > now + MAX_AHEAD_S:
        raise ValueError("more than an hour in the future: every read would be revalidated")
    return value


def parse_event(data: bytes) -> object:
    """The payload's JSON (read by jobfiles.read: bounded, as the job's user); EventError
    for anything that is not JSON, never its content."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise EventError("not JSON") from None
