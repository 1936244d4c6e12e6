"""Never staler than the fleet knows (docs/consistency.md): a write through any node is read
back at once by its writer and within a second by every other node; a fill begun before the
write puts the old state back nowhere; a runner that was disconnected revalidates what it
held; the event floor (--not-before) compares GitHub's Date with GitHub's time. Real node
processes, the fake GitHub changing state on writes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from conftest import FLEET_TOKEN, require, wait_until
from test_fleet import start_fleet

AUTH = {"authorization": f"token {FLEET_TOKEN}"}
R = "/repos/octo/sticky"
COMMENTS = f"{R}/issues/7/comments"


def bodies(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["body"] for c in response.json()]


def comment(node, text: str, number: int = 7) -> httpx.Response:
    made = node.http.post(f"{R}/issues/{number}/comments", json={"body": text}, headers=AUTH)
    assert made.status_code == 201, made.text
    return made


def stored_bodies(node, path: str) -> list[bytes]:
    """What a node's store holds at `path` (read-only, beside the running node: WAL)."""
    db = sqlite3.connect(f"file:{node.data_dir / 'cache.sqlite3'}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in db.execute("SELECT body FROM entries WHERE path = ?",
                                                (path,))]
    finally:
        db.close()


def test_the_writer_reads_its_write_at_once_and_another_runner_within_a_second(nodes, fake):
    server, (writer, other) = start_fleet(nodes, runners=2)
    for node in (writer, other):  # both hold the conversation, the issue and its lists
        assert bodies(node.get(COMMENTS)) == []
        assert node.get(f"{R}/issues/7").json()["comments"] == 0
        assert node.get(f"{R}/pulls/7").json()["comments"] == 0
        assert node.get(f"{R}/issues?per_page=100").status_code == 200
    assert other.get(COMMENTS).headers["x-p2p-cache"] == "hit"

    comment(writer, "first")
    written = time.monotonic()
    # The writer, at once: every path the write changed.
    assert bodies(writer.get(COMMENTS)) == ["first"]
    assert writer.get(f"{R}/issues/7").json()["comments"] == 1
    assert writer.get(f"{R}/pulls/7").json()["comments"] == 1  # a pull request is an issue
    listed = {i["number"]: i for i in writer.get(f"{R}/issues?per_page=100").json()}
    assert listed[7]["comments"] == 1
    # Another runner, whose entries were fresh hits a moment ago: within a second.
    wait_until(lambda: bodies(other.get(COMMENTS)) == ["first"], timeout=5,
               what="the other runner sees the comment")
    seen_after = time.monotonic() - written
    assert seen_after < 1.0, f"the other runner saw the write after {seen_after:.2f} s"
    assert other.get(f"{R}/pulls/7").json()["comments"] == 1

    sent, got = writer.stats(), other.stats()
    assert sent["invalidations_sent"] >= 1
    srv = server.stats()
    assert srv["invalidations_received"] >= 1 and srv["invalidations_applied"] >= 1
    assert srv["invalidations_sent"] >= 1, "the server passed it on"
    assert got["invalidations_applied"] >= 1 and got["invalidations_refused"] == 0
    # Fleet-wide, GitHub was asked for the list once before the write and once after
    # (a revalidation: the write changed it), however many runners read it.
    reads = [e for e in fake.request_log() if e["path"] == COMMENTS and e["method"] == "GET"]
    assert [bool(e["if_none_match"]) for e in reads] == [False, True], reads


