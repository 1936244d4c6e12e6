"""GitHub Actions glue: start a runner node for the job, and report its counters at the end.

The composite action (action.yml) only installs the package and calls these commands, so
the logic is here, tested with a simulated Actions environment (temporary GITHUB_ENV,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files).

Transparent mode has two sides. The job's side runs as the job's user, makes its own state
directory, and reaches root's side through sudo (boundary.Route) with a request on stdin.
Root's side (`_start_for_job`, `_summary_for_job`) takes nothing else from the job
(boundary.py says what it takes), writes the job's files only as the job's user
(jobfiles.py), and keeps its own state in root's directories (intercept.py).
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
from typing import Any, Callable, Mapping

from .boundary import (CONF_PATH, JOB_FILES, BoundaryError, JobRequest, RootConfig,
                       Route, refused_args)
from .jobfiles import JobFileError, JobUser, Wanted, open_files, write_all

PID_FILE = "p2pcache-node.pid"
LOG_FILE = "p2pcache-node.log"
INTERCEPT_FILE = "intercept.json"


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
    connected = stats.get("fleet_servers", stats.get("connected_peers", 0))
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
        ("GraphQL queries shared (points saved)", _graphql(stats)),
        ("Rate limit left", stats.get("rate_limit_remaining", "unknown")),
        ("Connected servers (same fleet key)", connected),
    ]
    lines = ["### P2P cache (runner node on port %d)" % port, "",
             "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if not stats.get("bootstrap_peers"):
        lines += ["", "⚠️ No bootstrap peers configured: set the `MCP_P2P_BOOTSTRAP_PEERS` "
                  "secret so runners share the server node's cache."]
    elif not connected and stats.get("unsealed_servers"):
        lines += ["", "⚠️ The runner connected to the server node, but the server does not "
                  "answer its fleet key: the two hold different `P2P_CACHE_SECRET`s (else "
                  "tokens) or namespaces, so nothing was shared. Set the same secret and "
                  "namespace on both (`p2pcache doctor` compares key fingerprints)."]
    elif not connected:
        lines += ["", "⚠️ The runner never connected to the server node: run "
                  "`p2pcache doctor` on the server, and check that TCP port of the "
                  "multiaddr is open."]
    return "\n".join(lines) + "\n"


def _graphql(stats: Mapping[str, Any]) -> str:
    """GraphQL answers the fleet gave without this node asking GitHub, and the points that
    spared the budget (estimated as GitHub documents: docs/graphql.md)."""
    return f"{stats.get('graphql_hits', 0)} ({stats.get('graphql_points_saved', 0)})"


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
    """The job's side appending to its own file (as itself: nothing is at stake)."""
    path = env.get(path_var)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def state_dir(env: Mapping[str, str], user: JobUser | None = None, create: bool = True) -> Path:
    """The job's private directory: RUNNER_TEMP/p2pcache (never a shared /tmp), mode 0700,
    made by the job's side as the job's user (root's side never makes or walks it but
    through jobfiles). One that is a symlink, someone else's, or open to others is refused:
    it holds the node's data and the PID the job's summary signals."""
    import platformdirs

    user = user or JobUser.of(env)
    base = env.get("RUNNER_TEMP") or env.get("XDG_RUNTIME_DIR") \
        or platformdirs.user_state_dir("p2pcache")
    path = Path(base) / "p2pcache"
    if create:
        Path(base).mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
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


@dataclass
class Job:
    """Whose job a start serves, where its state is, and which of its files it writes."""
    user: JobUser
    state: Path
    files: Mapping[str, str]  # GITHUB_ENV / GITHUB_OUTPUT -> path


