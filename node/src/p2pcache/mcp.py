"""`p2pcache mcp`: the fleet cache as Model Context Protocol tools, for coding agents.

An MCP server over stdio (official SDK) whose tools are thin views of the running node's
local API: `github_get` (any REST GET through the cache), `cache_stats`, `fleet_status`
and `doctor`. It writes nothing to GitHub: agents write through their own tools.

With no node answering at --http, it starts one of its own (`p2pcache serve`, logs on
stderr, stdin closed) and stops it when the session ends, so stdout carries only protocol.
`--listen` serves the same tools over the SDK's streamable HTTP transport on loopback, with
Host and Origin checked as the local API does.
"""

from __future__ import annotations

import ctypes
import inspect
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Annotated, Any, Literal

import anyio
import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from . import config, targets
from .client import LinkError, NodeClient, NodeUnavailable

log = logging.getLogger("p2pcache.mcp")

DEFAULT_PAGES = 5
MAX_PAGES = 30
# A tool's result as the client receives it, all its content: an agent's context is not the
# place for a 60 MiB page, and neither is this process's memory.
MAX_RESULT_BYTES = 4 * 1024 * 1024
# Page bytes read for one call. The result carries the body twice (structured, and as text for
# clients that read only text), and escaping grows the text copy.
READ_BUDGET = MAX_RESULT_BYTES * 3 // 8
NOTE_RESERVE = 4096  # room kept for the note that says what was cut
REACHABILITY_TIMEOUT = 20.0
OWN_NODE_READY = 30.0
# The headers an agent acts on: validators, paging, budgets, and where the answer came from.
HEADERS = ("etag", "last-modified", "link", "content-type", "retry-after",
           "x-github-request-id")
HEADER_PREFIXES = ("x-ratelimit-", "x-p2p-cache")
# A scheme ("http:", "javascript:") or an authority ("//host"): not a path on GitHub's API.
_NOT_RELATIVE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:|[/\\]{2})")

INSTRUCTIONS = (
    "GitHub REST reads through a shared cache: prefer github_get over your own GitHub tool "
    "for GETs, since cached answers cost no rate limit. Writes are not offered here.")
READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True,
                            openWorldHint=True)


class GitHubResponse(BaseModel):
    status: int = Field(description="GitHub's HTTP status (of the last page read)")
    source: str = Field(description="where the (first) answer came from: hit (this node's "
                        "cache), peer (another node of the fleet), miss (GitHub), "
                        "revalidated (GitHub said 304, free), coalesced (shared an "
                        "identical in-flight request)")
    sources: list[str] = Field(description="the source of each page read, in order")
    headers: dict[str, str] = Field(description="ETag, Link, Last-Modified, X-RateLimit-*, "
                                    "X-P2P-Cache and X-GitHub-Request-Id of the first page")
    body: Any = Field(description="the JSON body (pages of a list concatenated), or text")
    pages: int = Field(description="how many pages were read")
    next_path: str | None = Field(description="the next page's path when paging stopped "
                                  "before the last page (max_pages reached, or the result was "
                                  "full): call again with it; else null")
    note: str | None = Field(default=None, description="set when the result is incomplete: "
                             "what was left out (cut to stay within 4 MiB, or a next link "
                             "that leaves the node, not followed) and how to get the rest")


class Check(BaseModel):
    status: Literal["ok", "warn", "fail", "info"]
    title: str
    detail: str
    fixes: list[str] = Field(description="what to do, most likely first")


class DoctorReport(BaseModel):
    problems: int = Field(description="how many checks failed")
    checks: list[Check]


def api_target(path: str) -> str:
    """The node-relative target of an agent's API path, or ToolError: only GitHub REST
    paths (`repos/o/r`, `/users/u?x=1`), never a URL, an authority or the node's own `/-/`."""
    if _NOT_RELATIVE.match(path) or "\\" in path:
        raise ToolError(f"not a relative GitHub API path: {path!r} (give e.g. "
                        "'repos/OWNER/REPO' or '/users/NAME')")
    try:
        target = targets.parse(path if path.startswith("/") else "/" + path)
    except targets.TargetError as exc:
        raise ToolError(f"not a GitHub API path: {exc}") from None
    if target.path == "/-" or target.path.startswith("/-/"):
        raise ToolError("/-/ is the node's own API: use cache_stats or fleet_status")
    return str(target)


