"""GraphQL requests: what a `POST /graphql` body asks, read within limits; whether its answer
can be shared and for which repositories; its cache key; its estimated cost; and which
repositories a mutation changes.

Pure: no I/O, no clock. The edge hands a body and its headers to `parse_request` once; what
is not a well-formed, bounded GraphQL request comes back as `Passthrough` (GitHub answers
it). Everything after works on the `GraphQLRequest` it returns and never re-checks.

Who asks (docs/graphql.md has the reasoning): an answer is shared only when the operation
is a query, every root field is `repository(owner:, name:)` or `search(query:)` whose
repositories can be told from literals or variables, and no field anywhere depends on the
caller (`CALLER_FIELDS`, `caller_field`). Anything else is answered per identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from graphql import GraphQLError, parse, print_ast
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.pyutils import Undefined
from graphql.utilities import value_from_ast_untyped

from .targets import GRAPHQL_PATHS

KEY_VERSION = 1  # part of every key: a change of what the key covers starts new entries
# GitHub refuses a query that could return more than 500,000 nodes; one that passes cannot
# cost more than about this many points, however its page sizes multiply.
MAX_COST = 5000


@dataclass(frozen=True)
class Limits:
    """What a document may need before it is read. Reading costs time linear in tokens and
    in values (bench/graphql_parse.py measures the worst bodies within these), so they
    bound the stall; gh's largest document (`pr view`) has 336 tokens, depth 12, 1 alias."""

    # The JSON body: a mutation's variables may carry a 65,536-character comment, escaped.
    body_bytes: int = 512 * 1024
    query_chars: int = 16 * 1024  # the lexer reads a long string literal a character at a time
    tokens: int = 1000  # lexical tokens; comments are bounded separately by the same number
    depth: int = 24  # nested selection sets, fragments expanded
    definitions: int = 32  # operations and fragments
    aliases: int = 64
    variables_depth: int = 16  # nesting of lists and objects in `variables`
    variables_values: int = 10_000  # values (and members) in `variables`


LIMITS = Limits()

PATHS = GRAPHQL_PATHS  # where clients POST GraphQL (targets.py)

# Request headers that change GitHub's answer to the same document. Accept selects schema
# previews; GraphQL-Features turns on features (gh sends `merge_queue`); Time-Zone and
# X-Github-Next-Global-ID change values (time zones, the form of node ids) in the answer.
REPRESENTATION_HEADERS = ("accept", "graphql-features", "time-zone", "x-github-next-global-id")
# Accept values that select GitHub's default GraphQL representation: dropped from the key.
_DEFAULT_MEDIA = frozenset({"*/*", "application/json", "application/vnd.github+json",
                            "application/vnd.github.v3+json", "application/vnd.github.v4+json",
                            "application/graphql-response+json"})

