"""`p2pcache mcp`, driven by the official SDK's stdio client against a real node and the
fake GitHub: the tools an agent sees, what they answer, and that the cache is really used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Awaitable, Callable

import anyio
import httpx
import psutil
import pytest
from conftest import FLEET_TOKEN, NAMESPACE, free_port
from evilupstream import EvilUpstream
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

TOOLS = {"github_get", "cache_stats", "fleet_status", "doctor"}


def mcp_env(http: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "P2P_CACHE_HTTP": http, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("GITHUB_TOKEN", None)
    return env


def session(env: dict[str, str], *args: str,
            body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run `p2pcache mcp` as an MCP client launches it, and `body` in an open session."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "p2pcache", "mcp", *args], env=env)

    async def run() -> Any:
        with anyio.fail_after(90):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as client:
                    await client.initialize()
                    return await body(client)

    return anyio.run(run)


def node_http(node: Any) -> str:
    return f"127.0.0.1:{node.http_port}"


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "text", None))


def test_tools_listed_with_schemas(nodes):
    node = nodes("solo")

    async def body(client: ClientSession) -> Any:
        return (await client.list_tools()).tools

    tools = {t.name: t for t in session(mcp_env(node_http(node)), "--no-start", body=body)}
    assert set(tools) == TOOLS
    schema = tools["github_get"].input_schema
    assert schema["required"] == ["path"]
    assert set(schema["properties"]) == {"path", "accept", "paginate", "max_pages"}
    assert schema["properties"]["max_pages"]["maximum"] == 30
    assert tools["github_get"].output_schema["properties"]["source"]
    for tool in tools.values():
        assert tool.description and tool.annotations.read_only_hint is True


def test_github_get_twice_reaches_github_once(nodes, fake):
    node = nodes("solo")

    async def body(client: ClientSession) -> Any:
        first = await client.call_tool("github_get", {"path": "repos/octo/hello"})
        second = await client.call_tool("github_get", {"path": "/repos/octo/hello"})
        return first, second

    first, second = session(mcp_env(node_http(node)), "--no-start", body=body)
    assert not first.is_error and not second.is_error, text(first) + text(second)
    one, two = first.structured_content, second.structured_content
    assert one["status"] == 200 and one["source"] == "miss" and one["pages"] == 1
    assert two["source"] == "hit" and two["sources"] == ["hit"]
    assert one["body"]["full_name"] == "octo/hello" == two["body"]["full_name"]
    assert one["headers"]["etag"] == two["headers"]["etag"]
    assert "x-ratelimit-remaining" in one["headers"]
    assert two["headers"]["x-p2p-cache"] == "hit"
    assert fake.stats()["by_path"]["/repos/octo/hello"] == 1


def test_github_get_pages_a_list_up_to_the_bound(nodes, fake):
    node = nodes("solo")

    async def body(client: ClientSession) -> Any:
        whole = await client.call_tool("github_get", {
            "path": "repos/octo/hello/issues", "paginate": True, "max_pages": 10})
        part = await client.call_tool("github_get", {
            "path": "repos/octo/hello/issues?per_page=10", "paginate": True, "max_pages": 2})
        too_many = await client.call_tool("github_get", {
            "path": "repos/octo/hello/issues", "paginate": True, "max_pages": 31})
        return whole, part, too_many

    whole, part, too_many = session(mcp_env(node_http(node)), "--no-start", body=body)
    assert not whole.is_error, text(whole)
    got = whole.structured_content
    assert got["pages"] == 4 and got["next_path"] is None
    assert [i["number"] for i in got["body"]] == list(range(95, 0, -1))
    assert got["sources"] == ["miss"] * 4
    assert 'rel="next"' in got["headers"]["link"]
    cut = part.structured_content
    assert cut["pages"] == 2 and len(cut["body"]) == 20
    # GitHub's Link names the list as /repositories/<id>/issues (the repo's own id).
    repo_id = httpx.get(fake.url + "/repos/octo/hello",
                        headers={"authorization": f"token {FLEET_TOKEN}"}).json()["id"]
    assert cut["next_path"].startswith(f"/repositories/{repo_id}/issues?") and "page=3" in \
        cut["next_path"]
    assert too_many.is_error  # max_pages is bounded by the schema
    assert all(v == 1 for p, v in fake.stats()["by_path"].items() if "/issues" in p)


def test_bad_paths_and_github_errors_are_tool_errors(nodes, fake):
    node = nodes("solo")
    bad = ["http://evil.example/x", "//evil.example/x", "https:x", "\\\\evil\\x",
           "/-/stats", "repos/a b", "repos/x#frag", ""]

    async def body(client: ClientSession) -> Any:
        results = [await client.call_tool("github_get", {"path": p}) for p in bad]
        results.append(await client.call_tool("github_get", {
            "path": "repos/octo/hello", "accept": "x\r\nAuthorization: token evil"}))
        missing = await client.call_tool("github_get", {"path": "repos/octo/missing-repo"})
        alive = await client.call_tool("github_get", {"path": "users/octocat"})
        return results, missing, alive

    results, missing, alive = session(mcp_env(node_http(node)), "--no-start", body=body)
    for path, result in zip(bad + ["accept"], results):
        assert result.is_error, (path, text(result))
    assert "not a relative GitHub API path" in text(results[0])
    assert "not a relative GitHub API path" in text(results[1])
    assert missing.is_error and "404" in text(missing) and "Not Found" in text(missing)
    assert not alive.is_error  # the server goes on after every error
    seen = fake.stats()["by_path"]
    assert not any("evil" in p for p in seen), seen
    assert FLEET_TOKEN not in text(missing)


def test_stats_fleet_and_doctor(nodes, fake):
    node = nodes("solo")

    async def body(client: ClientSession) -> Any:
        await client.call_tool("github_get", {"path": "repos/octo/hello/commits"})
        names = ("cache_stats", "fleet_status", "doctor")
        return [await client.call_tool(name, {}) for name in names]

    stats, fleet, doctor = session(mcp_env(node_http(node)), "--no-start", body=body)
    for result in (stats, fleet, doctor):
        assert not result.is_error, text(result)
    counters = stats.structured_content
    # The path, and the repository's own view (is it public?), which no client asked for.
    assert counters["misses"] == 1 and counters["upstream_requests"] == 2
    assert counters["rate_limits"]["core"]["remaining"] == 4998
    assert counters["peer_id"] == node.stats()["peer_id"]
    status = fleet.structured_content
    assert status["peer_id"] == counters["peer_id"]
    assert status["connected_peers"] == [] and "reachable" in status["reachability"]
    assert status["bootstrap_multiaddr"] == node.stats()["bootstrap_multiaddr"]
    report = doctor.structured_content
    titles = {c["title"]: c for c in report["checks"]}
    assert titles["node running"]["status"] == "ok"
    assert all(set(c) == {"status", "title", "detail", "fixes"} for c in report["checks"])
    assert report["problems"] == sum(c["status"] == "fail" for c in report["checks"])


def test_fleet_status_with_a_peer(nodes):
    server = nodes("server")
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)

    async def body(client: ClientSession) -> Any:
        return await client.call_tool("fleet_status", {})

    result = session(mcp_env(node_http(runner)), "--no-start", body=body)
    assert not result.is_error, text(result)
    peers = result.structured_content["connected_peers"]
    assert [p["peer_id"] for p in peers] == [server.stats()["peer_id"]]
    assert peers[0]["bootstrap"] is True


def test_no_node_and_no_start_is_a_tool_error(tmp_path):
    http = f"127.0.0.1:{free_port()}"

    async def body(client: ClientSession) -> Any:
        return await client.call_tool("cache_stats", {})

    result = session(mcp_env(http), "--no-start", body=body)
    assert result.is_error and "no node answers" in text(result)


def test_starts_its_own_node_and_stops_it(tmp_path, fake):
    """No node running: the session starts one (against the fake), uses it, and stops it."""
    http = f"127.0.0.1:{free_port()}"
    env = mcp_env(http, GH_TOKEN=FLEET_TOKEN, GITHUB_API_URL=fake.url,
                  IPFS_ACCELERATE_GITHUB_REPO=NAMESPACE, P2P_CACHE_LISTEN_HOST="127.0.0.1",
                  P2P_CACHE_PORT=str(free_port()), P2P_CACHE_DATA_DIR=str(tmp_path / "own"),
                  MCP_P2P_BOOTSTRAP_PEERS="")

    async def body(client: ClientSession) -> Any:
        return [await client.call_tool("github_get", {"path": "users/octocat"})
                for _ in range(2)]

    first, second = session(env, body=body)
    assert first.structured_content["source"] == "miss"
    assert second.structured_content["source"] == "hit"
    assert fake.stats()["by_path"]["/users/octocat"] == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{http}/-/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the node the session started still runs after it ended")


def test_stdout_carries_only_protocol_with_its_own_node(tmp_path, fake):
    """A raw client: every stdout line is a JSON-RPC message, even while a node starts."""
    http = f"127.0.0.1:{free_port()}"
    env = mcp_env(http, GH_TOKEN=FLEET_TOKEN, GITHUB_API_URL=fake.url,
                  P2P_CACHE_LISTEN_HOST="127.0.0.1", P2P_CACHE_PORT=str(free_port()),
                  P2P_CACHE_DATA_DIR=str(tmp_path / "own"), MCP_P2P_BOOTSTRAP_PEERS="")
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "p2pcache", "mcp"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests).encode())
        proc.stdin.flush()
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        out, err = proc.communicate(timeout=30)  # closing stdin ends the session
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, err.decode()
    out = b"".join(lines) + out
    messages = [json.loads(line) for line in out.decode().splitlines()]
    assert [m.get("id") for m in messages] == [1, 2]
    assert {t["name"] for t in messages[1]["result"]["tools"]} == TOOLS
    assert b"Peer ID:" in err  # the node's log went to stderr
    assert FLEET_TOKEN.encode() not in out + err


def test_sigterm_with_stdin_open_stops_session_and_its_node(tmp_path, fake):
    """Some clients end a server with SIGTERM while its stdin is still open."""
    http = f"127.0.0.1:{free_port()}"
    env = mcp_env(http, GH_TOKEN=FLEET_TOKEN, GITHUB_API_URL=fake.url,
                  P2P_CACHE_LISTEN_HOST="127.0.0.1", P2P_CACHE_PORT=str(free_port()),
                  P2P_CACHE_DATA_DIR=str(tmp_path / "own"), MCP_P2P_BOOTSTRAP_PEERS="")
    proc = subprocess.Popen([sys.executable, "-m", "p2pcache", "mcp"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{http}/-/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("the session never started its node")
        proc.terminate()
        assert proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{http}/-/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_streamable_http_transport_on_loopback(nodes, fake):
    """--listen: the same tools over the SDK's streamable HTTP transport; a browser page
    (Origin) and DNS rebinding (foreign Host) are refused, and the server goes on."""
    from mcp import Client

    node = nodes("solo")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p2pcache", "mcp", "--no-start",
                             "--listen", f"127.0.0.1:{port}"], env=mcp_env(node_http(node)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}
    accept = {"accept": "application/json, text/event-stream"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "no HTTP listener"
                time.sleep(0.2)
        for hostile, status in (({"origin": "http://evil.example"}, 403),
                                ({"origin": f"http://127.0.0.1:{port}"}, 403),
                                ({"host": f"evil.example:{port}"}, 421),
                                ({"host": "evil.example"}, 421)):
            assert httpx.post(url, json=init, headers={**accept, **hostile}).status_code == \
                status, hostile

        async def run() -> Any:
            with anyio.fail_after(60):
                async with Client(url) as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    calls = [await client.call_tool("github_get", {"path": "users/octocat"})
                             for _ in range(2)]
                    return names, calls

        names, calls = anyio.run(run)
        assert names == TOOLS
        assert [c.structured_content["source"] for c in calls] == ["miss", "hit"]
        assert fake.stats()["by_path"]["/users/octocat"] == 1
        assert proc.stdout is not None
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.stdout.read() == b""  # nothing but protocol, and over HTTP not even that


def test_listen_elsewhere_than_loopback_is_refused():
    for value in ("0.0.0.0:9181",):  # every other refused value: tests/unit/test_mcp_paths.py
        done = subprocess.run([sys.executable, "-m", "p2pcache", "mcp", "--listen", value],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (value, done.stderr)
        assert "--listen" in done.stderr and done.stdout == ""


# -- issue 21, findings 6 and 7: pages stay on the node, results stay small ------------------


def result_size(result: Any) -> int:
    """A tool result as the client received it: its text blocks and structured content."""
    size = sum(len(c.text.encode()) for c in result.content if getattr(c, "text", None))
    return size + len(json.dumps(result.structured_content or {}, ensure_ascii=False).encode())


def hostile_links(trap: Any, node_port: int) -> list[str]:
    """Next links a page can carry that name another host (the trap) than the node."""
    at = f"127.0.0.9:{trap.port}"
    return [f"<@{at}/x?page=2>", f"<//{at}/x?page=2>", f"<http://{at}/x?page=2>",
            f"<http://127.0.0.1:{node_port}@{at}/x?page=2>", f"<https://{at}/x?page=2>",
            "</-/stats>"]


def test_paging_never_leaves_the_node(nodes):
    """Before: a page whose Link said <@127.0.0.9:8999/...>; rel="next" made github_get
    connect to 127.0.0.9:8999 and return that host's body as page 2. Now a next link is
    followed only if it names a path on the node (as targets.py parses a request-target);
    otherwise paging stops with a note, and nothing is asked of that host. The upstream
    here is the attacker's own GitHub."""
    trap = EvilUpstream(host="127.0.0.9", body=b'[{"trap": true}]')
    evil = EvilUpstream(body=b'[{"page": 1}]')
    try:
        node = nodes("solo", upstream=evil.url)
        links = hostile_links(trap, node.http_port)

        async def body(client: ClientSession) -> Any:
            results = []
            for i, link in enumerate(links):
                evil.headers = [b"Content-Type: application/json; charset=utf-8",
                                b"Link: " + link.encode() + b'; rel="next"']
                results.append(await client.call_tool("github_get", {
                    "path": f"/gitignore/templates?v={i}", "paginate": True}))
            # A next link on the upstream's own base is the node's to follow (rewritten).
            evil.headers = [b"Content-Type: application/json; charset=utf-8",
                            f'Link: <{evil.url}/gitignore/templates?v=x&page=2>; rel="next"'
                            .encode()]
            results.append(await client.call_tool("github_get", {
                "path": "/gitignore/templates?v=ok", "paginate": True, "max_pages": 2}))
            return results

        results = session(mcp_env(node_http(node)), "--no-start", body=body)
        # `p2pcache api --paginate` follows Links the same way.
        evil.headers = [b"Content-Type: application/json; charset=utf-8",
                        b"Link: " + links[0].encode() + b'; rel="next"']
        cli = subprocess.run([sys.executable, "-m", "p2pcache", "api", "--paginate",
                              "/gitignore/templates?v=cli"], env=mcp_env(node_http(node)),
                             capture_output=True, text=True, timeout=60)
    finally:
        trap.close()
        evil.close()
    assert trap.seen == [], [s.request_line for s in trap.seen]
    assert cli.returncode == 1 and "paging stopped" in cli.stderr, cli.stderr
    assert json.loads(cli.stdout) == [{"page": 1}]
    for link, result in zip(links, results):
        assert not result.is_error, text(result)
        got = result.structured_content
        assert got["pages"] == 1 and got["body"] == [{"page": 1}], (link, got)
        assert got["next_path"] is None and "paging stopped" in got["note"], (link, got)
        assert "is not a path on" in got["note"], got["note"]
    followed = results[-1].structured_content
    assert followed["pages"] == 2 and followed["note"] is None, followed