def github_error(response: httpx.Response, data: bytes) -> str:
    """GitHub's own words for a failed request: its message and documentation URL."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        detail = str(body["message"])
        if body.get("documentation_url"):
            detail += f" ({body['documentation_url']})"
    else:
        detail = data[:500].decode(response.encoding or "utf-8", "replace").strip() \
            or response.reason_phrase
    return f"GitHub answered {response.status_code} {response.reason_phrase}: {detail}"


def _headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items()
            if name in HEADERS or name.startswith(HEADER_PREFIXES)}


def page_body(response: httpx.Response, data: bytes, whole: bool) -> Any:
    """A page's body: JSON if it says so, else text. Of a page read only in part, the whole
    items of a JSON list (what an agent can use), else the text read."""
    text = data.decode(response.encoding or "utf-8", "ignore" if not whole else "replace")
    if "json" in response.headers.get("content-type", ""):
        if whole:
            try:
                return json.loads(text)
            except ValueError:
                return text
        items = _whole_items(text)
        if items is not None:
            return items
    return text


def _whole_items(text: str) -> list[Any] | None:
    """The complete items at the start of a JSON list cut short; None if it is no list."""
    decoder = json.JSONDecoder()
    position = len(text) - len(text.lstrip())
    if not text.startswith("[", position):
        return None
    items: list[Any] = []
    position += 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError:
            return items
        items.append(item)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_bytes(value: Any) -> int:
    return len(_compact(value).encode())


def result_bytes(structured: Any) -> int:
    """What a result takes as the client receives it: the structured content, and the same
    JSON again as a text block (escaped once more inside the message)."""
    text = _compact(structured)
    return len(text.encode()) + len(json.dumps(text, ensure_ascii=False).encode()) + 64


def tool_result(value: BaseModel | dict[str, Any]) -> CallToolResult:
    """A tool's answer, structured and as compact text, within MAX_RESULT_BYTES."""
    structured = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    if result_bytes(structured) > MAX_RESULT_BYTES:  # a dict tool: cut its biggest members
        structured, left_out = fit(structured, None)
        structured["note"] = (f"cut to stay within {MAX_RESULT_BYTES // 2**20} MiB: "
                              f"{left_out:,} bytes of JSON left out")
    return CallToolResult(content=[TextContent(type="text", text=_compact(structured))],
                          structured_content=structured)


def fit(result: dict[str, Any], member: str | None) -> tuple[Any, int]:
    """`result` with `member` (or, for None, the whole) cut until the result is within
    MAX_RESULT_BYTES less NOTE_RESERVE; and how many bytes of JSON were left out."""
    budget = MAX_RESULT_BYTES - NOTE_RESERVE
    original = result if member is None else result[member]
    before = limit = _json_bytes(original)
    size = result_bytes(result)
    while size > budget and limit > 0:
        limit = int(limit * budget / size * 0.98)
        kept = cut(original, limit)
        result = kept if member is None else {**result, member: kept}
        size = result_bytes(result)
    if size > budget:  # nothing left to cut in `member`: cannot happen for our tools
        raise ToolError(f"the result is over {MAX_RESULT_BYTES} bytes even when cut")
    return result, before - _json_bytes(result if member is None else result[member])


def cut(value: Any, limit: int) -> Any:
    """`value` cut so its compact JSON takes at most about `limit` bytes: a list keeps its
    first items, a string its beginning, an object cuts its biggest members first."""
    if _json_bytes(value) <= limit:
        return value
    if isinstance(value, list):
        kept: list[Any] = []
        used = 2
        for item in value:
            used += _json_bytes(item) + 1
            if used > limit:
                break
            kept.append(item)
        return kept
    if isinstance(value, str):
        low, high = 0, len(value)
        while low < high:
            middle = (low + high + 1) // 2
            if _json_bytes(value[:middle]) <= limit:
                low = middle
            else:
                high = middle - 1
        return value[:low]
    if isinstance(value, dict):
        out = dict(value)
        for key in sorted(out, key=lambda k: _json_bytes(out[k]), reverse=True):
            excess = _json_bytes(out) - limit
            if excess <= 0:
                break
            out[key] = cut(out[key], max(0, _json_bytes(out[key]) - excess))
        return out
    return value