# Fields whose answer depends on who asks, beyond those named for the viewer (`viewer*`,
# `*Viewer*`: `viewer`, `viewerDidAuthor`, `viewerCan*`, `viewerHas*`, `viewerPermission`,
# `viewerSubscription`, `isViewer`, `isFollowingViewer` ...; `requestedReviewer` is not one).
# Each is here because GitHub filters it by what the caller may read elsewhere, needs more
# than read access for it, or reports the caller's own state.
CALLER_FIELDS = frozenset({
    "rateLimit",                       # the caller's budget
    # cross-references and links from repositories the caller may not read
    "timelineItems", "timeline", "closingIssuesReferences", "closedByPullRequestsReferences",
    # projects have their own visibility, per project
    "projectCards", "projects", "projectsV2", "projectV2", "projectItems", "recentProjects",
    # need push or admin access, not read
    "collaborators", "deployKeys", "vulnerabilityAlerts", "branchProtectionRules", "rulesets",
    # other repositories, whose visibility differs (private forks, a private parent, sub-issues
    # and tracked issues in other repositories)
    "forks", "parent", "templateRepository", "subIssues", "trackedIssues", "trackedInIssues",
    # what an account has across GitHub, as far as the caller may see it
    "repositories", "repositoriesContributedTo", "starredRepositories", "watching", "gists",
    "organizations", "membersWithRole", "teams", "pendingMembers", "packages",
    "contributionsCollection", "savedReplies", "sponsorshipsAsSponsor",
    "sponsorshipsAsMaintainer", "enterprises",
})
# Under an account (a field that returns a User, Organization or other actor), these list
# what that account did across GitHub (filtered for the caller); under a repository they are
# the repository's own and shared.
ACCOUNT_FIELDS = frozenset({
    "owner", "author", "editor", "actor", "user", "organization", "headRepositoryOwner",
    "mergedBy", "requestedReviewer", "assignee", "assignees", "creator", "sponsor",
    "sponsorable", "participants", "reviewer", "reactors", "users",
})
ACCOUNT_WIDE_FIELDS = frozenset({
    "issues", "pullRequests", "issueComments", "commitComments", "repositoryDiscussions",
    "repositoryDiscussionComments", "pinnedItems", "anyPinnableItems", "itemShowcase",
    "followers", "following", "sponsors", "sponsoring", "lists",
    "status",  # a user's status may be limited to one organization (a commit's is shared)
})
# Root fields whose repositories can be told; any other root field is per identity.
REPOSITORY_ROOTS = frozenset({"repository", "search", "__typename"})
# Search types scoped by `repo:` qualifiers.
REPOSITORY_SEARCH_TYPES = frozenset({"ISSUE", "ISSUE_ADVANCED", "REPOSITORY", "DISCUSSION"})
# Search qualifiers that widen a search past the repositories it names.
_SCOPE_QUALIFIERS = frozenset({"repo", "org", "user", "owner", "in-org", "enterprise"})
# Mutations whose effects may reach repositories their input does not name (closing keywords
# in a merged pull request or a pushed commit close issues in other repositories).
FAR_REACHING_MUTATIONS = frozenset({"mergePullRequest", "mergeBranch", "createCommitOnBranch",
                                    "revertPullRequest", "enqueuePullRequest"})
# Mutation input members that name the object (and so the repository) it changes.
SUBJECT_KEYS = frozenset({
    "id", "subjectId", "issueId", "pullRequestId", "labelableId", "assignableId", "lockableId",
    "closableId", "reopenableId", "repositoryId", "commentId", "pullRequestReviewId",
    "pullRequestReviewCommentId", "threadId", "discussionId", "reactableId", "updatableId",
    "deletableId", "minimizableId", "subscribableId", "milestoneId",
})
# New-style node ids whose msgpack payload is [0, repository database id, ...] (R_: the
# repository itself), and the legacy form "010:Repository<id>".
_NODE_ID = re.compile(r"(R|I|PR|IC)_([A-Za-z0-9_-]{4,64})")
_LEGACY_REPOSITORY = re.compile(rb"0?\d{1,3}:Repository(\d{1,19})")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SEARCH_TERM = re.compile(r'(?:[^\s"]+|"[^"]*")+|"[^"]*$')


@dataclass(frozen=True)
class Passthrough:
    """Not a request this node reads: it goes to GitHub as it came, uncached."""

    reason: str


@dataclass(frozen=True, order=True)
class Repository:
    """owner/name, lower-cased: GitHub's names are case-insensitive."""

    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def parse(cls, owner: object, name: object) -> Repository | None:
        if not (isinstance(owner, str) and isinstance(name, str)):
            return None
        if not (_OWNER.fullmatch(owner) and _NAME.fullmatch(name)) or name in (".", ".."):
            return None
        return cls(owner.lower(), name.lower())


@dataclass(frozen=True, eq=False)
class GraphQLRequest:
    """A bounded, parsed GraphQL request and the operation it selects."""

    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]  # as the client sent them
    # (header, canonical value) for each representation header the client sent
    representation: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        """"query", "mutation" or "subscription"."""
        return self.operation.operation.value

    @property
    def operation_name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None