def test_a_fill_begun_before_the_write_puts_the_old_state_back_nowhere(nodes, fake):
    server, (writer, other) = start_fleet(nodes, runners=2)
    assert writer.get(f"{R}/issues/7").status_code == 200  # the repository's id is known
    # GitHub reads the list at once, and its answer takes 3 s to arrive: the write lands
    # while that answer (the old state) is on its way to the server and to `other`.
    fake.read_delay_ms[COMMENTS] = 3000
    answers: dict[str, list[str]] = {}

    def read(name: str, node) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({name: bodies(node.get(
            COMMENTS))}))
        thread.start()
        return thread

    slow = read("before", other)
    wait_until(lambda: fake.stats()["by_path"].get(COMMENTS), timeout=10,
               what="the slow fill reached GitHub")
    time.sleep(1.0)
    comment(writer, "written meanwhile")
    wait_until(lambda: other.stats()["invalidations_applied"] >= 1, timeout=5,
               what="the other runner heard of the write")
    # Asked after the write, on both runners, while the old fill is still in flight:
    # neither may share it (their own fills answer 3 s later).
    late = [read("other", other), read("writer", writer)]
    slow.join(30)
    assert answers["before"] == [], "asked before the write: the old state is its answer"
    # The old state has arrived, the new fills have not: nobody stored the old one.
    for node in (server, other):
        assert b"[]" not in stored_bodies(node, COMMENTS), f"{node.name} stored the old state"
    for thread in late:
        thread.join(30)
    assert answers["other"] == answers["writer"] == ["written meanwhile"]
    fake.read_delay_ms.clear()
    for node in (server, writer, other):
        assert [b for b in stored_bodies(node, COMMENTS) if b"written meanwhile" not in b] == []
        assert bodies(node.get(COMMENTS)) == ["written meanwhile"]


def test_the_writer_reads_its_write_even_when_the_server_must_ask_github_slowly(nodes, fake):
    """The invalidation goes on the stream the writer's next read takes, and is applied
    before that read is: the server's old entry, fresh for its clock, is never the answer."""
    server, (writer,) = start_fleet(nodes, runners=1)
    assert bodies(writer.get(COMMENTS)) == []
    fake.path_latency_ms[COMMENTS] = 300  # the server's revalidation is slow
    for n in range(3):
        comment(writer, f"c{n}")
        assert bodies(writer.get(COMMENTS)) == [f"c{i}" for i in range(n + 1)]
    assert server.stats()["invalidations_applied"] == 3


def _connection_to(node, port: int) -> tuple[str, int]:
    """The node's TCP connection to `port` (its local address), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{node.proc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{node.proc.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open(f"/proc/{node.proc.pid}/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                return "127.0.0.1", int(local.split(":")[1], 16)
    raise AssertionError(f"{node.name} has no connection to port {port}")


def test_a_runner_offline_during_a_write_revalidates_what_it_held(nodes, fake):
    """The runner's connection is cut (ss -K) while it is frozen, the write happens and is
    passed on to everyone connected, then the runner comes back and reconnects: what it
    held from before is revalidated through the fleet (free 304s) before use."""
    require(os.geteuid() == 0 and subprocess.run(["ss", "-V"], capture_output=True).returncode
            == 0, "cutting a connection takes root and ss (iproute2)")
    # No warm start: what the runner holds after it reconnects is only what it held before.
    server, (writer, offline) = start_fleet(nodes, runners=2,
                                            env={"P2P_CACHE_WARM_START": "0"})
    assert bodies(offline.get(COMMENTS)) == [] and offline.get(f"{R}/issues/7").json()
    assert writer.get(COMMENTS).status_code == 200
    unchanged = f"{R}/issues/6"
    assert offline.get(unchanged).status_code == 200

    offline.proc.send_signal(signal.SIGSTOP)
    try:
        host, port = _connection_to(offline, server.port)
        cut = subprocess.run(["ss", "-K", "src", f"{host}:{port}", "dst",
                              f"127.0.0.1:{server.port}"], capture_output=True, text=True)
        require(cut.returncode == 0, f"ss -K is not supported here: {cut.stderr.strip()}")
        wait_until(lambda: server.stats()["connected_peers"] == 1, timeout=10,
                   what="the server lost the frozen runner")
        comment(writer, "while you were away")
        wait_until(lambda: server.stats()["invalidations_applied"] >= 1, timeout=5)
    finally:
        offline.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: offline.log().count("✓ Connected to bootstrap peer") >= 2, timeout=30,
               what="the runner reconnected")
    assert offline.stats()["invalidations_applied"] == 0, "it heard nothing of the write"
    assert bodies(offline.get(COMMENTS)) == ["while you were away"]
    # What did not change costs GitHub nothing: the server's entry answers (a peer round
    # trip; with a warm start, often a hit from what it took as it reconnected).
    asked = fake.stats()["by_path"].get(unchanged, 0)
    again = offline.get(unchanged)
    assert again.status_code == 200 and again.headers["x-p2p-cache"] == "peer"
    assert offline.get(unchanged).headers["x-p2p-cache"] == "hit"
    assert fake.stats()["by_path"].get(unchanged, 0) == asked


def test_a_write_made_while_cut_off_from_the_server_reaches_it_on_reconnect(nodes, fake):
    """The writer's connection is cut while the server is frozen: the write goes to GitHub
    with no server to tell. As the writer reconnects, it delivers the drop the server
    missed, and the server passes it on: the other runner's fresh entry goes."""
    require(os.geteuid() == 0 and subprocess.run(["ss", "-V"], capture_output=True).returncode
            == 0, "cutting a connection takes root and ss (iproute2)")
    server, (writer, other) = start_fleet(nodes, runners=2)
    assert bodies(other.get(COMMENTS)) == [] and bodies(writer.get(COMMENTS)) == []
    server.proc.send_signal(signal.SIGSTOP)
    try:
        host, port = _connection_to(writer, server.port)
        cut = subprocess.run(["ss", "-K", "src", f"{host}:{port}", "dst",
                              f"127.0.0.1:{server.port}"], capture_output=True, text=True)
        require(cut.returncode == 0, f"ss -K is not supported here: {cut.stderr.strip()}")
        wait_until(lambda: writer.stats()["connected_peers"] == 0, timeout=10,
                   what="the writer lost the server")
        comment(writer, "while cut off")
        assert bodies(writer.get(COMMENTS)) == ["while cut off"]  # from GitHub, directly
    finally:
        server.proc.send_signal(signal.SIGCONT)
    writer.wait_for_log("✓ Connected to bootstrap peer", count=2, timeout=45)
    wait_until(lambda: server.stats()["invalidations_applied"] >= 1, timeout=10,
               what="the writer delivered the drop as it reconnected")
    wait_until(lambda: bodies(other.get(COMMENTS)) == ["while cut off"], timeout=5,
               what="the other runner sees the write")
    assert other.stats()["invalidations_applied"] == 1