def _per_page(items: int) -> str:
    return (f"ask with per_page={min(100, max(1, items))} (or smaller) and paginate: when a "
            "result is full, next_path says where to go on")


def _cut_note(body: Any, kept: Any, left_out: int) -> str:
    mib = MAX_RESULT_BYTES // 2**20
    if isinstance(body, list) and isinstance(kept, list):
        return (f"cut to stay within {mib} MiB: the first {len(kept)} of {len(body)} items "
                f"are shown ({left_out:,} bytes left out). To get them all, "
                + _per_page(len(kept)))
    if isinstance(body, str):
        return (f"cut to stay within {mib} MiB: the first {len(kept):,} characters are "
                f"shown ({left_out:,} bytes left out); ask for a narrower path")
    return (f"cut to stay within {mib} MiB: the biggest lists and strings of the body were "
            f"shortened ({left_out:,} bytes left out); narrow the request (a smaller "
            f"per_page, a narrower path or query)")


class Tools:
    """The tools' logic over a NodeClient (blocking; the server runs it in threads)."""

    def __init__(self, client: NodeClient, settings: config.Settings) -> None:
        self.client = client
        self.settings = settings

    def _get(self, target: str, headers: dict[str, str] | None = None,
             timeout: float | None = None) -> httpx.Response:
        try:
            return self.client.get(target, headers, timeout=timeout)
        except NodeUnavailable as exc:
            raise ToolError(str(exc)) from None

    def _json(self, target: str, timeout: float | None = None) -> Any:
        response = self._get(target, timeout=timeout)
        if response.status_code != 200:
            raise ToolError(f"the node answered {response.status_code} for {target}")
        return response.json()

    def github_get(self, path: str, accept: str | None, paginate: bool,
                   max_pages: int) -> GitHubResponse:
        target: str | None = api_target(path)
        headers = {"Accept": accept} if accept else None
        first: httpx.Response | None = None
        response: httpx.Response | None = None
        sources: list[str] = []
        notes: list[str] = []
        body: Any = None
        pages = 0
        budget = READ_BUDGET
        full = (f"stopped before page {{}} to stay within {MAX_RESULT_BYTES // 2**20} MiB; "
                "call again with next_path")
        while target and pages < (max_pages if paginate else 1):
            if budget <= 0:
                notes.append(full.format(pages + 1))
                break
            response, data, whole = self._get_capped(target, headers, budget)
            if response.status_code >= 400:
                raise ToolError(github_error(response, data))
            if not whole and pages:  # a later page that does not fit: it is next_path
                notes.append(full.format(pages + 1))
                break
            budget -= len(data)
            pages += 1
            sources.append(response.headers.get("x-p2p-cache", "unknown"))
            page = page_body(response, data, whole)
            if not whole:
                notes.append(self._partial_note(response, data, page))
            if first is None:
                first, body = response, page
            elif isinstance(body, list) and isinstance(page, list):
                body.extend(page)
            elif isinstance(body, dict) and isinstance(page, dict):
                # Search and Actions page an object ({"total_count", "items": [...]}).
                for key, value in page.items():
                    if isinstance(value, list) and isinstance(body.get(key), list):
                        body[key].extend(value)
            target = None
            if paginate:
                try:
                    target = self.client.next_page(response)
                except LinkError as exc:
                    notes.append(f"paging stopped: {exc}, so it was not asked for")
            if not whole:
                break
        assert first is not None and response is not None
        result = GitHubResponse(status=response.status_code, source=sources[0],
                                sources=sources, headers=_headers(first), body=body,
                                pages=pages, next_path=target if paginate else None)
        dumped = result.model_dump(mode="json")
        if result_bytes(dumped) > MAX_RESULT_BYTES - NOTE_RESERVE:
            dumped, left_out = fit(dumped, "body")
            notes.append(_cut_note(body, dumped["body"], left_out))
            result = GitHubResponse.model_validate(dumped)
        result.note = "; ".join(notes) or None
        return result

    @staticmethod
    def _partial_note(response: httpx.Response, data: bytes, page: Any) -> str:
        length = response.headers.get("content-length", "")
        size = f"{int(length):,} bytes" if length.isdigit() else "larger"
        if isinstance(page, list):
            shown, advice = f"its first {len(page)} items are shown", _per_page(len(page))
        else:
            shown, advice = f"its first {len(data):,} bytes are shown", "ask for a narrower path"
        return (f"cut to stay within {MAX_RESULT_BYTES // 2**20} MiB: the page is {size}, "
                f"{shown}; {advice}")

    def _get_capped(self, target: str, headers: dict[str, str] | None,
                    max_bytes: int) -> tuple[httpx.Response, bytes, bool]:
        try:
            return self.client.get_capped(target, headers, max_bytes)
        except NodeUnavailable as exc:
            raise ToolError(str(exc)) from None

    def cache_stats(self) -> dict[str, Any]:
        return self._json("/-/stats")

    def fleet_status(self) -> dict[str, Any]:
        stats = self._json("/-/stats")
        try:
            reach = self._json("/-/reachability", timeout=REACHABILITY_TIMEOUT)
        except ToolError:  # a dial-back can outlast our bound; the rest is still worth having
            reach = {"reachable": None,
                     "error": f"no answer within {REACHABILITY_TIMEOUT:.0f} s"}
        return {"peer_id": stats.get("peer_id"),
                "bootstrap_multiaddr": stats.get("bootstrap_multiaddr"),
                "listen_addrs": stats.get("listen_addrs", []),
                "bootstrap_peers": stats.get("bootstrap_peers", []),
                "connected_peers": self._json("/-/peers"),
                "reachability": reach}

    def doctor(self) -> DoctorReport:
        import trio

        from . import doctor

        marks = {doctor.OK: "ok", doctor.WARN: "warn", doctor.FAIL: "fail",
                 doctor.INFO: "info"}
        found = trio.run(doctor.run_checks, self.settings, False)
        checks = [Check(status=marks[c.mark], title=c.title, detail=c.detail, fixes=c.fixes)
                  for c in found]
        return DoctorReport(problems=sum(c.status == "fail" for c in checks), checks=checks)


