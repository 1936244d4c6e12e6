"""The job's files opened as the job's user (jobfiles.py): root's side never opens a path
the job could have prepared, and what it opens is the job's own regular file.

Opening as another user needs root (the opener's child takes that user's credentials):
these tests run as root, for a job user made of the `nobody` account, in a directory that
user owns (what $RUNNER_TEMP is to a job).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import require
from p2pcache.jobfiles import (JobFileError, JobUser, Wanted, append, check_path, open_files,
                               read)


@pytest.fixture
def base() -> Iterator[Path]:
    """Root's directory that anyone may traverse (pytest's own tree is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="p2pcache-jobfiles-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def job(base: Path) -> tuple[JobUser, Path]:
    require(os.geteuid() == 0, "opening files as another user needs root")
    nobody = pwd.getpwnam("nobody")
    user = JobUser(nobody.pw_uid, nobody.pw_gid, "/", "nobody", (nobody.pw_gid,))
    home = base / "temp"
    home.mkdir()
    os.chown(home, user.uid, user.gid)
    return user, home


def test_append_is_done_as_the_job_user_to_its_own_file(job):
    user, home = job
    target = home / "github_env"
    append(user, str(target), "A=1\n")
    append(user, str(target), "B=2\n")
    assert target.read_text() == "A=1\nB=2\n"
    assert target.stat().st_uid == user.uid  # created by the job's user, not root


def test_a_root_only_file_is_not_written(job, base):
    user, _ = job
    secret = base / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    with pytest.raises(JobFileError, match="Permission denied"):
        append(user, str(secret), "X=1\n")
    assert secret.read_text() == "root's\n"


def test_a_file_the_job_can_write_but_does_not_own_is_not_its_own(job):
    user, home = job
    shared = home / "shared"
    shared.write_text("")
    shared.chmod(0o666)  # root's file, writable by all: still not the job's
    with pytest.raises(JobFileError, match="not the job's own file"):
        append(user, str(shared), "X=1\n")
    assert shared.read_text() == ""


@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_symlink_anywhere_on_the_path_is_refused(job, where):
    user, home = job
    victim_dir = home / "victim"  # the job's own, so only the walk can refuse
    victim_dir.mkdir()
    os.chown(victim_dir, user.uid, user.gid)
    (victim_dir / "file").write_text("")
    os.chown(victim_dir / "file", user.uid, user.gid)
    if where == "last":
        (home / "link").symlink_to(victim_dir / "file")
        path = home / "link"
    else:
        (home / "linkdir").symlink_to(victim_dir)
        path = home / "linkdir" / "file"
    os.lchown(home / ("link" if where == "last" else "linkdir"), user.uid, user.gid)
    with pytest.raises(JobFileError, match="symlink"):
        append(user, str(path), "X=1\n")
    assert (victim_dir / "file").read_text() == ""


def test_a_hard_link_is_not_the_jobs_own_file(job):
    user, home = job
    first = home / "first"
    first.write_text("")
    os.chown(first, user.uid, user.gid)
    os.link(first, home / "second")
    with pytest.raises(JobFileError, match="one link"):
        append(user, str(home / "second"), "X=1\n")


def test_a_fifo_in_place_of_a_file_does_not_hang_the_opener(job):
    user, home = job
    fifo = home / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, user.uid, user.gid)
    began = time.monotonic()
    with pytest.raises(JobFileError):
        read(user, str(fifo), 100)
    with pytest.raises(JobFileError):
        append(user, str(fifo), "x")
    assert time.monotonic() - began < 5


def test_replace_unlinks_a_planted_symlink_and_writes_a_new_file(job, base):
    user, home = job
    target = base / "root-file"
    target.write_text("untouched")
    (home / "pid").symlink_to(target)
    fd = open_files(user, [Wanted(str(home / "pid"), "replace")])[0]
    try:
        os.write(fd, b"123")
    finally:
        os.close(fd)
    assert target.read_text() == "untouched"
    assert not (home / "pid").is_symlink() and (home / "pid").read_text() == "123"
    assert (home / "pid").stat().st_uid == user.uid
    assert stat.S_IMODE((home / "pid").stat().st_mode) == 0o600


def test_read_is_bounded_and_one_failure_opens_nothing(job):
    user, home = job
    big = home / "event.json"
    big.write_bytes(b"x" * 1000)
    os.chown(big, user.uid, user.gid)
    assert read(user, str(big), 1000) == b"x" * 1000
    with pytest.raises(JobFileError, match="larger than 999"):
        read(user, str(big), 999)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(JobFileError):
        open_files(user, [Wanted(str(big), "read"), Wanted(str(home / "none" / "x"), "read")])
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("bad", ["relative/path", "/a/../etc/shadow", "/a/./b", "/",
                                 "/a\0b", "/" + "a" * 5000])
def test_only_normalised_absolute_paths_are_walked(bad):
    with pytest.raises(JobFileError):
        check_path(bad)


def test_for_its_own_user_plain_opens(tmp_path):
    """The job's side opening its own files: nothing is at stake, symlinks are followed
    (a runner's directories may be reached through one)."""
    me = JobUser(os.geteuid(), os.getegid(), "/")
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    append(me, str(tmp_path / "via" / "env"), "A=1\n")
    assert (real / "env").read_text() == "A=1\n"