def test_a_write_while_the_server_is_down_reaches_it_when_it_is_back(nodes, fake, tmp_path):
    """The writer could not tell anyone: it tells the server as it reconnects, before its
    warm start, and the server (whose store may hold the old state from before its
    restart) drops it."""
    server, (writer, other) = start_fleet(nodes, runners=2)
    assert bodies(server.get(COMMENTS)) == []  # the server holds the old state
    for node in (writer, other):
        assert bodies(node.get(COMMENTS)) == []
    server.stop()
    wait_until(lambda: writer.stats()["connected_peers"] == 0, timeout=10)
    comment(writer, "server was down")
    assert bodies(writer.get(COMMENTS)) == ["server was down"]
    server.start()
    for runner in (writer, other):  # (py-libp2p's redial can take a while: as test_fleet)
        runner.wait_for_log("✓ Connected to bootstrap peer", count=2, timeout=45)
    wait_until(lambda: server.stats()["invalidations_applied"] >= 1, timeout=10,
               what="the writer delivered what the server missed")
    for node in (server, other, writer):
        assert bodies(node.get(COMMENTS)) == ["server was down"], node.name


# -- the event floor -----------------------------------------------------------------------

def _date(response: httpx.Response) -> float:
    return parsedate_to_datetime(response.headers["date"]).timestamp()


def test_the_floor_compares_githubs_date_not_the_local_clock(nodes, fake):
    """GitHub's clock runs 1000 s behind ours. An entry GitHub vouched for before the floor
    (on its clock) is revalidated, though our clock took it in 1000 s after the floor; one
    GitHub vouched for after the floor is served as it is. Through the fleet: the server
    revalidates once, for the runner."""
    fake.clock_offset_s = -1000
    server = nodes("server", env={"P2P_CACHE_REFRESH_AHEAD": "0"})
    vouched = _date(server.get(f"{R}/issues/7"))  # GitHub's Date of that answer
    assert abs(vouched - (time.time() - 1000)) < 10
    event = vouched + 1  # an event just after GitHub vouched, on GitHub's clock
    wait_until(lambda: time.time() + fake.clock_offset_s >= event + 1.5, timeout=10)
    before = len(fake.request_log())

    after_event = nodes("after", bootstrap=server.multiaddr(), args=["--not-before", str(event)])
    after_event.wait_for_peers(1)
    answer = after_event.get(f"{R}/issues/7")
    assert answer.status_code == 200 and answer.headers["x-p2p-cache"] == "peer"
    # The issue, and the repository whose visibility says the client may read it (issue
    # 19): each revalidated once, for free, by the server.
    log = fake.request_log()[before:]
    assert sorted((e["path"], bool(e["if_none_match"]), e["status"]) for e in log) == \
        [(R, True, 304), (f"{R}/issues/7", True, 304)], log
    assert server.stats()["floor_revalidations"] == 2
    assert _date(answer) > event
    assert after_event.get(f"{R}/issues/7").headers["x-p2p-cache"] == "hit"

    # An event before GitHub vouched: the fleet's entry answers, GitHub is not asked.
    quiet = len(fake.request_log())
    before_event = nodes("before", bootstrap=server.multiaddr(),
                         args=["--not-before", str(vouched - 200)])
    before_event.wait_for_peers(1)
    assert before_event.get(f"{R}/issues/7").headers["x-p2p-cache"] in ("peer", "hit")
    assert len(fake.request_log()) == quiet
    assert before_event.stats()["floor_revalidations"] == 0
    assert server.stats()["floor_revalidations"] == 2