def test_a_peers_hostile_link_is_not_followed(nodes):
    """The same from a key-holding peer: the runner's page 1 is a peer answer whose Link names
    another host; the runner's MCP session does not go there."""
    trap = EvilUpstream(host="127.0.0.9", body=b'[{"trap": true}]')
    evil = EvilUpstream(body=b'[{"page": 1}]',
                        headers=[b"Content-Type: application/json; charset=utf-8",
                                 f'Link: <@127.0.0.9:{trap.port}/x?page=2>; rel="next"'.encode()])
    try:
        server = nodes("server", upstream=evil.url)
        runner = nodes("runner", bootstrap=server.multiaddr())
        runner.wait_for_peers(1)

        async def body(client: ClientSession) -> Any:
            return await client.call_tool("github_get", {"path": "/gitignore/templates",
                                                         "paginate": True})

        result = session(mcp_env(node_http(runner)), "--no-start", body=body)
    finally:
        trap.close()
        evil.close()
    assert not result.is_error, text(result)
    got = result.structured_content
    assert got["sources"] == ["peer"] and got["pages"] == 1, got
    assert "paging stopped" in got["note"] and trap.seen == []


def mcp_server_rss(peak: list[int], stop: threading.Event) -> None:
    """The highest RSS of this test's `p2pcache mcp` child while it runs."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if "mcp" in child.cmdline():
                    peak[0] = max(peak[0], child.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.02)


def test_results_stay_within_4_mib(nodes):
    """Before: one 60 MiB page became a 125.8 MB tool result (the MCP server at 476 MB RSS).
    Now a result is at most 4 MiB, cut with a note saying what was left out and how to get
    the rest, and the server reads no more of a page than fits."""
    from p2pcache.mcp import MAX_RESULT_BYTES

    item = {"number": 0, "title": "x" * 900, "url": "https://api.github.com/x"}
    huge = ("[" + ",".join(json.dumps({**item, "number": i}) for i in range(66_000)) + "]")
    evil = EvilUpstream(body=huge.encode())
    assert len(evil.body) > 60 * 2**20
    try:
        node = nodes("solo", upstream=evil.url)

        async def body(client: ClientSession) -> Any:
            results = [await client.call_tool("github_get", {"path": "/gitignore/templates"})]
            # Many pages that each fit, but not all together: paging stops between pages.
            evil.body = ("[" + ",".join(json.dumps(item) for _ in range(600)) + "]").encode()
            evil.headers = [b"Content-Type: application/json; charset=utf-8",
                            f'Link: <{evil.url}/licenses?page=2>; rel="next"'.encode()]
            results.append(await client.call_tool("github_get", {
                "path": "/licenses", "paginate": True, "max_pages": 30}))
            # Text (a file's raw content): its beginning.
            evil.body = b"y" * (20 * 2**20)
            evil.headers = [b"Content-Type: text/plain; charset=utf-8"]
            results.append(await client.call_tool("github_get", {"path": "/emojis"}))
            return results

        peak, stop = [0], threading.Event()
        watcher = threading.Thread(target=mcp_server_rss, args=(peak, stop), daemon=True)
        watcher.start()
        try:
            listed, paged, raw = session(mcp_env(node_http(node)), "--no-start", body=body)
        finally:
            stop.set()
            watcher.join(5)
    finally:
        evil.close()
    print(f"MCP server peak RSS {peak[0] / 2**20:.0f} MiB; result sizes "
          f"{[round(result_size(r) / 2**20, 2) for r in (listed, paged, raw)]} MiB")
    for result in (listed, paged, raw):
        assert not result.is_error, text(result)[:500]
        assert result_size(result) <= MAX_RESULT_BYTES
        assert "cut to stay within 4 MiB" in result.structured_content["note"] \
            or "stopped before page" in result.structured_content["note"]
    first = listed.structured_content
    assert 0 < len(first["body"]) < 66_000 and first["body"][0]["number"] == 0
    assert "per_page" in first["note"] and f"{len(evil.body):,}" not in first["note"]
    pages = paged.structured_content
    assert 1 < pages["pages"] < 30 and len(pages["body"]) == 600 * pages["pages"]
    assert "stopped before page" in pages["note"] and "page=" in pages["next_path"]
    text_page = raw.structured_content
    assert isinstance(text_page["body"], str) and set(text_page["body"]) == {"y"}
    assert "narrower path" in text_page["note"]
    assert peak[0] < 300 * 2**20, f"the MCP server reached {peak[0] / 2**20:.0f} MiB"