@dataclass(frozen=True)
class Classification:
    """What a request does and who may share its answer."""

    kind: str
    # Why the answer depends on who asks: caller-dependent fields ("viewer",
    # "viewerDidAuthor"), or what keeps its repositories from being told. Empty: it does not.
    caller_dependent: tuple[str, ...]
    repositories: frozenset[Repository]  # read (queries) by name

    @property
    def shared(self) -> bool:
        """One answer for every client that may read `repositories`."""
        return self.kind == "query" and not self.caller_dependent and bool(self.repositories)


@dataclass(frozen=True)
class Touched:
    """The repositories a mutation changes. `unknown`: some cannot be told, so the caller
    drops the entries of every repository its recent queries named."""

    repositories: frozenset[Repository] = frozenset()
    repository_ids: frozenset[int] = frozenset()  # GitHub database ids, from node ids
    unknown: bool = False


# --------------------------------------------------------------------------------------- #
# Reading a body
# --------------------------------------------------------------------------------------- #

def parse_request(body: bytes, headers: Mapping[str, str],
                  limits: Limits = LIMITS) -> GraphQLRequest | Passthrough:
    """The GraphQL request in a POST body (`headers`: lower-case names), or why not.

    Never raises. Limits apply before parsing (body and query size), during it (tokens,
    comments, the parser's nesting guard) and after (depth with fragments expanded,
    definitions, aliases, fragment cycles)."""
    try:
        return _parse_request(body, headers, limits)
    except (RecursionError, MemoryError):
        return Passthrough("too deeply nested")


def _parse_request(body: bytes, headers: Mapping[str, str],
                   limits: Limits) -> GraphQLRequest | Passthrough:
    if len(body) > limits.body_bytes:
        return Passthrough(f"body over {limits.body_bytes} bytes")
    if headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return Passthrough("encoded body")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Passthrough("body is not JSON")
    if not isinstance(doc, dict):
        return Passthrough("body is not a JSON object")
    if not doc.keys() <= {"query", "operationName", "variables"}:
        return Passthrough("body has members other than query, operationName, variables")
    query, name, variables = doc.get("query"), doc.get("operationName"), doc.get("variables")
    if not isinstance(query, str):
        return Passthrough("query is not a string")
    if name is not None and not isinstance(name, str):
        return Passthrough("operationName is not a string")
    name = name or None  # "" names no operation, as an absent one
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        return Passthrough("variables is not an object")
    too_much = _too_much(variables, limits)
    if too_much:
        return Passthrough(too_much)
    if len(query) > limits.query_chars:
        return Passthrough(f"query over {limits.query_chars} characters")
    try:
        document = parse(query, no_location=True, max_lexical_tokens=limits.tokens,
                         max_comments=limits.tokens, max_source_length=limits.query_chars)
    except GraphQLError as exc:
        return Passthrough(f"does not parse: {exc.message[:120]}")
    return _select(document, name, variables, _representation(headers), limits)


def _select(document: DocumentNode, name: str | None, variables: dict,
            representation: tuple[tuple[str, str], ...],
            limits: Limits) -> GraphQLRequest | Passthrough:
    if len(document.definitions) > limits.definitions:
        return Passthrough(f"over {limits.definitions} definitions")
    operations: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
        elif isinstance(definition, FragmentDefinitionNode):
            if definition.name.value in fragments:
                return Passthrough(f"fragment {definition.name.value} defined twice")
            fragments[definition.name.value] = definition
        else:
            return Passthrough("a definition that is not executable")
    if len(operations) > 1 and any(op.name is None for op in operations):
        return Passthrough("an anonymous operation beside others")
    if name is None:
        if len(operations) != 1:
            return Passthrough("no operationName to choose between operations")
        operation = operations[0]
    else:
        named = [op for op in operations if op.name and op.name.value == name]
        if len(named) != 1:
            return Passthrough(f"no single operation named {name[:64]}")
        operation = named[0]
    aliases = sum(1 for node in _fields(document) if node.alias is not None)
    if aliases > limits.aliases:
        return Passthrough(f"over {limits.aliases} aliases")
    request = GraphQLRequest(document, operation, fragments, variables, representation)
    try:
        depth = _Walk(request).operation().depth
    except _Invalid as exc:
        return Passthrough(str(exc))
    if depth > limits.depth:
        return Passthrough(f"nested deeper than {limits.depth}")
    return request