def build_server(tools: Tools) -> MCPServer:
    from . import __version__

    server = MCPServer("p2pcache", version=__version__, instructions=INSTRUCTIONS)

    def tool(fn: Any) -> Any:
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__), annotations=READ_ONLY)
        return fn

    @tool
    async def github_get(
        path: Annotated[str, Field(
            description="GitHub REST path relative to the API root, with its query string: "
                        "'repos/OWNER/REPO', '/repos/OWNER/REPO/issues?state=open&per_page=100'"
                        ". Not a URL.", min_length=1, max_length=targets.MAX_TARGET)],
        accept: Annotated[str | None, Field(
            description="Accept header, e.g. 'application/vnd.github.raw+json' for a file's "
                        "raw content; default GitHub's JSON",
            pattern=r"^[\x20-\x7e]{1,200}$")] = None,
        paginate: Annotated[bool, Field(
            description="follow Link rel=next and concatenate the pages of a list")] = False,
        max_pages: Annotated[int, Field(
            description=f"paging bound (default {DEFAULT_PAGES}, at most {MAX_PAGES}); "
                        "next_path says where to go on", ge=1, le=MAX_PAGES)] = DEFAULT_PAGES,
    ) -> Annotated[CallToolResult, GitHubResponse]:
        """GET any GitHub REST API path through the fleet's shared cache (read-only).

        Answers like GitHub (same status, body, ETag, Link, rate-limit headers) and says
        where the answer came from: hit, peer, miss, revalidated or coalesced. Cached and
        peer answers cost no GitHub rate limit. A GitHub error (404, 403 ...) is a tool
        error carrying GitHub's message. A result stays within 4 MiB: `note` says what was
        cut and how to get the rest.
        """
        return tool_result(await anyio.to_thread.run_sync(tools.github_get, path, accept,
                                                          paginate, max_pages))

    @tool
    async def cache_stats() -> Annotated[CallToolResult, dict[str, Any]]:
        """The node's counters: hit_rate, api_calls_saved, peer_hits, local_hits, misses,
        upstream_requests, not_modified (free 304s), coalesced, entries, bytes, and
        rate_limits (GitHub's remaining budget per resource: core, search, graphql ...)."""
        return tool_result(await anyio.to_thread.run_sync(tools.cache_stats))

    @tool
    async def fleet_status() -> Annotated[CallToolResult, dict[str, Any]]:
        """This node in the fleet: peer_id, bootstrap_multiaddr (what runners put into
        MCP_P2P_BOOTSTRAP_PEERS), connected_peers, and reachability (whether a peer could
        dial this node from outside; tested within about 20 s, null when no peer can try)."""
        return tool_result(await anyio.to_thread.run_sync(tools.fleet_status))

    @tool
    async def doctor() -> Annotated[CallToolResult, DoctorReport]:
        """`p2pcache doctor`: configuration, bootstrap peers dialled, the node running and
        reachable, host firewall; each check with status ok/warn/fail/info and its fixes."""
        return tool_result(await anyio.to_thread.run_sync(tools.doctor))

    return server


