"""GitHub Actions glue: start a runner node for the job, and report its counters at the end.

The composite action (action.yml) only installs the package and calls these commands, so
the logic is here, tested with a simulated Actions environment (temporary GITHUB_ENV,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

PID_FILE = "p2pcache-node.pid"
LOG_FILE = "p2pcache-node.log"
INTERCEPT_FILE = "intercept.json"
# What a step started under sudo still needs of the job's environment (sudo drops GITHUB_*).
SUDO_KEEP = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "RUNNER_TEMP",
             "GITHUB_API_URL", "GITHUB_REPOSITORY", "GH_TOKEN", "GITHUB_TOKEN",
             "MCP_P2P_BOOTSTRAP_PEERS", "IPFS_ACCELERATE_GITHUB_REPO", "PYTHONPATH",
             "HOME", "XDG_RUNTIME_DIR")  # the last two: the same state dir without RUNNER_TEMP


# -- pure formatting --------------------------------------------------------------------


def env_file_lines(values: Mapping[str, str]) -> str:
    """GITHUB_ENV / GITHUB_OUTPUT syntax; multi-line values use a random heredoc marker."""
    out = []
    for name, value in values.items():
        if "\n" in value:
            marker = f"ghadelimiter_{uuid.uuid4().hex}"
            out.append(f"{name}<<{marker}\n{value}\n{marker}\n")
        else:
            out.append(f"{name}={value}\n")
    return "".join(out)


def summary_markdown(stats: Mapping[str, Any], port: int) -> str:
    """The job summary: did the runner share the fleet's cache, and what did it save?"""
    connected = stats.get("connected_peers", 0)
    rows = [
        ("Hit rate", f"{stats.get('hit_rate', 0):.1%}"),
        ("API calls saved", stats.get("api_calls_saved", 0)),
        ("Peer hits", stats.get("peer_hits", 0)),
        ("Local hits", stats.get("local_hits", 0)),
        ("Entries taken at warm start", stats.get("warm_start_entries", 0)),
        ("Coalesced", stats.get("coalesced", 0)),
        ("Misses (asked GitHub)", stats.get("misses", 0)),
        ("Calls with the job's own credentials", _own_credentials(stats)),
        ("Requests to GitHub", stats.get("upstream_requests", 0)),
        ("Free 304 revalidations", stats.get("not_modified", 0)),
        ("Rate limit left", stats.get("rate_limit_remaining", "unknown")),
        ("Connected peers", connected),
    ]
    lines = ["### P2P cache (runner node on port %d)" % port, "",
             "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if not stats.get("bootstrap_peers"):
        lines += ["", "⚠️ No bootstrap peers configured: set the `MCP_P2P_BOOTSTRAP_PEERS` "
                  "secret so runners share the server node's cache."]
    elif not connected:
        lines += ["", "⚠️ The runner never connected to the server node: run "
                  "`p2pcache doctor` on the server, and check that TCP port of the "
                  "multiaddr is open."]
    return "\n".join(lines) + "\n"


def _own_credentials(stats: Mapping[str, Any]) -> str:
    """How many reads GitHub answered with the caller's own credentials, and why (they are
    neither peer hits nor calls saved: docs/security.md §8.1)."""
    total = stats.get("client_credential_requests", 0)
    reasons = [(stats.get(name, 0), label) for name, label in (
        ("identity_requests", "the answer depends on who asks"),
        ("credential_checks", "token checks, free"),
        ("authorization_checks", "private repository access checks"),
        ("fleet_blind_requests", "a repository the fleet cannot read"),
        ("refused_requests", "GitHub refused the caller"))]
    said = "; ".join(f"{label}: {n}" for n, label in reasons if n)
    return f"{total} ({said})" if said else str(total)


# -- I/O ---------------------------------------------------------------------------------


class ActionsError(Exception):
    """The step cannot go on; one line for the user."""


def append(path_var: str, text: str, env: Mapping[str, str]) -> None:
    path = env.get(path_var)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


@dataclass(frozen=True)
class JobUser:
    """Whose job this is: under sudo the invoking user, else whoever runs us. The node and
    every file it uses belong to this user, so the node never runs as root."""
    uid: int
    gid: int
    home: str

    @classmethod
    def of(cls, env: Mapping[str, str]) -> JobUser:
        import pwd

        uid, gid = os.geteuid(), os.getegid()
        if uid == 0 and env.get("SUDO_UID", "").isdigit() and env.get("SUDO_GID", "").isdigit():
            uid, gid = int(env["SUDO_UID"]), int(env["SUDO_GID"])
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            home = env.get("HOME", "/")
        return cls(uid, gid, home)

    @property
    def is_other(self) -> bool:
        return self.uid != os.geteuid()


def state_dir(env: Mapping[str, str], user: JobUser | None = None, create: bool = True) -> Path:
    """The step's private directory: RUNNER_TEMP/p2pcache (never a shared /tmp), mode 0700,
    owned by the job's user. One that is a symlink, someone else's, or open to others is
    refused: it holds the node's key and the PID that `summary` signals."""
    import platformdirs

    user = user or JobUser.of(env)
    base = env.get("RUNNER_TEMP") or env.get("XDG_RUNTIME_DIR") \
        or platformdirs.user_state_dir("p2pcache")
    path = Path(base) / "p2pcache"
    if create:
        Path(base).mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
            if user.is_other:
                os.lchown(path, user.uid, user.gid)
        except FileExistsError:
            pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != user.uid or st.st_mode & 0o077:
        raise ActionsError(f"{path} is not a private directory of uid {user.uid} (a symlink, "
                           "someone else's, or open to others): refusing to use it")
    return path


def new_file(path: Path, data: bytes, user: JobUser, mode: int = 0o600) -> int:
    """A fresh file for the job's user: whatever was at PATH (a planted symlink or hard
    link) is unlinked, never written through. Returns an open descriptor when data is None."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    if user.is_other:
        os.fchown(fd, user.uid, user.gid)
    if data:
        os.write(fd, data)
    return fd


def write_new(path: Path, data: bytes, user: JobUser, mode: int = 0o600) -> None:
    os.close(new_file(path, data, user, mode))


# -- start -------------------------------------------------------------------------------

# serve's flags that `actions start` passes on, as the variables the node reads
FLAG_ENV = {"upstream": "GITHUB_API_URL", "data_dir": "P2P_CACHE_DATA_DIR",
            "listen_host": "P2P_CACHE_LISTEN_HOST", "announce": "P2P_CACHE_ANNOUNCE",
            "ttl": "P2P_CACHE_TTL", "peer_timeout": "P2P_CACHE_PEER_TIMEOUT",
            "max_bytes": "P2P_CACHE_MAX_BYTES"}


def start(port: int, http: str, wait: float, env: Mapping[str, str] | None = None,
          transparent: bool = False, intercept_host: str | None = None,
          flags: Mapping[str, object] | None = None, argv: Sequence[str] = ()) -> int:
    """Start a runner node in the background and wait (bounded) until it is useful; with
    transparent, also make every call of the job to https://HOST go through it."""
    from . import config, intercept

    env = dict(os.environ if env is None else env)
    host = intercept.check_host(intercept_host or intercept.DEFAULT_HOST) if transparent \
        else ""
    if "P2P_CACHE_NOT_BEFORE" not in env:
        # As the job's user, before any sudo: the payload is the job's file, and the floor
        # then travels in P2P_CACHE_NOT_BEFORE, which sudo keeps.
        set_event_floor(env)
    if transparent and os.geteuid() != 0:
        if _sudo_works():
            return _as_root(["actions", *argv], env)
        print("⚠️  Transparent mode needs root (passwordless sudo); falling back to base-URL "
              "mode: send API calls to $P2P_CACHE_API_URL", flush=True)
        transparent = False
    started = time.monotonic()
    print("🚀 Initializing P2P cache for runner communication...", flush=True)
    user = JobUser.of(env)
    try:
        state = state_dir(env, user)
    except ActionsError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 1
    for name, var in FLAG_ENV.items():
        value = (flags or {}).get(name)
        if value not in (None, ""):
            env[var] = str(value)
    if (flags or {}).get("bootstrap"):
        env["MCP_P2P_BOOTSTRAP_PEERS"] = ",".join(map(str, flags["bootstrap"]))  # type: ignore
    env.setdefault("P2P_CACHE_DATA_DIR", str(state / "data"))
    env["P2P_CACHE_PORT"] = str(port)
    env["P2P_CACHE_HTTP"] = http
    if user.is_other:
        env["HOME"] = user.home  # the node runs as the job's user, not as root
    # A job's node lives for one job: it is a runner even when no server is configured.
    env.setdefault("P2P_CACHE_REFRESH_AHEAD", "0")
    settings = config.load({}, env, need_data_dir=False)
    data_dir = Path(env["P2P_CACHE_DATA_DIR"])
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
        if user.is_other:
            os.lchown(data_dir, user.uid, user.gid)
    for rejected in settings.bootstrap_rejected:
        print(f"⚠️  Ignoring bootstrap peer {rejected}")
    if settings.bootstrap:
        print("✓ P2P bootstrap peers configured: "
              + ", ".join(p.multiaddr for p in settings.bootstrap), flush=True)
    else:
        print("⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS secret)")
        print("   Runners will not connect to MCP server for P2P cache sharing", flush=True)

    plan: Interception | None = None
    if transparent:
        try:
            plan = Interception.prepare(host, settings.upstream, state, user, env)
        except (intercept.InterceptError, OSError) as exc:
            print(f"⚠️  Transparent mode is off: {exc}; falling back to base-URL mode",
                  flush=True)
            plan = None

    log_path = state / LOG_FILE
    log = new_file(log_path, b"", user)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2pcache", "serve"], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            pass_fds=plan.pass_fds if plan else (), **_drop_to(user))
    finally:
        os.close(log)
        if plan:
            plan.close_socket()
    node_start = intercept.start_time(proc.pid)
    write_new(state / PID_FILE, f"{proc.pid} {node_start}".encode(), user)
    problems = (intercept.InterceptError, OSError, subprocess.SubprocessError)
    if plan:
        try:  # while the node starts: the trust store takes seconds
            plan.trust(proc.pid, node_start)
        except problems as exc:
            plan = plan.abandon(exc)

    client_ready = _wait_ready(proc, settings, wait, log_path)
    if client_ready is None:
        if plan:
            plan.undo()
        return 1
    stats, connected = client_ready
    exported = {"P2P_CACHE_API_URL": settings.http_base, "P2P_CACHE_HTTP": http}
    if plan:
        try:
            exported.update(plan.redirect())
        except problems as exc:
            plan = plan.abandon(exc)
    outputs = {"api-url": settings.http_base, "peer-id": str(stats.get("peer_id")),
               "connected": "true" if connected else "false", "log": str(log_path),
               "transparent": "true" if plan else "false"}
    append("GITHUB_OUTPUT", env_file_lines(outputs), env)
    append("GITHUB_ENV", env_file_lines(exported), env)
    if plan:
        print(f"✓ Transparent mode: https://{host} goes through the node for the rest of the "
              f"job (ready in {time.monotonic() - started:.1f} s; trust store "
              f"{plan.trust_store_s:.1f} s)", flush=True)
    print(f"✓ P2P cache initialized (local API {settings.http_base}, "
          f"peer ID {stats.get('peer_id')})", flush=True)
    return 0


def set_event_floor(env: dict[str, str], now: float | None = None) -> None:
    """P2P_CACHE_NOT_BEFORE from the event that triggered the job (floor.py): the job never
    reads a state GitHub vouched for before it. Outside Actions (no GITHUB_EVENT_NAME),
    nothing; a payload that cannot be read costs the floor its precision, never the job."""
    from . import floor

    name = env.get("GITHUB_EVENT_NAME", "")
    if not name:
        return
    started = time.time() if now is None else now
    payload: object = None
    path = env.get("GITHUB_EVENT_PATH", "")
    if path and name not in floor.NO_FLOOR:
        try:
            payload = floor.read_event(path)
        except floor.EventError as exc:
            print(f"⚠️  Could not read the event payload GITHUB_EVENT_PATH ({exc}); the "
                  "event floor is the job's start", flush=True)
    when, source = floor.event_time(name, payload, started)
    if when is None:
        env["P2P_CACHE_NOT_BEFORE"] = ""  # decided: none (sudo keeps it, root won't redo it)
        print(f"Event floor: none ({source})", flush=True)
        return
    env["P2P_CACHE_NOT_BEFORE"] = f"{when:.3f}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    print(f"✓ Event floor {stamp} ({source}): nothing GitHub vouched for earlier is served "
          "without revalidation", flush=True)