def test_actions_start_sets_the_floor_from_the_event(nodes, fake, tmp_path):
    server = nodes("server", env={"P2P_CACHE_REFRESH_AHEAD": "0"})
    vouched = _date(server.get(f"{R}/issues/7"))
    wait_until(lambda: time.time() >= vouched + 2.5, timeout=10)  # the event comes after
    event = tmp_path / "event.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(vouched + 1))
    event.write_text('{"action": "labeled", "pull_request": {"updated_at": "%s"}}' % stamp)
    runner = nodes("runner", start=False, bootstrap=server.multiaddr())
    env = {**runner.env, "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
           "RUNNER_TEMP": str(tmp_path / "runner-temp")}
    done = subprocess.run(
        [str(Path(os.sys.executable)), "-m", "p2pcache", "actions", "start",
         "--port", str(runner.port), "--http", f"127.0.0.1:{runner.http_port}",
         "--wait", "20", "--data-dir", str(runner.data_dir)],
        env=env, capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"✓ Event floor {stamp} (pull_request.updated_at)" in done.stdout
        assert runner.get(f"{R}/issues/7").status_code == 200
        assert server.stats()["floor_revalidations"] == 2  # the issue, and its repository
    finally:
        subprocess.run([os.sys.executable, "-m", "p2pcache", "actions", "summary",
                        "--port", str(runner.port), "--http", f"127.0.0.1:{runner.http_port}"],
                       env=env, capture_output=True, timeout=60)


# -- hostile invalidations -------------------------------------------------------------------

def _invalidate(sealer, request_id: int, trees: list[str], message_id: str | None = None,
                origin: str = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5",
                paths: list[str] | None = None) -> bytes:
    from p2pcache.protocol import REQUEST, Message, seal

    meta = {"op": "invalidate", "key": "invalidate", "origin": origin,
            "id": message_id or os.urandom(16).hex(), "trees": trees, "paths": paths or []}
    return seal(sealer, REQUEST, request_id, Message(meta)).encode()


def _by_request(received: bytes) -> list[dict]:
    """The answers' meta, in the order of the requests (answers arrive in any order)."""
    from test_peer_protocol import FLEET_KEY

    from p2pcache.crypto import Sealer
    from p2pcache.protocol import FrameDecoder, ReplayGuard, open_frame

    sealer, guard = Sealer(FLEET_KEY), ReplayGuard()
    frames = sorted(FrameDecoder().feed(received), key=lambda f: f.request_id)
    return [open_frame(sealer, f, guard, "invalidate").meta for f in frames]


def test_a_peer_without_the_secret_drops_nothing(nodes, fake):
    import trio
    from test_peer_protocol import FLEET_KEY, answers, exchange

    from p2pcache.crypto import Sealer, derive_key

    server = nodes("server")
    assert server.get(f"{R}/issues/7").status_code == 200
    asked = fake.stats()["requests"]
    stranger = Sealer(derive_key("not-the-fleet-secret", "p2pcache-tests/fleet"))
    received, reset = trio.run(exchange, server.multiaddr(),
                               [_invalidate(stranger, 1, [R])], 2.0)
    assert received == b"" and reset
    stats = server.stats()
    assert stats["auth_failures"] >= 1 and stats["invalidations_received"] == 0
    assert server.get(f"{R}/issues/7").headers["x-p2p-cache"] == "hit"
    assert fake.stats()["requests"] == asked

    # The same message under the fleet's key is applied: the test above can fail.
    received, _ = trio.run(exchange, server.multiaddr(),
                           [_invalidate(Sealer(FLEET_KEY), 1, [R])], 2.0)
    assert answers(received, ["invalidate"])[0].meta == {"applied": True}
    assert server.get(f"{R}/issues/7").headers["x-p2p-cache"] == "revalidated"


def test_a_peer_with_the_secret_cannot_drop_more_than_the_bounds(nodes, fake):
    """One stream, 400 messages of 64 paths each (25,600 paths): the node takes at most its
    per-peer burst of paths (1,000) plus what refills meanwhile, refuses the rest, and never
    a path outside one repository; a legitimate runner's write still goes through."""
    import trio
    from test_peer_protocol import FLEET_KEY, exchange

    from p2pcache.crypto import Sealer
    from p2pcache.invalidation import MAX_PATHS, PEER_PATHS_BURST, PEER_PATHS_PER_S

    server = nodes("server")
    writer = nodes("writer", bootstrap=server.multiaddr())
    other = nodes("other", bootstrap=server.multiaddr())
    other.wait_for_peers(1)
    writer.wait_for_peers(1)
    for path in ("/users/octocat", f"{R}/issues/7", COMMENTS):
        assert server.get(path).status_code == 200
    assert bodies(other.get(COMMENTS)) == []
    sealer = Sealer(FLEET_KEY)
    flood = [_invalidate(sealer, i + 1, [f"/repos/flood/r{i}/x{k}" for k in range(MAX_PATHS)])
             for i in range(400)]
    everything = [_invalidate(sealer, 401, ["/"]), _invalidate(sealer, 402, ["/repos"]),
                  _invalidate(sealer, 403, ["/users/octocat"]),
                  _invalidate(sealer, 404, [f"{R}/x"] * (MAX_PATHS + 1))]
    began = time.monotonic()
    received, _ = trio.run(exchange, server.multiaddr(), flood + everything, 8.0)
    took = time.monotonic() - began
    metas = _by_request(received)
    applied = sum(m.get("applied") is True for m in metas)
    assert len(metas) == 404, f"{len(metas)} answers"
    bound = (PEER_PATHS_BURST + PEER_PATHS_PER_S * took) / MAX_PATHS
    print(f"a key holder's flood: {applied} of 400 messages of {MAX_PATHS} paths applied in "
          f"{took:.1f} s (bound {bound:.1f}), the rest refused")
    assert 1 <= applied <= bound, (applied, bound)
    assert all(m["error"].startswith("bad request") for m in metas[400:]), metas[400:]
    stats = server.stats()
    assert stats["invalidations_refused"] >= 404 - applied
    # Nothing outside one repository went: these are hits still.
    assert server.get("/users/octocat").headers["x-p2p-cache"] == "hit"
    assert server.get(f"{R}/issues/7").headers["x-p2p-cache"] == "hit"
    server.wait_for_log("went over a resource limit")
    assert server.log().count("went over a resource limit") == 1, "logged once per peer"
    # The fleet's own writes are not crowded out by one peer's flood.
    comment(writer, "after the flood")
    wait_until(lambda: bodies(other.get(COMMENTS)) == ["after the flood"], timeout=5)


# -- the sticky-comment pattern, with real clients ------------------------------------------

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
MARKER = "<!-- p2pcache-sticky -->"


def _gh(socket: str, tmp: Path):
    """Run `gh api` through a node's Unix socket (gh's http_unix_socket), as a job would."""
    import shutil

    require(shutil.which("gh") is not None, "gh is not installed (tests/conformance/setup.sh)")
    config = tmp / f"gh-{Path(socket).stem}"
    config.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GH_", "GITHUB_"))}
    env.update({"GH_CONFIG_DIR": str(config), "GH_TOKEN": FLEET_TOKEN, "NO_COLOR": "1",
                "GH_NO_UPDATE_NOTIFIER": "1", "GH_PROMPT_DISABLED": "1"})
    subprocess.run(["gh", "config", "set", "http_unix_socket", socket], env=env, check=True,
                   capture_output=True, timeout=60)

    def api(*args: str) -> str:
        done = subprocess.run(["gh", "api", *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"gh api {args}: {done.stderr}"
        return done.stdout.strip()
    return api


def sticky_gh(socket: str, tmp: Path, body: str) -> str:
    """The pattern as a shell step writes it with gh: find ours, update it or create it."""
    api = _gh(socket, tmp)
    me = api("user", "--jq", ".login")
    found = api("--paginate", "repos/octo/sticky/issues/7/comments?per_page=100", "--jq",
                f'.[] | select(.user.login == "{me}" and (.body | contains("{MARKER}"))) | .id')
    text = f"{MARKER}\n{body}"
    if found:
        found = found.split()[0]
        api("-X", "PATCH", f"repos/octo/sticky/issues/comments/{found}", "-f", f"body={text}")
        return "updated"
    api("-X", "POST", "repos/octo/sticky/issues/7/comments", "-f", f"body={text}")
    return "created"


def sticky_octokit(node, body: str) -> str:
    import json
    import shutil

    require(shutil.which("node") is not None
            and (CONFORMANCE / "node_modules/@octokit/rest").is_dir(),
            "node and @octokit/rest are not installed (tests/conformance/setup.sh)")
    config = {"base": node.url, "token": FLEET_TOKEN, "owner": "octo", "repo": "sticky",
              "issue": 7, "marker": MARKER, "body": body}
    done = subprocess.run(["node", str(CONFORMANCE / "sticky.mjs"), json.dumps(config)],
                          capture_output=True, text=True, timeout=60, cwd=CONFORMANCE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["action"]


def _sticky_fleet(nodes, tmp_path):
    server = nodes("server")
    addr = server.multiaddr()
    runners = [nodes(name, start=False, bootstrap=addr,
                     env={"P2P_CACHE_UNIX_SOCKET": str(tmp_path / f"{name}.sock")})
               for name in ("r1", "r2")]
    for runner in runners:
        runner.start()
        runner.wait_for_peers(1)
        assert bodies(runner.get(COMMENTS + "?per_page=100")) == []  # both hold the list
    return runners


def test_sticky_comments_with_gh_through_different_runners(nodes, fake, tmp_path):
    r1, r2 = _sticky_fleet(nodes, tmp_path)
    sockets = [str(tmp_path / f"{r.name}.sock") for r in (r1, r2)]
    assert sticky_gh(sockets[0], tmp_path / "1", "run 1") == "created"
    assert sticky_gh(sockets[1], tmp_path / "2", "run 2") == "updated"
    assert sticky_gh(sockets[0], tmp_path / "3", "run 3") == "updated"
    (ours,) = fake.comments("octo/sticky", 7)
    assert ours["body"] == f"{MARKER}\nrun 3"


def test_sticky_comments_with_octokit_through_different_runners(nodes, fake, tmp_path):
    r1, r2 = _sticky_fleet(nodes, tmp_path)
    assert sticky_octokit(r1, "run 1") == "created"
    assert sticky_octokit(r2, "run 2") == "updated"
    assert sticky_octokit(r1, "run 3") == "updated"
    (ours,) = fake.comments("octo/sticky", 7)
    assert ours["body"] == f"{MARKER}\nrun 3"


def test_a_webhook_delivery_on_the_server_reaches_its_runners(nodes, fake):
    """A server with --webhook drops what a verified delivery says changed fleet-wide: its
    runner's fresh entry goes too, and its next read is GitHub's new state."""
    from test_webhook_deliveries import COMMENTS as HOOKED, ROOT as HOOKED_ROOT
    from test_webhook_deliveries import comment_payload, webhook_node

    server, hook = webhook_node(nodes)
    runner = nodes("runner", bootstrap=server.multiaddr())
    runner.wait_for_peers(1)
    repo_id = server.get(HOOKED_ROOT).json()["id"]
    before = bodies(runner.get(HOOKED))
    assert runner.get(HOOKED).headers["x-p2p-cache"] == "hit"
    made = httpx.post(fake.url + HOOKED, json={"body": "made on github.com"}, headers=AUTH)
    assert made.status_code == 201
    assert bodies(runner.get(HOOKED)) == before, "nobody told the fleet yet"
    assert hook.deliver("issue_comment", comment_payload(repo_id)).status_code == 200
    wait_until(lambda: runner.stats()["invalidations_applied"] >= 1, timeout=10,
               what="the runner applied the server's drop")
    assert bodies(runner.get(HOOKED)) == before + ["made on github.com"]
