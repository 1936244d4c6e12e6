"""The job's files, opened as the job's user.

Root's side of transparent mode writes a few of the job's files (GITHUB_ENV, GITHUB_OUTPUT,
the node's log and PID file in the job's state directory) and could read others
(GITHUB_EVENT_PATH). The job owns the directories they live in and can swap any component
for a symlink at any moment, so root never opens them itself: a forked child takes the job
user's credentials (setgroups, setresgid, setresuid), walks each path from `/` one
component at a time (openat with O_NOFOLLOW, so a symlink anywhere fails the open), keeps
only a regular file the job user owns with a single link, and hands the descriptors back
over a socketpair. Whatever it is tricked into, the child can do nothing the job could not
do itself; root then only writes to, or reads from, those descriptors.

For a process working for its own user nothing is at stake: plain opens.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

MAX_PATH = 4096


class JobFileError(Exception):
    """A job file cannot be used; one line for the user."""


@dataclass(frozen=True)
class JobUser:
    """Whose job this is: under sudo the invoking user (sudo sets SUDO_UID itself), else
    whoever runs us. The node and every file it uses belong to this user."""
    uid: int
    gid: int
    home: str
    name: str = ""
    groups: tuple[int, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, env: Mapping[str, str]) -> JobUser:
        import pwd

        uid, gid = os.geteuid(), os.getegid()
        if uid == 0 and env.get("SUDO_UID", "").isdigit() and env.get("SUDO_GID", "").isdigit():
            uid, gid = int(env["SUDO_UID"]), int(env["SUDO_GID"])
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return cls(uid, gid, "/", str(uid), (gid,))
        try:
            groups = tuple(os.getgrouplist(entry.pw_name, gid))
        except OSError:
            groups = (gid,)
        return cls(uid, gid, entry.pw_dir, entry.pw_name, groups)

    @property
    def is_other(self) -> bool:
        return self.uid != os.geteuid()


How = Literal["append", "replace", "read"]


@dataclass(frozen=True)
class Wanted:
    """One file to open: appended to (created if missing), replaced by a new file, or read."""
    path: str
    how: How
    mode: int = 0o600


def check_path(path: str) -> str:
    """An absolute, normalised path (no `.` or `..` component), as the walk takes it."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path \
            or len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise JobFileError(f"{path!r} is not an absolute path")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise JobFileError(f"{path!r} is not a normalised absolute path")
    return path


def open_files(user: JobUser, wanted: Sequence[Wanted], timeout: float = 10.0) -> list[int]:
    """Descriptors for WANTED, in order, opened as USER; JobFileError names the first one
    that could not be opened (and none stays open)."""
    for w in wanted:
        check_path(w.path)
    if not user.is_other:
        return _open_all(wanted, None)
    return _open_in_child(user, wanted, timeout)


def append(user: JobUser, path: str, text: str) -> None:
    fd = open_files(user, [Wanted(path, "append")])[0]
    try:
        write_all(fd, text.encode())
    finally:
        os.close(fd)


def read(user: JobUser, path: str, limit: int) -> bytes:
    """At most LIMIT bytes of the job's file PATH (more is an error, not a cut)."""
    fd = open_files(user, [Wanted(path, "read")])[0]
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise JobFileError(f"{path}: larger than {limit} bytes")
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- the walk ----------------------------------------------------------------------------


def _open_all(wanted: Sequence[Wanted], strict_uid: int | None) -> list[int]:
    fds: list[int] = []
    try:
        for w in wanted:
            fds.append(_open_strict(w, strict_uid) if strict_uid is not None
                       else _open_plain(w))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


_FLAGS = {"append": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
          "replace": os.O_RDWR | os.O_CREAT | os.O_EXCL,  # read back: the node's log
          "read": os.O_RDONLY}


def _open_plain(w: Wanted) -> int:
    try:
        if w.how == "replace":
            try:
                os.unlink(w.path)  # a planted link is removed, never written through
            except FileNotFoundError:
                pass
            return os.open(w.path, _FLAGS[w.how] | os.O_NOFOLLOW | os.O_CLOEXEC, w.mode)
        return os.open(w.path, _FLAGS[w.how] | os.O_CLOEXEC, w.mode)
    except OSError as exc:
        raise JobFileError(f"{w.path}: {exc.strerror}") from None


def _open_strict(w: Wanted, uid: int) -> int:
    parts = [p for p in w.path.split("/") if p]
    try:
        dir_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = inner
            name = parts[-1]
            if w.how == "replace":
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
            # O_NONBLOCK: a FIFO planted in the file's place must not hang the open
            fd = os.open(name, _FLAGS[w.how] | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
                         | os.O_CLOEXEC, w.mode, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        why = "a symlink (or a file) is in the way" if exc.errno in (errno.ELOOP, errno.ENOTDIR) \
            else exc.strerror
        raise JobFileError(f"{w.path}: {why}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_nlink != 1:
        os.close(fd)
        raise JobFileError(f"{w.path}: not the job's own file (a regular file of uid {uid} "
                           "with one link)")
    return fd


def _open_in_child(user: JobUser, wanted: Sequence[Wanted], timeout: float) -> list[int]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the child: the job's user from here on, and never back
        status = 1
        try:
            ours.close()
            os.setgroups(list(user.groups or (user.gid,)))
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
            try:
                fds = _open_all(wanted, user.uid)
                socket.send_fds(theirs, [b"{}"], fds)
            except JobFileError as exc:
                socket.send_fds(theirs, [json.dumps({"error": str(exc)}).encode()], [])
            status = 0
        finally:
            os._exit(status)
    theirs.close()
    try:
        ours.settimeout(timeout)
        try:
            message, fds, _, _ = socket.recv_fds(ours, 65536, len(wanted))
        except (OSError, socket.timeout) as exc:
            raise JobFileError(f"could not open the job's files as uid {user.uid} ({exc})") \
                from None
    finally:
        ours.close()
        _reap(pid, timeout)
    try:
        error = json.loads(message or b"{}").get("error")
    except ValueError:
        error = "no answer from the opener"
    if error or len(fds) != len(wanted):
        for fd in fds:
            os.close(fd)
        raise JobFileError(error or f"could not open the job's files as uid {user.uid}")
    for fd in fds:
        os.set_inheritable(fd, False)  # SCM_RIGHTS does not set close-on-exec
    return fds


def _reap(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    if not done:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