class JobFiles:
    """The job's files one start writes, opened up front as the job's user (jobfiles.py):
    after that root only writes to descriptors, whatever the job renames."""

    def __init__(self, job: Job, transparent: bool) -> None:
        names = [LOG_FILE, PID_FILE] + ([INTERCEPT_FILE] if transparent else [])
        wanted = [Wanted(str(job.state / name), "replace",
                         0o644 if name == INTERCEPT_FILE else 0o600) for name in names]
        exported = [name for name in JOB_FILES if job.files.get(name)]
        wanted += [Wanted(job.files[name], "append") for name in exported]
        fds = open_files(job.user, wanted)
        self.log_path = job.state / LOG_FILE
        self.log, self.pid = fds[0], fds[1]
        self.intercept = fds[2] if transparent else None
        self.exported = dict(zip(exported, fds[len(names):]))

    def write(self, fd: int | None, text: str) -> None:
        if fd is not None:
            write_all(fd, text.encode())

    def close(self) -> None:
        for fd in (self.log, self.pid, self.intercept, *self.exported.values()):
            if fd is not None:
                os.close(fd)


class NodeLog:
    """The node's log, read back through the descriptor it was opened with (the path is
    the job's: it may name another file by now)."""

    TAIL = 64 * 1024

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def read_text(self, errors: str = "replace") -> str:
        size = os.fstat(self.fd).st_size
        return os.pread(self.fd, min(size, self.TAIL), max(0, size - self.TAIL)).decode(
            "utf-8", errors)

    def __str__(self) -> str:
        return str(self.path)


# -- start -------------------------------------------------------------------------------

# serve's flags that `actions start` passes on, as the variables the node reads
FLAG_ENV = {"upstream": "GITHUB_API_URL", "data_dir": "P2P_CACHE_DATA_DIR",
            "listen_host": "P2P_CACHE_LISTEN_HOST", "announce": "P2P_CACHE_ANNOUNCE",
            "ttl": "P2P_CACHE_TTL", "peer_timeout": "P2P_CACHE_PEER_TIMEOUT",
            "max_bytes": "P2P_CACHE_MAX_BYTES"}
NO_ROOT = ("⚠️  Transparent mode needs root (passwordless sudo, or the sudoers rule of "
           "README's \"Transparent mode without giving jobs root\"); falling back to base-URL "
           "mode: send API calls to $P2P_CACHE_API_URL")
REPAIRED = "✓ Repaired what an earlier job left behind (a reboot, or a lost /run): "


def start(port: int, http: str, wait: float, env: Mapping[str, str] | None = None,
          transparent: bool = False, intercept_host: str | None = None,
          flags: Mapping[str, object] | None = None) -> int:
    """Start a runner node in the background and wait (bounded) until it is useful; with
    transparent, also make every call of the job to https://HOST go through it."""
    env = dict(os.environ if env is None else env)
    flags = dict(flags or {})
    if os.geteuid() == 0 and JobUser.of(env).is_other:
        return _start_for_job(port, http, wait, transparent, intercept_host, flags)
    if "P2P_CACHE_NOT_BEFORE" not in env:
        # As the job's user: the payload is the job's file; root's side gets the floor in
        # the request (boundary.NODE_ENV), never the file.
        set_event_floor(env)
    if transparent and os.geteuid() != 0:
        return _start_through_root(port, http, wait, env, flags, intercept_host)
    from . import intercept

    user = JobUser.of(env)
    try:
        state = state_dir(env, user)
    except ActionsError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 1
    for name, var in FLAG_ENV.items():
        if flags.get(name) not in (None, ""):
            env[var] = str(flags[name])
    if flags.get("bootstrap"):
        env["MCP_P2P_BOOTSTRAP_PEERS"] = ",".join(map(str, flags["bootstrap"]))  # type: ignore
    host = intercept.check_host(intercept_host or intercept.DEFAULT_HOST) if transparent \
        else None
    job = Job(user, state, {name: env[name] for name in JOB_FILES if env.get(name)})
    return _launch(port, http, wait, env, job, host)