START_TIMEOUT = 60.0  # seconds a starting node may take to answer its local API


def _wait_ready(proc: subprocess.Popen, settings: Any, wait: float,
                log_path: Path) -> tuple[dict[str, Any], bool] | None:
    from .client import NodeClient, NodeUnavailable

    client = NodeClient(settings.http_base)
    # `wait` bounds the wait for a peer; a node that starts slowly on a busy runner gets
    # longer to answer at all, since failing then would cost the job its cache for nothing.
    started = time.monotonic()
    connect_by, answer_by = started + wait, started + max(wait, START_TIMEOUT)
    stats: dict[str, Any] | None = None
    while True:
        if proc.poll() is not None:
            print(f"✗ The P2P cache node exited ({proc.returncode}); its log:\n"
                  + log_path.read_text(errors="replace"), file=sys.stderr)
            return None
        try:
            stats = client.stats()
        except (NodeUnavailable, Exception):
            stats = None
        now = time.monotonic()
        if stats and (not settings.bootstrap or stats.get("connected_peers")
                      or now >= connect_by):
            break
        if stats is None and now >= answer_by:
            print(f"✗ The P2P cache node did not answer within {answer_by - started:.0f} s; "
                  f"see {log_path}", file=sys.stderr)
            return None
        time.sleep(0.1)
    connected = bool(stats.get("connected_peers"))
    if settings.bootstrap:
        print("✓ Connected to bootstrap peer" if connected else
              f"⚠️  Not connected to a bootstrap peer after {wait:.0f} s: the node keeps "
              "trying, and meanwhile asks GitHub itself (see `p2pcache doctor`)")
    if connected:
        stats = _wait_warm(client, stats)
    return stats, connected


