"""The root boundary of transparent mode: what root's side takes from the job, and how the
job reaches it (docs/security.md, "The root boundary").

Root's side (`actions start --transparent`, `actions summary`, the guardian) runs as root
for a job it does not trust. It takes, from the job, only:
  - its user (SUDO_UID / SUDO_GID, which sudo sets itself),
  - the arguments in ROOT_ARGS (--port, --http, --wait; --intercept only to compare),
  - one request on stdin (JobRequest, at most 64 KiB, validated here): the node's
    environment, by the names in NODE_ENV only, handed to the node, which runs as the
    job's user, and never read by root; the job's state directory and its GITHUB_ENV /
    GITHUB_OUTPUT, which root opens only as the job's user (jobfiles.py).
Everything else (the intercepted host, the upstream and its roots) comes from the
root-owned configuration file CONF_PATH, or its defaults. Root's Python is isolated
(ROOT_ENTRY's `#!.../python -I`: no PYTHON* variables, no user site-packages, not the
working directory).
"""

from __future__ import annotations

import errno
import json
import os
import select
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .jobfiles import JobFileError, check_path

CONF_PATH = Path("/etc/p2pcache/transparent.conf")
# What README's sudoers rule names: a file of its own in the root-owned install (runner/
# install.sh writes it), `#!/opt/p2pcache/bin/python -I`. Not the venv's `python`: that is
# a symlink to the system's interpreter, which older sudo would also match through another
# venv's symlink (same basename, same inode), one the job made.
ROOT_ENTRY = "/opt/p2pcache/bin/p2pcache-root"
ISOLATED = ("-I", "-m", "p2pcache")  # how root runs its interpreter (guardian, full sudo)

# What the node gets of the job's environment (it runs as the job's user). Not here, so
# root decides them: the upstream (GITHUB_API_URL), its roots and addresses, the HTTPS
# listener and its credentials, the ports, and what would let the job's node act for other
# users (lending its token to their writes).
NODE_ENV = ("GH_TOKEN", "GITHUB_TOKEN", "P2P_CACHE_SECRET", "MCP_P2P_BOOTSTRAP_PEERS",
            "IPFS_ACCELERATE_GITHUB_REPO", "GITHUB_REPOSITORY", "P2P_CACHE_DATA_DIR",
            "P2P_CACHE_LISTEN_HOST", "P2P_CACHE_ANNOUNCE", "P2P_CACHE_TTL",
            "P2P_CACHE_PEER_TIMEOUT", "P2P_CACHE_MAX_BYTES", "P2P_CACHE_REFRESH_AHEAD",
            "P2P_CACHE_WARM_START", "P2P_CACHE_NOT_BEFORE", "P2P_CACHE_UPSTREAM_CONCURRENCY",
            "P2P_CACHE_UNIX_SOCKET", "P2P_CACHE_LOG_LEVEL", "P2P_CACHE_PEER_SILENCE")
JOB_FILES = ("GITHUB_ENV", "GITHUB_OUTPUT")
ROOT_ARGS = ("port", "http", "wait", "transparent", "intercept")
REQUEST_LIMIT = 64 * 1024
VALUE_LIMIT = 16 * 1024
REQUEST_TIMEOUT = 10.0


class BoundaryError(Exception):
    """Root's side refuses; one line for the user."""


# -- the root-owned configuration --------------------------------------------------------


@dataclass(frozen=True)
class RootConfig:
    """/etc/p2pcache/transparent.conf: `name = value` lines, `#` comments."""
    intercept: str = "api.github.com"
    upstream: str = "https://api.github.com"
    upstream_ca_bundle: str | None = None

    @classmethod
    def parse(cls, text: str, where: str = str(CONF_PATH)) -> RootConfig:
        from . import config, intercept

        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, value = (part.strip() for part in line.partition("="))
            if not sep or name not in ("intercept", "upstream", "upstream_ca_bundle"):
                raise BoundaryError(f"{where}:{number}: expected intercept, upstream or "
                                    "upstream_ca_bundle = VALUE")
            values[name] = value
        try:
            host = intercept.check_host(values.get("intercept", cls.intercept))
            upstream = config._upstream(f"{where}: upstream",
                                        values.get("upstream", cls.upstream))
        except (intercept.InterceptError, config.ConfigError) as exc:
            raise BoundaryError(f"{where}: {exc}") from None
        if not upstream.startswith("https://"):
            raise BoundaryError(f"{where}: upstream {upstream!r} must be https://")
        bundle = values.get("upstream_ca_bundle") or None
        if bundle is not None and not bundle.startswith("/"):
            raise BoundaryError(f"{where}: upstream_ca_bundle must be an absolute path")
        return cls(host, upstream, bundle)

    @classmethod
    def load(cls, path: Path = CONF_PATH) -> RootConfig:
        """The defaults when the file does not exist; refused when anyone but root could
        have written it (or a directory on its way)."""
        try:
            data = read_root_file(path)
        except FileNotFoundError:
            return cls()
        return cls.parse(data.decode("utf-8", "replace"), str(path))