def _start_through_root(port: int, http: str, wait: float, env: dict[str, str],
                        flags: Mapping[str, object], intercept_host: str | None) -> int:
    """The job's side of a transparent start: its own state directory, then root's side
    through sudo with the request (boundary.JobRequest) on stdin."""
    args = ["actions", "start", "--transparent", "--port", str(port), "--http", http,
            "--wait", f"{wait:g}"]
    if intercept_host:
        args += ["--intercept", intercept_host]
    route = Route.find(args)
    if route is None:
        print(NO_ROOT, flush=True)
        return start(port, http, wait, env, False, None, flags)
    try:
        state = state_dir(env)
    except ActionsError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 1
    extra = {var: str(flags[name]) for name, var in FLAG_ENV.items()
             if name != "upstream" and flags.get(name) not in (None, "")}
    if flags.get("bootstrap"):
        extra["MCP_P2P_BOOTSTRAP_PEERS"] = ",".join(map(str, flags["bootstrap"]))  # type: ignore
    if flags.get("upstream"):
        print(f"⚠️  --upstream is root's choice in transparent mode ({CONF_PATH}): ignored",
              flush=True)
    request = JobRequest.of(env, state, extra)
    return route.run(args, request.encode())


def _start_for_job(port: int, http: str, wait: float, transparent: bool,
                   intercept_host: str | None, flags: Mapping[str, object]) -> int:
    """Root's side of a transparent start, for the job's user: it takes from the job only
    what boundary.py lists; the rest is root's configuration."""
    from . import intercept

    os.chdir("/")  # nothing relative to the job's working directory, ever
    user = JobUser.of(os.environ)
    refused = refused_args(flags)
    if refused or not transparent:
        print(f"✗ root's side of `actions start` takes --transparent, --port, --http and "
              f"--wait only (given: {', '.join(refused) or 'no --transparent'}); run it as "
              "the job's user, it asks sudo itself", file=sys.stderr)
        return 2
    try:
        conf = RootConfig.load()
        request = JobRequest.read(sys.stdin.fileno())
    except BoundaryError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 2
    if request.dropped:
        print(f"⚠️  Not taken from the job (not in root's allowlist): "
              f"{', '.join(request.dropped)}", flush=True)
    env = {"PATH": intercept.ROOT_PATH, "LANG": "C.UTF-8", "HOME": user.home,
           "USER": user.name, "LOGNAME": user.name, **request.env,
           "GITHUB_API_URL": conf.upstream}
    if conf.upstream_ca_bundle:
        env["P2P_CACHE_UPSTREAM_CA_BUNDLE"] = conf.upstream_ca_bundle
    refusal = None
    if intercept_host and intercept.check_host(intercept_host) != conf.intercept:
        refusal = f"this runner captures only {conf.intercept} ({CONF_PATH}), not " \
                  f"{intercept.check_host(intercept_host)}"
    job = Job(user, Path(request.state), request.files)
    return _launch(port, http, wait, env, job, None if refusal else conf.intercept, refusal)


# What root reads of the node's environment for itself: where to ask the node, and the
# bootstrap list it prints. Nothing it would act on.
ROOT_READS = ("P2P_CACHE_HTTP", "P2P_CACHE_PORT", "MCP_P2P_BOOTSTRAP_PEERS", "GITHUB_API_URL")


def _launch(port: int, http: str, wait: float, env: dict[str, str], job: Job,
            host: str | None, refusal: str | None = None) -> int:
    from . import config, intercept

    started = time.monotonic()
    print("🚀 Initializing P2P cache for runner communication...", flush=True)
    env.setdefault("P2P_CACHE_DATA_DIR", str(job.state / "data"))  # the node makes it
    env["P2P_CACHE_PORT"] = str(port)
    env["P2P_CACHE_HTTP"] = http
    # A job's node lives for one job: it is a runner even when no server is configured.
    env.setdefault("P2P_CACHE_REFRESH_AHEAD", "0")
    # The job's clients present the job's token: GitHub confirms it as the node starts.
    env.setdefault("P2P_CACHE_CONFIRM_TOKEN", "1")
    for_other = job.user.is_other
    settings = config.load({}, {k: env[k] for k in ROOT_READS if k in env} if for_other
                           else env, need_data_dir=False)
    for rejected in settings.bootstrap_rejected:
        print(f"⚠️  Ignoring bootstrap peer {rejected}")
    if settings.bootstrap:
        print("✓ P2P bootstrap peers configured: "
              + ", ".join(p.multiaddr for p in settings.bootstrap), flush=True)
    else:
        print("⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS secret)")
        print("   Runners will not connect to MCP server for P2P cache sharing", flush=True)

    plan: Interception | None = None
    if refusal:
        print(f"⚠️  Transparent mode is off: {refusal}; falling back to base-URL mode",
              flush=True)
    elif host:
        try:
            for line in intercept.recover(intercept.System()):
                print(REPAIRED + line, flush=True)
            plan = Interception.prepare(host, settings.upstream, job.user, env)
        except (intercept.InterceptError, OSError) as exc:
            print(f"⚠️  Transparent mode is off: {exc}; falling back to base-URL mode",
                  flush=True)
            plan = None
    try:
        files = JobFiles(job, plan is not None)
    except JobFileError as exc:
        print(f"✗ {exc}: refusing to write it", file=sys.stderr)
        if plan:
            plan.close_passed()
        return 1
    try:
        return _run_node(env, job, files, settings, plan, wait, started, http)
    finally:
        files.close()


