"""Who may see what: which answers depend on who asks, who is asking, and what GitHub said
about a caller's access to a repository (docs/security.md §8.1 states the model).

The fleet shares bodies; whether a caller may see one is decided for that caller:

- IDENTITY: the answer depends on who asks (`/user`, `/rate_limit`, search, an org or a
  user as its members or itself see it, a repository object with its `permissions`, the
  settings only admins read ...). Asked with the caller's own credentials, kept per
  credential on this node, never given to a peer.
- REPOSITORY: a repository's content, the same for everyone who can read it. The fleet's
  entry, once GitHub confirmed that the caller's own credentials can read the repository
  (a public one needs no confirmation; an anonymous caller gets public data only).
- SHARED: the same for every caller (licenses, gitignore templates, /meta ...).

Where unsure, IDENTITY: an answer asked again costs a request, an answer given to the
wrong caller costs trust. Everything here is pure; cache.py does the asking.
"""

from __future__ import annotations

import enum
import hmac
import json
import re
from collections import OrderedDict
from dataclasses import dataclass

from .policy import RateLimit, credential_headers, seen_rate_limits

class Scope(enum.Enum):
    SHARED = "shared"
    REPOSITORY = "repository"
    IDENTITY = "identity"


@dataclass(frozen=True)
class Place:
    """Where a path lies: its scope, and for paths under a repository, the repository's
    root path (`/repos/OWNER/REPO` or `/repositories/ID`, as the path spells it)."""

    scope: Scope
    repo: str | None = None

    @property
    def repo_key(self) -> str | None:
        """The repository as one caller's grant names it: names are case-blind on GitHub."""
        return self.repo.lower() if self.repo else None


_REPO = re.compile(r"/(?:repos/[^/]+/[^/]+|repositories/[0-9]{1,20})(?=/|$)")

# Under a repository, what needs more than read access or tells about the caller: the
# repository object itself (`permissions`), forks (repository objects too), settings and
# secrets only admins or writers read, the caller's own subscription, security alerts.
# Each entry is a path prefix below the root; "*" matches one segment.
_REPOSITORY_IDENTITY = tuple(tuple(p.split("/")) for p in (
    "collaborators", "invitations", "hooks", "keys", "teams", "forks", "subscription",
    "notifications", "traffic", "vulnerability-alerts", "automated-security-fixes",
    "private-vulnerability-reporting", "security-advisories", "dependabot",
    "code-scanning", "secret-scanning", "code-security-configuration", "codespaces",
    "interaction-limits", "autolinks", "installation", "properties", "rulesets", "pages",
    "import", "lfs", "tags/protection", "branches/*/protection", "environments/*/secrets",
    "environments/*/variables", "actions/secrets", "actions/variables",
    "actions/permissions", "actions/runners", "actions/runner-groups", "actions/oidc",
    "actions/organization-secrets", "actions/organization-variables",
    "check-suites/preferences"))

# Outside repositories, only answers that cannot depend on the caller are shared. (A
# user's profile is not among them: asked by that user, `/users/U` is the private view.)
_SHARED = re.compile(r"/(?:meta|emojis|versions|octocat|zen"
                     r"|gitignore/templates(?:/[^/]+)?|licenses(?:/[^/]+)?"
                     r"|codes_of_conduct(?:/[^/]+)?|advisories(?:/[^/]+)?"
                     r"|users/[^/]+/(?:followers|following|keys|gpg_keys|ssh_signing_keys"
                     r"|orgs))")


def place(path: str) -> Place:
    """The scope of a GET of `path` (a canonical target path, targets.parse made it)."""
    match = _REPO.match(path)
    if match is None:
        return Place(Scope.SHARED if _SHARED.fullmatch(path) else Scope.IDENTITY)
    root = match.group(0)
    below = path[len(root):].strip("/")
    if not below:  # the repository object: `permissions` is the caller's
        return Place(Scope.IDENTITY, root)
    segments = below.split("/")
    for prefix in _REPOSITORY_IDENTITY:
        if len(segments) >= len(prefix) and all(
                want in ("*", have) for want, have in zip(prefix, segments)):
            return Place(Scope.IDENTITY, root)
    return Place(Scope.REPOSITORY, root)