WARM_WAIT = 5.0  # seconds `actions start` waits for the warm start once connected


def _wait_warm(client: Any, stats: dict[str, Any]) -> dict[str, Any]:
    """The fleet's hot entries usually land within a second of connecting: wait for them
    (bounded), so the job's first calls are already local hits."""
    deadline = time.monotonic() + WARM_WAIT
    while stats.get("warm_start") == "waiting" and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            stats = client.stats()
        except Exception:
            break
    if stats.get("warm_starts"):
        taken = stats.get("warm_start_entries", 0)
        print(f"✓ Warm start: took {taken} fresh {'entry' if taken == 1 else 'entries'} of "
              "the fleet's answers", flush=True)
    return stats


def _drop_to(user: JobUser) -> dict[str, Any]:
    """Popen arguments that run the node as the job's user when we are root for it."""
    if not user.is_other:
        return {}
    import pwd

    try:
        groups = os.getgrouplist(pwd.getpwuid(user.uid).pw_name, user.gid)
    except KeyError:
        groups = [user.gid]
    return {"user": user.uid, "group": user.gid, "extra_groups": groups}


def _sudo_works() -> bool:
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _as_root(args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run this command again through `sudo -n`, keeping what the step needs of the job's
    environment (sudo drops GITHUB_* and secrets by default)."""
    keep = [name for name in env if name in SUDO_KEEP or name.startswith("P2P_CACHE_")]
    command = ["sudo", "-n", f"--preserve-env={','.join(keep)}", sys.executable, "-m",
               "p2pcache", *args]
    return subprocess.run(command, env=dict(env)).returncode


class Interception:
    """Transparent mode for one start: the plan made before the node starts (addresses,
    credentials, the bound socket), then install() once the node answers."""

    def __init__(self, host: str, addresses: list[str], state: Path, user: JobUser,
                 sock: socket.socket, ca_pem: bytes) -> None:
        from . import intercept

        self.host, self.addresses, self.state, self.user = host, addresses, state, user
        self.sock, self.ca_pem = sock, ca_pem
        self.system = intercept.System()
        self.tag = f"p2pcache-{uuid.uuid4().hex[:12]}"
        self.trust_store_s = 0.0

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.sock.fileno(),)

    def close_socket(self) -> None:
        self.sock.close()  # the node holds its own copy now

    @classmethod
    def prepare(cls, host: str, upstream: str, state: Path, user: JobUser,
                env: dict[str, str]) -> Interception:
        """Resolve HOST while it still means GitHub, make the credentials, bind 443; and
        tell the node (through env) to serve HTTPS and to reach HOST at those addresses."""
        from urllib.parse import urlsplit

        from . import intercept

        addresses: list[str] = []
        if urlsplit(upstream).hostname == host:
            try:
                infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise intercept.InterceptError(f"cannot resolve {host} ({exc})") from None
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
            if any(a == intercept.LISTEN_ADDRESS for a in addresses):
                raise intercept.InterceptError(f"{host} already resolves to this node (a "
                                               "previous start was not torn down?)")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((intercept.LISTEN_ADDRESS, 443))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise intercept.InterceptError(
                f"cannot listen on {intercept.LISTEN_ADDRESS}:443 ({exc.strerror})") from None
        sock.set_inheritable(True)
        creds = intercept.make_credentials(host)
        cert, key = state / "tls-leaf.crt", state / "tls-leaf.key"
        write_new(cert, creds.leaf_pem, user, 0o644)
        write_new(key, creds.leaf_key_pem, user, 0o600)  # the node reads it, nobody else
        env.update({"P2P_CACHE_HTTPS": f"fd:{sock.fileno()}", "P2P_CACHE_TLS_CERT": str(cert),
                    "P2P_CACHE_TLS_KEY": str(key)})
        if addresses:
            env["P2P_CACHE_UPSTREAM_ADDRESSES"] = ",".join(addresses)
        return cls(host, addresses, state, user, sock, creds.ca_pem)

    def check_tls(self, timeout: float = 10.0) -> None:
        """The node's listener answers for HOST with the leaf our CA signed."""
        from . import intercept

        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((intercept.LISTEN_ADDRESS, 443), timeout=2) as raw:
                    with context.wrap_socket(raw, server_hostname=self.host):
                        return
            except (OSError, ssl.SSLError) as exc:
                if time.monotonic() > deadline:
                    raise intercept.InterceptError(f"the node's HTTPS listener does not "
                                                   f"answer ({exc})") from None
                time.sleep(0.1)

    def trust(self, node_pid: int, node_start: str) -> None:
        """The record, the guardian (watching the node from now on), the trust store."""
        from . import intercept

        intercept.records_dir(self.system)
        self.record = intercept.Record(
            tag=self.tag, host=self.host, address=intercept.LISTEN_ADDRESS,
            hosts_before=intercept.read_hosts(self.system.hosts), hosts_after_sha256="",
            ca_file=str(self.system.ca_dir / f"{self.tag}.crt"),
            node_pid=node_pid, node_start=node_start)
        self.record.save(self.system)
        self.record.guardian_pid, self.record.guardian_start = intercept.start_guardian(
            self.tag, self.system)
        write_new(self.state / INTERCEPT_FILE, json.dumps({
            "host": self.host, "tag": self.tag, "ca_file": self.record.ca_file,
            "guardian_pid": self.record.guardian_pid,
            "guardian_start": self.record.guardian_start}).encode(), self.user, 0o644)
        self.trust_store_s = intercept.trust(self.record, self.ca_pem, self.system)

    def redirect(self) -> dict[str, str]:
        """Once the node answers HTTPS: HOST to the node. Returns what GITHUB_ENV gets."""
        from . import intercept

        self.check_tls()
        intercept.redirect(self.record, self.system)
        bundle = str(self.system.bundle)
        # Node and pip's requests do not read the system store; the full bundle (not our CA
        # alone) keeps every other host working, and once torn down it no longer holds it.
        return {"NODE_EXTRA_CA_CERTS": bundle, "REQUESTS_CA_BUNDLE": bundle,
                "SSL_CERT_FILE": bundle, "P2P_CACHE_TRANSPARENT": self.host}

    def abandon(self, exc: BaseException) -> None:  # the plan, gone
        print(f"⚠️  Transparent mode is off: {exc}; falling back to base-URL mode",
              flush=True)
        self.undo()
        return None

    def undo(self) -> None:
        from . import intercept

        try:
            intercept.teardown(self.system)
        except (intercept.InterceptError, OSError) as exc:
            print(f"⚠️  Could not undo transparent mode: {exc}", file=sys.stderr)


# -- summary -----------------------------------------------------------------------------


def summary(port: int, http: str, stop: bool, env: Mapping[str, str] | None = None) -> int:
    """Write the counters to the job summary, then stop the node and undo transparent mode."""
    from .client import NodeClient, NodeUnavailable
    from .config import load

    env = dict(os.environ if env is None else env)
    env["P2P_CACHE_HTTP"] = http
    settings = load({}, env, need_data_dir=False)
    try:
        stats = NodeClient(settings.http_base).stats()
    except NodeUnavailable as exc:
        print(f"⚠️  No P2P cache node to report on: {exc}")
        append("GITHUB_STEP_SUMMARY", "### P2P cache\n\n⚠️ The runner node was not running "
               "at the end of the job.\n", env)
        stats = None
    if stats is not None:
        text = summary_markdown(stats, port)
        append("GITHUB_STEP_SUMMARY", text, env)
        print(text)
    if stop:
        try:
            stop_node(env)
        except ActionsError as exc:
            print(f"⚠️  {exc}", file=sys.stderr)
        return undo_interception(env)
    return 0


def stop_node(env: Mapping[str, str]) -> None:
    """SIGTERM the node this step started, and only it: the PID file names a PID and its
    start time, and the process must still be that one, running p2pcache."""
    from .intercept import is_ours, wait_gone

    state = state_dir(env, create=False)
    pid_file = state / PID_FILE
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return
    if is_ours(pid, started):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        wait_gone(pid, started, 10)  # a clean stop: UPnP unmapped, store closed
    pid_file.unlink(missing_ok=True)


def undo_interception(env: Mapping[str, str]) -> int:
    """After the node stopped, the guardian takes the redirection away; wait for it, and do
    it ourselves (as root, through sudo if need be) if it does not."""
    from . import intercept

    try:
        state = state_dir(env, create=False)
        info = json.loads((state / INTERCEPT_FILE).read_text())
    except (OSError, ValueError, ActionsError):
        info = None
    if os.geteuid() == 0:
        for line in intercept.teardown(intercept.System()):
            print(f"✓ {line}")
    elif info is not None:
        tag = str(info.get("tag", ""))
        guardian = int(info.get("guardian_pid", 0)), str(info.get("guardian_start"))
        if intercept.is_ours(*guardian):  # it exits once the trust store is rebuilt
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and intercept.is_ours(*guardian):
                time.sleep(0.1)
        if _redirected(tag):
            if not _sudo_works():
                print("✗ Transparent mode is still on and sudo does not work: run "
                      "`sudo python3 -m p2pcache.intercept teardown /run/p2pcache-intercept`",
                      file=sys.stderr)
                return 1
            subprocess.run(["sudo", "-n", sys.executable, "-m", "p2pcache.intercept",
                            "teardown", str(intercept.System().records)], check=False)
    if info is not None:
        (state / INTERCEPT_FILE).unlink(missing_ok=True)
        for name in ("tls-leaf.key", "tls-leaf.crt"):
            (state / name).unlink(missing_ok=True)
        if _redirected(str(info.get("tag", ""))):
            print("✗ Transparent mode could not be undone", file=sys.stderr)
            return 1
        print(f"✓ Transparent mode undone: {info.get('host')} resolves as before, the "
              "per-job CA is out of the trust store")
    return 0


def _redirected(tag: str) -> bool:
    from . import intercept

    system = intercept.System()
    try:
        hosts = system.hosts.read_text()
    except OSError:
        hosts = ""
    return bool(tag) and (tag in hosts or (system.ca_dir / f"{tag}.crt").exists())