def _run_node(env: dict[str, str], job: Job, files: JobFiles, settings: Any,
              plan: Interception | None, wait: float, started: float, http: str) -> int:
    from . import intercept

    isolated = ["-I"] if job.user.is_other else []
    try:
        proc = subprocess.Popen(
            [sys.executable, *isolated, "-m", "p2pcache", "serve"], env=env, stdout=files.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            pass_fds=plan.pass_fds if plan else (), cwd="/" if job.user.is_other else None,
            **_drop_to(job.user))
    finally:
        if plan:
            plan.close_passed()
    node = (proc.pid, intercept.start_time(proc.pid), os.path.realpath(sys.executable))
    files.write(files.pid, f"{node[0]} {node[1]}")
    problems = (intercept.InterceptError, OSError, subprocess.SubprocessError)
    if plan:
        try:  # while the node starts: the trust store takes seconds
            files.write(files.intercept, json.dumps(plan.trust(*node, http)))
        except problems as exc:
            plan = plan.abandon(exc)

    client_ready = _wait_ready(proc, settings, wait, NodeLog(files.log, files.log_path))
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
               "connected": "true" if connected else "false", "log": str(files.log_path),
               "transparent": "true" if plan else "false"}
    files.write(files.exported.get("GITHUB_OUTPUT"), env_file_lines(outputs))
    files.write(files.exported.get("GITHUB_ENV"), env_file_lines(exported))
    if plan:
        print(f"✓ Transparent mode: https://{plan.host} goes through the node for the rest of "
              f"the job (ready in {time.monotonic() - started:.1f} s; trust store "
              f"{plan.trust_store_s:.1f} s)", flush=True)
    print(f"✓ P2P cache initialized (local API {settings.http_base}, "
          f"peer ID {stats.get('peer_id')})", flush=True)
    return 0


def set_event_floor(env: dict[str, str], now: float | None = None) -> None:
    """P2P_CACHE_NOT_BEFORE from the event that triggered the job (floor.py): the job never
    reads a state GitHub vouched for before it. Outside Actions (no GITHUB_EVENT_NAME),
    nothing; a payload that cannot be read costs the floor its precision, never the job."""
    from . import floor, jobfiles

    name = env.get("GITHUB_EVENT_NAME", "")
    if not name:
        return
    started = time.time() if now is None else now
    payload: object = None
    path = env.get("GITHUB_EVENT_PATH", "")
    if path and name not in floor.NO_FLOOR:
        try:
            payload = floor.parse_event(jobfiles.read(
                JobUser.of(env), os.path.abspath(path), floor.MAX_EVENT_BYTES))
        except (jobfiles.JobFileError, floor.EventError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"⚠️  Could not read the event payload GITHUB_EVENT_PATH ({why}); the "
                  "event floor is the job's start", flush=True)
    when, source = floor.event_time(name, payload, started)
    if when is None:
        env["P2P_CACHE_NOT_BEFORE"] = ""  # decided: none
        print(f"Event floor: none ({source})", flush=True)
        return
    env["P2P_CACHE_NOT_BEFORE"] = f"{when:.3f}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    print(f"✓ Event floor {stamp} ({source}): nothing GitHub vouched for earlier is served "
          "without revalidation", flush=True)