def depends_on_caller(path: str, body: bytes) -> bool:
    """Repository content that shows the caller's rights after all: draft releases are
    listed only to those who can push, so a list or release holding one is not shared."""
    below = path.split("/", 4)[-1] if path.startswith("/repos/") else path
    return "releases" in below.split("/") and re.search(rb'"draft":\s*true', body) is not None


@dataclass(frozen=True)
class RepositoryFacts:
    """What a repository object says that decides who may read the repository."""

    visibility: str | None  # "public", "private" (private, internal: needs a grant), None
    id: int | None  # GitHub's numeric id: `/repositories/ID` is the same repository

    def roots(self, root: str) -> list[str]:
        """Both spellings of the repository's root, as grants name them (lower-case)."""
        return [root.lower()] + ([f"/repositories/{self.id}"] if self.id is not None else [])


def repository_facts(body: bytes) -> RepositoryFacts:
    """Anything but a clearly public repository (private, internal, unknown) needs a
    caller's grant."""
    try:
        repo = json.loads(body)
    except (ValueError, RecursionError):
        return RepositoryFacts(None, None)
    if not isinstance(repo, dict):
        return RepositoryFacts(None, None)
    if repo.get("visibility") == "public" or (
            "visibility" not in repo and repo.get("private") is False):
        seen: str | None = "public"
    else:
        seen = "private" if "private" in repo or "visibility" in repo else None
    rid = repo.get("id")
    valid_id = type(rid) is int and 0 <= rid < 10**20
    return RepositoryFacts(seen, rid if valid_id else None)


def visibility(body: bytes) -> str | None:
    """"public" or "private" from a repository object, None if it does not say."""
    return repository_facts(body).visibility


# -- the caller --------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who asks: a keyed hash of the credential, never the credential. None: anonymous."""

    digest: str | None

    @property
    def anonymous(self) -> bool:
        return self.digest is None

    @property
    def key_suffix(self) -> str:
        """What a per-credential cache key ends with."""
        return f" caller={self.digest or 'anonymous'}"


ANONYMOUS = Caller(None)