def read_root_file(path: Path, limit: int = 65536) -> bytes:
    """A file only root can have written: every component opened without following
    symlinks, each root's and writable by root alone (or sticky, as /tmp)."""
    parts = [p for p in str(path).split("/") if p]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            try:
                inner = os.open(part, flags | (os.O_NONBLOCK if last else 0), dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(str(path)) from None
                raise BoundaryError(f"{path}: {exc.strerror}") from None
            os.close(fd)
            fd = inner
            st = os.fstat(fd)
            # A sticky directory (/tmp) lets others add names but not move root's.
            open_to_others = st.st_mode & 0o022 and (last or not st.st_mode & stat.S_ISVTX)
            if st.st_uid != 0 or open_to_others or (last and not stat.S_ISREG(st.st_mode)):
                raise BoundaryError(f"{path}: not root's alone (owner, mode or type of "
                                    f"/{'/'.join(parts[:i + 1])})")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise BoundaryError(f"{path}: larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    """What the job hands root's side on stdin: see the module's docstring."""
    state: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    files: Mapping[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    VERSION = 1

    @classmethod
    def of(cls, env: Mapping[str, str], state: Path,
           extra: Mapping[str, str] | None = None) -> JobRequest:
        """The job's side: what it may hand over, with paths resolved (so a runner whose
        directories are reached through a symlink still works: root follows none)."""
        node_env = {name: env[name] for name in NODE_ENV if env.get(name)}
        node_env.update(extra or {})
        files = {name: os.path.realpath(env[name]) for name in JOB_FILES if env.get(name)}
        return cls(os.path.realpath(state), node_env, files)

    def encode(self) -> bytes:
        return json.dumps({"version": self.VERSION, "state": self.state,
                           "env": dict(self.env), "files": dict(self.files)}).encode()

    @classmethod
    def decode(cls, data: bytes) -> JobRequest:
        """Where the job's bytes enter root's side: validated here, once."""
        if len(data) > REQUEST_LIMIT:
            raise BoundaryError(f"the job's request is over {REQUEST_LIMIT} bytes")
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BoundaryError("the job's request is not JSON (run `p2pcache actions start "
                                "--transparent` as the job's user: it asks sudo itself)") \
                from None
        if not isinstance(raw, dict) or raw.get("version") != cls.VERSION:
            raise BoundaryError(f"the job's request is not version {cls.VERSION} (is the "
                                f"root-owned install the action's version?)")
        env, dropped = {}, []
        for name, value in _mapping(raw.get("env"), "env").items():
            if name in NODE_ENV:
                env[name] = _value(name, value)
            else:
                dropped.append(name)
        files = {}
        for name, value in _mapping(raw.get("files"), "files").items():
            if name not in JOB_FILES:
                dropped.append(name)
                continue
            files[name] = _path(name, value)
        return cls(_path("state", raw.get("state")), env, files, tuple(sorted(dropped)))

    @classmethod
    def read(cls, fd: int, timeout: float = REQUEST_TIMEOUT) -> JobRequest:
        """From FD (stdin), bounded in size and time."""
        if os.isatty(fd):
            raise BoundaryError("no request on stdin: run `p2pcache actions start "
                                "--transparent` as the job's user (it asks sudo itself)")
        chunks, size = [], 0
        while size <= REQUEST_LIMIT:
            if not select.select([fd], [], [], timeout)[0]:
                raise BoundaryError(f"no request on stdin within {timeout:.0f} s")
            chunk = os.read(fd, REQUEST_LIMIT + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return cls.decode(b"".join(chunks))


def _mapping(value: object, what: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BoundaryError(f"the job's request: {what} is not an object")
    return value


def _value(name: str, value: object) -> str:
    if not isinstance(value, str) or "\0" in value or len(value) > VALUE_LIMIT:
        raise BoundaryError(f"the job's request: {name} is not a string of at most "
                            f"{VALUE_LIMIT} characters")
    return value


def _path(name: str, value: object) -> str:
    try:
        return check_path(_value(name, value))
    except JobFileError as exc:
        raise BoundaryError(f"the job's request: {name}: {exc}") from None


def refused_args(args: Mapping[str, object]) -> list[str]:
    """The command-line options root's side was given beyond ROOT_ARGS (the sudoers rule
    ends in `*`: anything may follow)."""
    return sorted(f"--{name.replace('_', '-')}" for name, value in args.items()
                  if name not in ROOT_ARGS and name not in ("command", "step", "argv", "verbose")
                  and value not in (None, False, ""))


# -- the route ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """How the job's user reaches root's side: `sudo -n` and an isolated Python."""
    entry: tuple[str, ...]
    how: str

    @property
    def command(self) -> tuple[str, ...]:
        return ("sudo", "-n", *self.entry)

    @classmethod
    def find(cls, args: Sequence[str], root_entry: str = ROOT_ENTRY) -> Route | None:
        """The sudoers rule for the root-owned install first (README: "Transparent mode
        without giving jobs root"), else passwordless sudo for anything (hosted runners:
        the job's own interpreter, isolated), else none."""
        if _root_owned(root_entry) and _sudo(["-l", root_entry, *args]):
            return cls((root_entry,), f"the sudoers rule for {root_entry}")
        if _sudo(["true"]):
            return cls((sys.executable, *ISOLATED), "passwordless sudo")
        return None

    def run(self, args: Sequence[str], request: bytes | None = None) -> int:
        """Root's side, with the request on its stdin; its output is the step's."""
        sys.stdout.flush()
        try:
            proc = subprocess.Popen([*self.command, *args], stdin=subprocess.PIPE,
                                    env=_sudo_env(), cwd="/")
        except OSError as exc:
            print(f"✗ cannot run sudo ({exc.strerror})", file=sys.stderr)
            return 1
        try:
            proc.stdin.write(request or b"")  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        return proc.wait()


def _root_owned(path: str) -> bool:
    """Root's alone: the entry and the install around it (whether sudo allows it is
    sudo's to say)."""
    try:
        return all(os.lstat(p).st_uid == 0 and not os.lstat(p).st_mode & 0o022
                   for p in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))))
    except OSError:
        return False


def _sudo(args: Sequence[str]) -> bool:
    try:
        return subprocess.run(["sudo", "-n", *args], capture_output=True, timeout=10,
                              env=_sudo_env(), stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _sudo_env() -> dict[str, str]:
    """sudo resets the environment anyway; nothing of the job's is offered to it."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