START_TIMEOUT = 60.0  # seconds a starting node may take to answer its local API
READY_BUDGET = 5.0  # seconds after which the start is ready whatever the fleet does
# The node dials its servers before its API answers; on a loaded runner that answer can come
# after `wait`: the dial then still gets this long (within READY_BUDGET).
CONNECT_GRACE = 1.0


def _wait_ready(proc: subprocess.Popen, settings: Any, wait: float,
                log_path: Path) -> tuple[dict[str, Any], bool] | None:
    """Until the node answers, then (bounded) until it is useful. A job never waits on the
    fleet: `wait` seconds for the server's connection, and once connected its warm start
    until READY_BUDGET (or `wait`, if longer) has passed. A server that is down, blackholed
    or silent costs the start `wait` seconds (up to READY_BUDGET if the node answered late)
    and the job's calls nothing: the node asks GitHub itself until it connects, then uses
    the fleet (and takes its warm start then)."""
    from .client import NodeClient, NodeUnavailable

    client = NodeClient(settings.http_base)
    # A node that starts slowly on a busy runner gets longer to answer at all, since
    # failing then would cost the job its cache for nothing.
    started = time.monotonic()
    connect_by, answer_by = started + wait, started + max(wait, START_TIMEOUT)
    stats: dict[str, Any] | None = None
    answered = False
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
        if stats and not answered:
            # never past READY_BUDGET for it: a start with the server down stays within it
            answered = True
            connect_by = max(connect_by, min(now + CONNECT_GRACE, started + READY_BUDGET))
        if stats and (not settings.bootstrap or _fleet_connected(stats)
                      or now >= connect_by):
            break
        if stats is None and now >= answer_by:
            print(f"✗ The P2P cache node did not answer within {answer_by - started:.0f} s; "
                  f"see {log_path}", file=sys.stderr)
            return None
        time.sleep(0.05)
    connected = _fleet_connected(stats)
    if settings.bootstrap and not connected and stats.get("unsealed_servers"):
        print("⚠️  Connected to the bootstrap peer, but it does not answer our fleet key: it "
              "holds another P2P_CACHE_SECRET (else token) or namespace "
              "(IPFS_ACCELERATE_GITHUB_REPO). The job's calls go to GitHub directly; set the "
              "same secret and namespace as on the server (see `p2pcache doctor`)", flush=True)
    elif settings.bootstrap:
        print("✓ Connected to bootstrap peer" if connected else
              f"⚠️  Not connected to a bootstrap peer after {wait:g} s: the job's calls go to "
              "GitHub directly for now; the node keeps trying in the background and uses the "
              "fleet once the server answers (see `p2pcache doctor`)", flush=True)
    if connected:
        stats = _wait_warm(client, stats, started + max(READY_BUDGET, wait))
    return stats, connected


def _fleet_connected(stats: Mapping[str, Any]) -> bool:
    """Connected to a server that answers our fleet key (a connection alone is not that)."""
    return bool(stats.get("fleet_servers", stats.get("connected_peers")))