class Callers:
    """Names callers by an HMAC of their token under a key of this node's own, so the
    store and the logs hold no credential, and no one without the node's key can tell
    two entries' callers apart or test a guessed token against them."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def of(self, headers: dict[str, str]) -> Caller:
        value = headers.get("authorization", "").strip()
        if not value:
            return ANONYMOUS
        scheme, _, credential = value.partition(" ")
        # "token X" and "Bearer X" are one credential; any other scheme hashes whole.
        material = credential.strip() if scheme.lower() in ("token", "bearer") else value
        digest = hmac.digest(self._key, material.encode("latin-1"), "sha256")  # one C call
        return Caller(digest.hex()[:32])


# -- what GitHub said about callers and repositories --------------------------------------


class Verdict(enum.Enum):
    SHARED = "shared"  # the fleet's entry may be given to this caller
    IDENTITY = "identity"  # the path's answer depends on the caller
    FLEET_BLIND = "fleet_blind"  # the fleet's token cannot read it: the caller's own answer
    REFUSED = "refused"  # GitHub refused this caller: its own answer, for it alone


class Grants:
    """For each (caller, repository), until when GitHub's word on it holds: granted, or
    refused; per repository, until when the fleet's own token is known not to see it, or
    to see it public; until when GitHub refuses the fleet's token outright; and whether it
    accepts a caller's credential at all. Times are the node's clock,
    passed in. Bounded: the oldest words are forgotten first (asking again is safe)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._grants: OrderedDict[tuple[str | None, str], tuple[bool, float]] = OrderedDict()
        self._blind: OrderedDict[str, float] = OrderedDict()
        self._public: OrderedDict[str, float] = OrderedDict()
        self._fleet_refused_until = 0.0
        self._valid: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    def grant(self, caller: Caller, repo: str, allowed: bool, until: float) -> None:
        self._put(self._grants, (caller.digest, repo), (allowed, until))

    def granted(self, caller: Caller, repo: str, now: float) -> bool | None:
        """True or False while GitHub's last word holds; None if we must ask."""
        word = self._grants.get((caller.digest, repo))
        if word is None or now >= word[1]:
            return None
        return word[0]

    def validated(self, caller: Caller, valid: bool, until: float) -> None:
        """GitHub accepted (or refused) the caller's credential itself."""
        assert caller.digest is not None
        self._put(self._valid, caller.digest, (valid, until))

    def valid(self, caller: Caller, now: float) -> bool | None:
        if caller.digest is None:
            return True  # anonymous is always a valid caller
        word = self._valid.get(caller.digest)
        if word is None or now >= word[1]:
            return None
        return word[0]

    def public(self, repo: str, vouched_at: float) -> None:
        """The fleet's view, which GitHub vouched for at `vouched_at`, says the repository is
        public: no caller needs a grant while that view is fresh."""
        self._put(self._public, repo, vouched_at)

    def public_since(self, repo: str, now: float, ttl: float) -> float | None:
        """When GitHub last vouched that the repository is public, if that is still fresh."""
        vouched_at = self._public.get(repo)
        return vouched_at if vouched_at is not None and now - vouched_at < ttl else None

    def blind(self, repo: str, until: float) -> None:
        self._put(self._blind, repo, until)

    def is_blind(self, repo: str, now: float) -> bool:
        return self.fleet_refused(now) or now < self._blind.get(repo, 0.0)

    def refuse_fleet(self, until: float) -> None:
        self._fleet_refused_until = max(self._fleet_refused_until, until)

    def fleet_refused(self, now: float) -> bool:
        return now < self._fleet_refused_until

    def forget(self, repo: str) -> None:
        """Forget every word about who may read a repository: GitHub said it changed (a
        member removed, the repository made private), so each caller is asked again."""
        for key in [k for k in self._grants if k[1] == repo]:
            del self._grants[key]
        self._blind.pop(repo, None)
        self._public.pop(repo, None)

    def _put(self, table: OrderedDict, key: object, value: object) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_entries:
            table.popitem(last=False)


def fleet_cannot_see(status: int, rate_limited: bool) -> bool:
    """The fleet's answer says its token may not read it (not that GitHub is busy)."""
    return status in (401, 404) or (status == 403 and not rate_limited)


class Budgets:
    """Each caller's rate limits, and what GitHub says about its credential (its OAuth
    scopes, its expiry: policy.TOKEN_FACTS), as its own answers last showed them: an
    answer tells a caller its own budget (from its own entry) and its own credential (from
    any entry), never the fleet's. Bounded."""

    def __init__(self, max_callers: int = 10_000) -> None:
        self.max_callers = max_callers
        self._seen: OrderedDict[str | None, tuple[dict[str, RateLimit], dict[str, str]]] = \
            OrderedDict()

    def seen(self, caller: Caller, headers: dict[str, str], status: int = 200) -> None:
        limits, credential = self._seen.get(caller.digest, ({}, {}))
        limits = seen_rate_limits(limits, headers, max_buckets=8)
        if status < 500:  # (a proxy's 502 says nothing about the token)
            credential = credential_headers(headers)
        self._seen[caller.digest] = limits, credential
        self._seen.move_to_end(caller.digest)
        while len(self._seen) > self.max_callers:
            self._seen.popitem(last=False)

    def of(self, caller: Caller) -> dict[str, RateLimit]:
        return self._seen.get(caller.digest, ({}, {}))[0]

    def credential(self, caller: Caller) -> dict[str, str]:
        """None of it for an anonymous caller: GitHub sends it only with a token's answers."""
        if caller.anonymous:
            return {}
        return self._seen.get(caller.digest, ({}, {}))[1]