def _representation(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    out = []
    for name in REPRESENTATION_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        items = [item.strip() for item in value.split(",") if item.strip()]
        if name == "accept":
            items = [i.lower() for i in items if i.lower() not in _DEFAULT_MEDIA]
        canonical = ",".join(sorted(set(items))) if name != "time-zone" else value.strip()
        if canonical:
            out.append((name, canonical))
    return tuple(out)


def _too_much(variables: dict, limits: Limits) -> str:
    """Why `variables` is past the limits ("" when it is not): nesting or number of values.
    Iterative, and it stops at the first value past either limit."""
    seen, stack = 0, [(variables, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limits.variables_depth:
            return f"variables nested deeper than {limits.variables_depth}"
        if isinstance(item, (dict, list)):
            seen += len(item)
            if seen > limits.variables_values:
                return f"over {limits.variables_values} values in variables"
            values = item.values() if isinstance(item, dict) else item
            stack.extend((v, depth + 1) for v in values if isinstance(v, (dict, list)))
    return ""


def _fields(document: DocumentNode) -> Iterator[FieldNode]:
    """Every field node written in the document, each once (no fragment expansion)."""
    stack: list[SelectionSetNode] = [d.selection_set for d in document.definitions
                                     if getattr(d, "selection_set", None) is not None]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            if getattr(selection, "selection_set", None) is not None:
                stack.append(selection.selection_set)


# --------------------------------------------------------------------------------------- #
# Walking an operation: depth, cost, who-asks, with each fragment summarized once
# --------------------------------------------------------------------------------------- #

class _Invalid(Exception):
    """The document cannot execute (unknown fragment, fragment cycle): GitHub says why."""


@dataclass(frozen=True)
class _Facts:
    depth: int = 0
    # connection requests at multiplier 1 (GitHub's algorithm; see estimated_cost)
    requests: int = 0
    caller: frozenset[str] = frozenset()


_NOTHING = _Facts()


class _Walk:
    """One pass over the selected operation. A fragment is summarized once per context
    (under an account or not) however often it is spread, so a document of fragments that
    each spread the next twice costs what it is long, not 2^n."""

    def __init__(self, request: GraphQLRequest) -> None:
        self.fragments = request.fragments
        self.variables = _effective_variables(request.operation, request.variables)
        self._memo: dict[tuple[str, bool], _Facts] = {}
        self._open: set[tuple[str, bool]] = set()
        self.operation_node = request.operation

    def operation(self) -> _Facts:
        return self.selections(self.operation_node.selection_set, False)

    def value(self, node: Any) -> Any:
        return value_from_ast_untyped(node, self.variables)

    def selections(self, node: SelectionSetNode | None, in_account: bool) -> _Facts:
        if node is None:
            return _NOTHING
        depth, requests, caller = 0, 0, set()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                child = self.selections(selection.selection_set,
                                        in_account or name in ACCOUNT_FIELDS)
                depth = max(depth, 1 + child.depth)
                page = self.page_size(selection)
                requests += child.requests if page is None else 1 + page * child.requests
                caller |= child.caller
                caller.update(self.caller_reasons(selection, in_account))
            elif isinstance(selection, InlineFragmentNode):
                child = self.selections(selection.selection_set, in_account)
                depth, requests = max(depth, child.depth), requests + child.requests
                caller |= child.caller
            elif isinstance(selection, FragmentSpreadNode):
                child = self.fragment(selection.name.value, in_account)
                depth, requests = max(depth, child.depth), requests + child.requests
                caller |= child.caller
        return _Facts(depth, requests, frozenset(caller))

    def fragment(self, name: str, in_account: bool) -> _Facts:
        key = (name, in_account)
        if key in self._memo:
            return self._memo[key]
        if name not in self.fragments:
            raise _Invalid(f"unknown fragment {name[:64]}")
        if key in self._open:
            raise _Invalid(f"fragment {name[:64]} spreads itself")
        self._open.add(key)
        facts = self.selections(self.fragments[name].selection_set, in_account)
        self._open.discard(key)
        self._memo[key] = facts
        return facts

    def page_size(self, node: FieldNode) -> int | None:
        """A connection's first/last (the larger, clamped to GitHub's 0..100; 100 when it
        cannot be told); None for a field that is not a paged connection."""
        sizes = [self.value(a.value) for a in node.arguments or ()
                 if a.name.value in ("first", "last")]
        if not sizes:
            return None
        known = [s for s in sizes if isinstance(s, int) and not isinstance(s, bool)]
        if len(known) < len(sizes):
            return 100
        return min(100, max(0, *known))

    def caller_reasons(self, node: FieldNode, in_account: bool) -> Iterator[str]:
        name = node.name.value
        if caller_field(name, in_account):
            yield name
        for argument in node.arguments or ():
            if _names_viewer(argument.name.value):
                yield f"{name}({argument.name.value}:)"
            else:
                why = _caller_value(self.value(argument.value))
                if why:
                    yield f"{name}({why})"

    def root_fields(self) -> Iterator[FieldNode]:
        """The operation's root fields, through fragments and inline fragments."""
        stack, seen = [self.operation_node.selection_set], set()
        while stack:
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    yield selection
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in self.fragments and name not in seen:
                        seen.add(name)
                        stack.append(self.fragments[name].selection_set)


def caller_field(name: str, in_account: bool = False) -> bool:
    """Whether a field's value depends on who asks (the module docstring's rule)."""
    return (_names_viewer(name) or name in CALLER_FIELDS
            or (in_account and name in ACCOUNT_WIDE_FIELDS))


def _names_viewer(name: str) -> bool:
    return name.startswith("viewer") or "Viewer" in name


def _caller_value(value: object) -> str:
    """What in an argument's value names the caller: `@me` (GitHub's search and filter
    syntax) or an input member named for the viewer (`filterBy: {viewerSubscribed: true}`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "@me" in item.lower():
            return "@me"
        if isinstance(item, dict):
            for key in item:
                if _names_viewer(str(key)):
                    return f"{key}:"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return ""


def _effective_variables(operation: OperationDefinitionNode,
                         sent: Mapping[str, Any]) -> dict[str, Any]:
    """The client's variables plus the operation's defaults for those it did not send."""
    variables = dict(sent)
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in variables and definition.default_value is not None:
            default = value_from_ast_untyped(definition.default_value, {})
            if default is not Undefined:
                variables[name] = default
    return variables


# --------------------------------------------------------------------------------------- #
# What a request reads, who may share it, what it costs, what a mutation changes
# --------------------------------------------------------------------------------------- #

def classify(request: GraphQLRequest) -> Classification:
    """The operation's kind, why its answer depends on who asks (if it does), and the
    repositories it reads."""
    walk = _Walk(request)
    caller = set(walk.operation().caller)
    repositories: set[Repository] = set()
    if request.kind == "query":
        for node in walk.root_fields():
            name = node.name.value
            if name == "repository":
                args = {a.name.value: walk.value(a.value) for a in node.arguments or ()}
                repository = Repository.parse(args.get("owner"), args.get("name"))
                if repository is None:
                    caller.add("repository(owner:, name:) not told")
                else:
                    repositories.add(repository)
            elif name == "search":
                args = {a.name.value: walk.value(a.value) for a in node.arguments or ()}
                found, why = search_repositories(args.get("query"), args.get("type"))
                repositories |= found
                if why:
                    caller.add(why)
            elif name in ("node", "nodes"):
                caller.add(f"{name}(): repository not told")
            elif name not in REPOSITORY_ROOTS and not caller_field(name):
                caller.add(f"root field {name}")
        if not repositories and not caller:
            caller.add("names no repository")
    return Classification(request.kind, tuple(sorted(caller)), frozenset(repositories))


def search_repositories(query: object, kind: object) -> tuple[frozenset[Repository], str]:
    """The repositories a search is confined to, and why it is not ("" when it is)."""
    if kind not in REPOSITORY_SEARCH_TYPES:
        return frozenset(), f"search of type {str(kind)[:32]}"
    if not isinstance(query, str):
        return frozenset(), "search query not told"
    if "@me" in query.lower():
        return frozenset(), "search(@me)"
    found = set()
    for term in _SEARCH_TERM.findall(query):
        if term == "OR" or "(" in term or ")" in term:
            return frozenset(), "search with OR or grouping"
        qualifier, colon, value = term.partition(":")
        qualifier = qualifier.lower().lstrip("-")
        if not colon or qualifier not in _SCOPE_QUALIFIERS:
            continue
        owner, slash, name = value.strip('"').partition("/")
        repository = Repository.parse(owner, name) if slash else None
        if qualifier != "repo" or term.startswith("-") or repository is None:
            return frozenset(), f"search qualifier {term[:64]}"
        found.add(repository)
    if not found:
        return frozenset(), "search without repo:"
    return frozenset(found), ""


def estimated_cost(document: DocumentNode | GraphQLRequest,
                   variables: Mapping[str, Any] | None = None,
                   operation_name: str | None = None) -> int:
    """GitHub's points for the operation, estimated as GitHub documents it: every field with
    `first`/`last` (a connection) needs one request per object of its parent connections,
    so its requests are the product of the page sizes above it; the sum over connections,
    divided by 100 and rounded, at least 1 (and at most MAX_COST). A page size that cannot be
    told counts as 100, and a connection spread twice counts twice, so this errs high.

    An estimate because GitHub does not say: `X-RateLimit-Used` moves by the real cost, but
    with every other request of the same token in between, and the exact figure is only in
    the body when the query selects `rateLimit { cost }`."""
    if isinstance(document, GraphQLRequest):
        request = document
    else:
        chosen = _select(document, operation_name, dict(variables or {}), (),
                         Limits(depth=1 << 30, definitions=1 << 30, aliases=1 << 30))
        if isinstance(chosen, Passthrough):
            return 1
        request = chosen
    try:
        requests = _Walk(request).operation().requests
    except _Invalid:
        return 1
    return min(MAX_COST, max(1, math.floor(requests / 100 + 0.5)))


def mutation_targets(request: GraphQLRequest) -> Touched:
    """What a mutation changes, as far as its input tells: `repositoryId`/`*Id` node ids of
    the objects it changes (new-style ids carry the repository's database id),
    `repositoryNameWithOwner`. Anything it cannot tell makes it `unknown`."""
    if request.kind != "mutation":
        return Touched()
    walk = _Walk(request)
    names: set[Repository] = set()
    ids: set[int] = set()
    unknown = False
    for node in walk.root_fields():
        if node.name.value == "__typename":
            continue
        args = {a.name.value: walk.value(a.value) for a in node.arguments or ()}
        given = args.get("input")
        found = _subjects(given) if isinstance(given, dict) else None
        if node.name.value in FAR_REACHING_MUTATIONS or not found:
            unknown = True
        for subject in found or ():
            if isinstance(subject, Repository):
                names.add(subject)
            elif isinstance(subject, int):
                ids.add(subject)
            else:
                unknown = True
    return Touched(frozenset(names), frozenset(ids), unknown)


def _subjects(given: dict) -> list[Repository | int | None]:
    """The repositories an input names: a Repository, a database id, or None (named but not
    told). Nested input objects (createCommitOnBranch's `branch`) are searched too."""
    found: list[Repository | int | None] = []
    stack = [given]
    while stack:
        item = stack.pop()
        for key, value in item.items():
            if isinstance(value, dict):
                stack.append(value)
            elif key == "repositoryNameWithOwner":
                owner, _, name = str(value).partition("/")
                found.append(Repository.parse(owner, name))
            elif key in SUBJECT_KEYS:
                found.append(repository_database_id(value) if isinstance(value, str) else None)
    return found


def repository_database_id(node_id: str) -> int | None:
    """The database id of the repository a node id belongs to, when the id tells it: new-style
    ids of repositories, issues, pull requests and issue comments (`R_`, `I_`, `PR_`, `IC_`:
    base64url msgpack [0, repository id, ...]), or a legacy repository id."""
    match = _NODE_ID.fullmatch(node_id)
    if match:
        try:
            raw = base64.urlsafe_b64decode(match[2] + "=" * (-len(match[2]) % 4))
        except (binascii.Error, ValueError):
            return None
        length = 2 if match[1] == "R" else 3
        if len(raw) < 3 or raw[0] != 0x90 | length or raw[1] != 0x00:
            return None
        return _msgpack_uint(raw, 2)
    try:
        legacy = base64.b64decode(node_id, validate=True)
    except (binascii.Error, ValueError):
        return None
    match = _LEGACY_REPOSITORY.fullmatch(legacy)
    return int(match[1]) if match else None


def _msgpack_uint(raw: bytes, at: int) -> int | None:
    tag = raw[at]
    if tag < 0x80:
        return tag
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(tag)
    if width is None or len(raw) < at + 1 + width:
        return None
    return int.from_bytes(raw[at + 1:at + 1 + width], "big")


def cache_key(request: GraphQLRequest, host: str, identity: str | None = None) -> str:
    """The entry's key: the document as graphql-core prints it (whitespace, commas and
    comments do not count), the selected operation's name, the variables as canonical JSON,
    the representation headers, the host, and for a per-identity answer the caller's
    `identity` (a keyed hash the caller made; never a credential). Hashed: a key is short
    whatever the document's size."""
    material = json.dumps(
        [KEY_VERSION, host, print_ast(request.document), request.operation_name,
         canonical_variables(request.variables), request.representation, identity],
        separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(material.encode("ascii")).hexdigest()
    return f"POST {host}/graphql {request.operation_name or '-'} {digest}"


def is_storable(status: int, body: bytes) -> bool:
    """Whether GitHub's answer to a shared query may be stored: 200, a JSON object with
    `data`, and no `errors` (GitHub answers partial failures, NOT_FOUND and rate limits with
    200 and `errors`; asking again is how a client gets past them). Parses the whole body:
    run it off the event loop for a large one."""
    if status != 200:
        return False
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and "errors" not in doc and isinstance(doc.get("data"), dict)


def canonical_variables(variables: Mapping[str, Any]) -> str:
    """Variables as the key sees them: sorted keys, compact, ASCII."""
    return json.dumps(variables, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


__all__ = ["LIMITS", "MAX_COST", "Classification", "GraphQLRequest", "Limits", "Passthrough",
           "Repository", "Touched", "cache_key", "caller_field", "canonical_variables",
           "classify", "estimated_cost", "is_storable", "mutation_targets", "parse_request",
           "repository_database_id", "search_repositories"]


RATE_LIMIT_TYPES = frozenset({"RATE_LIMITED", "RATE_LIMIT"})  # GitHub's, and older spellings


def spent_budget(body: bytes) -> bool:
    """Whether an answer says the asking token's GraphQL budget is spent (200 with an error
    of type RATE_LIMITED): the fleet's refusal, not the caller's, who may ask with its own."""
    if b"RATE_LIMIT" not in body:
        return False  # the common case, without parsing
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("type") in RATE_LIMIT_TYPES for e in errors)


_DRAFT = re.compile(rb'"isDraft"\s*:\s*true')


def shows_drafts(request: GraphQLRequest, body: bytes) -> bool:
    """Whether an answer may list a draft release, which GitHub shows only to those who can
    push (access.depends_on_caller's rule for REST): then it is the caller's own. A query
    that selects releases and answers `isDraft: true` anywhere (a draft pull request
    too: erring on the side of the caller's own)."""
    return b"isDraft" in body and _DRAFT.search(body) is not None and any(
        field.name.value in _RELEASE_FIELDS for field in _fields(request.document))


_RELEASE_FIELDS = frozenset({"releases", "release", "latestRelease"})