def _wait_warm(client: Any, stats: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The fleet's hot entries usually land within a second of connecting: wait for them
    until `deadline` (time.monotonic()), so the job's first calls are already local hits.
    Later, they land while the job runs."""
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
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups or
                                                                      (user.gid,))}


class Interception:
    """Transparent mode for one start: the plan made before the node starts (addresses,
    credentials, the bound socket), then trust() and redirect() while and once it runs."""

    def __init__(self, host: str, addresses: list[str], user: JobUser, sock: socket.socket,
                 ca_pem: bytes, credential_fds: tuple[int, int]) -> None:
        from . import intercept

        self.host, self.addresses, self.user = host, addresses, user
        self.sock, self.ca_pem, self.credential_fds = sock, ca_pem, credential_fds
        self.system = intercept.System()
        self.tag = f"p2pcache-{uuid.uuid4().hex[:12]}"
        self.trust_store_s = 0.0

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.sock.fileno(), *self.credential_fds)

    def close_passed(self) -> None:
        """The node holds its own copies now (or never will)."""
        self.sock.close()
        for fd in self.credential_fds:
            os.close(fd)
        self.credential_fds = ()

    @classmethod
    def prepare(cls, host: str, upstream: str, user: JobUser,
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
        # The leaf and its key reach the node in memory (sealed memfds it inherits): no
        # file of them exists, in the job's directories or anywhere else.
        cert, key = _sealed("p2pcache-leaf", creds.leaf_pem), _sealed("p2pcache-leaf-key",
                                                                       creds.leaf_key_pem)
        env.update({"P2P_CACHE_HTTPS": f"fd:{sock.fileno()}",
                    "P2P_CACHE_TLS_CERT": f"/dev/fd/{cert}", "P2P_CACHE_TLS_KEY": f"/dev/fd/{key}"})
        if addresses:
            env["P2P_CACHE_UPSTREAM_ADDRESSES"] = ",".join(addresses)
        return cls(host, addresses, user, sock, creds.ca_pem, (cert, key))

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

    def trust(self, node_pid: int, node_start: str, node_exe: str,
              http: str) -> dict[str, object]:
        """The record (root's: the node's identity for summary and the guardian), the
        guardian, the trust store. Returns what the job's state may know of it."""
        from . import intercept

        self.record = intercept.Record(
            tag=self.tag, host=self.host, address=intercept.LISTEN_ADDRESS,
            hosts_before=intercept.read_hosts(self.system.hosts), hosts_after_sha256="",
            ca_file=str(self.system.ca_dir / f"{self.tag}.crt"),
            node_pid=node_pid, node_start=node_start, node_exe=node_exe, uid=self.user.uid,
            http=http)
        self.record.save(self.system)
        self.record.guardian_pid, self.record.guardian_start = intercept.start_guardian(
            self.tag, self.system)
        self.trust_store_s = intercept.trust(self.record, self.ca_pem, self.system)
        return {"host": self.host, "tag": self.tag, "ca_file": self.record.ca_file,
                "guardian_pid": self.record.guardian_pid,
                "guardian_start": self.record.guardian_start}

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
            intercept.teardown(self.system, lambda record: record.tag == self.tag)
        except (intercept.InterceptError, OSError) as exc:
            print(f"⚠️  Could not undo transparent mode: {exc}", file=sys.stderr)


def _sealed(name: str, data: bytes) -> int:
    """An inheritable in-memory file holding DATA, sealed against change."""
    import fcntl

    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    write_all(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    os.set_inheritable(fd, True)
    return fd


# -- summary -----------------------------------------------------------------------------


def summary(port: int, http: str, stop: bool, env: Mapping[str, str] | None = None,
            flags: Mapping[str, object] | None = None) -> int:
    """Write the counters to the job summary, then stop the node and undo transparent mode."""
    from .client import NodeClient, NodeUnavailable
    from .config import load

    env = dict(os.environ if env is None else env)
    if os.geteuid() == 0 and JobUser.of(env).is_other:
        return _summary_for_job(http, dict(flags or {}))
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
        return undo_interception(env, port, http)
    return 0


def stop_node(env: Mapping[str, str]) -> None:
    """SIGTERM the node this step started, and only it, as the job's user: the PID file
    names a PID and its start time, and the process must still be that one, running
    p2pcache. (Root never signals what this file says: see stop_recorded_nodes.)"""
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


def undo_interception(env: Mapping[str, str], port: int = 9000,
                      http: str = "127.0.0.1:9180") -> int:
    """Stop the node and take transparent mode away: root's side does it (through sudo,
    with nothing of the job's but the user sudo names) when transparent mode was on or
    something of ours is still in /etc; else the job's side stops its own node."""
    from . import intercept

    try:
        state = state_dir(env, create=False)
        info = json.loads((state / INTERCEPT_FILE).read_text())
    except (OSError, ValueError, ActionsError):
        state, info = None, None
    if os.geteuid() == 0:  # root for itself: its own state, its own records
        try:
            stop_node(env)
        except ActionsError as exc:
            print(f"⚠️  {exc}", file=sys.stderr)
        system = intercept.System()
        for line in intercept.recover(system):
            print(REPAIRED + line)
        for line in intercept.teardown(system):
            print(f"✓ {line}")
    elif info is not None or intercept.leftovers_visible(intercept.System()):
        args = ["actions", "summary", "--port", str(port), "--http", http]
        route = Route.find(args)
        if route is not None:
            route.run(args)
        else:
            try:
                stop_node(env)
            except ActionsError as exc:
                print(f"⚠️  {exc}", file=sys.stderr)
            if info is not None:
                _wait_for_guardian(info)
            if info is None or _redirected(str(info.get("tag", ""))):
                print("✗ Transparent mode is still on and sudo does not work: as root, run "
                      "`python3 -I -m p2pcache.intercept teardown` with p2pcache installed",
                      file=sys.stderr)
                return 1
    else:
        try:
            stop_node(env)
        except ActionsError as exc:
            print(f"⚠️  {exc}", file=sys.stderr)
    if info is not None and state is not None:
        (state / INTERCEPT_FILE).unlink(missing_ok=True)
        if _redirected(str(info.get("tag", ""))):
            print("✗ Transparent mode could not be undone", file=sys.stderr)
            return 1
        print(f"✓ Transparent mode undone: {info.get('host')} resolves as before, the "
              "per-job CA is out of the trust store")
    return 0


def _wait_for_guardian(info: Mapping[str, object]) -> None:
    from . import intercept

    guardian = int(info.get("guardian_pid", 0) or 0), str(info.get("guardian_start"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and intercept.is_ours(*guardian):
        time.sleep(0.1)  # it exits once the trust store is rebuilt


def _summary_for_job(http: str, flags: Mapping[str, object]) -> int:
    """Root's side of summary, for the job's user: repair what earlier jobs left, stop the
    node root started for this user at HTTP (by the identity root recorded), undo its
    interception, and any whose node is gone."""
    from . import intercept

    os.chdir("/")
    refused = refused_args(flags)
    if refused:
        print(f"✗ root's side of `actions summary` takes --port and --http only (given: "
              f"{', '.join(refused)})", file=sys.stderr)
        return 2
    user = JobUser.of(os.environ)
    system = intercept.System()
    try:
        for line in intercept.recover(system):
            print(REPAIRED + line, flush=True)
        def mine(record: intercept.Record) -> bool:
            return record.uid == user.uid and record.http == http

        stop_recorded_nodes(system, mine)
        for line in intercept.teardown(
                system, lambda record: mine(record) or not record.node_alive()):
            print(f"✓ {line}", flush=True)
    except (intercept.InterceptError, OSError) as exc:
        print(f"✗ Could not undo transparent mode: {exc}", file=sys.stderr)
        return 1
    return 0


def stop_recorded_nodes(system: Any, chosen: Callable[[Any], bool]) -> list[int]:
    """SIGTERM the nodes of the records CHOSEN, each by the identity root recorded (PID,
    start time, executable) in its own directory; returns their PIDs."""
    from . import intercept

    stopped = []
    if not system.records.is_dir():
        return stopped
    for path in sorted(system.records.glob("*.json")):
        try:
            record = intercept.Record.load(path)
        except (OSError, ValueError, TypeError):
            continue
        if not chosen(record) or not record.node_alive():
            continue
        try:
            os.kill(record.node_pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        intercept.wait_gone(record.node_pid, record.node_start, 10)
        stopped.append(record.node_pid)
    return stopped


def _redirected(tag: str) -> bool:
    from . import intercept

    system = intercept.System()
    try:
        hosts = system.hosts.read_text()
    except OSError:
        hosts = ""
    return bool(tag) and (tag in hosts or (system.ca_dir / f"{tag}.crt").exists())