class OwnNode:
    """A `p2pcache serve` this session started because none was running; stopped with it."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, client: NodeClient) -> None:
        http = f"{self.settings.http_host}:{self.settings.http_port}"
        if ":" in self.settings.http_host:
            http = f"[{self.settings.http_host}]:{self.settings.http_port}"
        log.info("p2pcache mcp: no node at %s, starting one", self.settings.http_base)
        # Its logs go to our stderr (stdout is the protocol's); it never reads our stdin.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pcache", "serve", "--http", http],
            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + OWN_NODE_READY
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeUnavailable(f"the node this session started exited with status "
                                      f"{self.proc.returncode} (its log is above)")
            try:
                if client.get("/-/healthz", timeout=2).status_code == 200:
                    return
            except NodeUnavailable:
                time.sleep(0.1)
        self.stop()
        raise NodeUnavailable(f"the node this session started did not answer in "
                              f"{OWN_NODE_READY:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _die_with_parent() -> None:
    """Linux: the node gets SIGTERM if this session is killed outright (SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _node_answers(client: NodeClient) -> bool:
    try:
        return client.get("/-/healthz", timeout=3).status_code == 200
    except NodeUnavailable:
        return False


def listen_address(value: str) -> tuple[str, int]:
    """--listen HOST:PORT for the HTTP transport: loopback only, like the local API's default,
    since the tools hand out the node's view of GitHub to whoever can connect."""
    host, port = config._http("--listen", value)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise config.ConfigError("--listen", value, "the MCP HTTP transport listens on "
                                 "loopback only (127.0.0.1, ::1 or localhost)")
    return host, port


def http_security(port: int) -> TransportSecuritySettings:
    """DNS rebinding shows up as a foreign Host, a browser page as an Origin: refuse both."""
    hosts = [f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=[])


def serve(settings: config.Settings, start_node: bool = True,
          listen: tuple[str, int] | None = None) -> int:
    """Serve the tools on stdio (or streamable HTTP at `listen`) until the client leaves."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(message)s")
    client = NodeClient(settings.http_base, settings.token)
    own = OwnNode(settings)
    # An MCP client ends a session by closing stdin, or with SIGTERM: both stop our node.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if start_node and not _node_answers(client):
            own.start(client)
        server = build_server(Tools(client, settings))
        if listen is None:
            server.run("stdio")
        else:
            host, port = listen
            # uvicorn writes its access log to stdout: over HTTP, stdout is just more log.
            sys.stdout.flush()
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
            log.info("p2pcache mcp: streamable HTTP at http://%s:%d/mcp",
                     f"[{host}]" if ":" in host else host, port)
            server.run("streamable-http", host=host, port=port,
                       transport_security=http_security(port))
    except (KeyboardInterrupt, SystemExit):
        own.stop()
        # The stdio transport's reader thread is blocked in a read of the still-open stdin,
        # and the interpreter would wait for it forever: leave without joining it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    finally:
        own.stop()
    return 0


__all__ = ["DEFAULT_PAGES", "MAX_PAGES", "MAX_RESULT_BYTES", "Tools", "api_target", "build_server",
           "listen_address", "serve"]
