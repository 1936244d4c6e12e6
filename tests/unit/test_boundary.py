"""What root's side of transparent mode takes from the job (boundary.py): the request on
stdin, validated where it enters; root's own configuration file; the options it accepts."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import require
from p2pcache.boundary import (NODE_ENV, REQUEST_LIMIT, BoundaryError, JobRequest, RootConfig,
                               read_root_file, refused_args)
from p2pcache.cli import build_parser


def request(**fields: object) -> bytes:
    return json.dumps({"version": 1, "state": "/home/runner/work/_temp/p2pcache",
                       **fields}).encode()


def test_the_job_side_hands_over_only_the_allowlisted_names(tmp_path):
    env = {"GH_TOKEN": "ghp_secret0token", "P2P_CACHE_SECRET": "s",
           "GITHUB_API_URL": "https://evil.example",
           "PYTHONPATH": "/x", "P2P_CACHE_UPSTREAM_CA_BUNDLE": "/x.pem",
           "GITHUB_ENV": str(tmp_path / "env"), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")}
    made = JobRequest.of(env, tmp_path, {"P2P_CACHE_DATA_DIR": "/d"})
    assert dict(made.env) == {"GH_TOKEN": "ghp_secret0token", "P2P_CACHE_SECRET": "s",
                              "P2P_CACHE_DATA_DIR": "/d"}
    assert dict(made.files) == {"GITHUB_ENV": str(tmp_path / "env")}
    again = JobRequest.decode(made.encode())
    assert again == made and "ghp_secret0token" not in repr(again)  # the token stays out of reprs


def test_root_drops_what_its_allowlist_does_not_name():
    got = JobRequest.decode(request(
        env={"GH_TOKEN": "t", "GITHUB_API_URL": "https://evil.example", "LD_PRELOAD": "/x.so",
             "PYTHONPATH": "/x", "P2P_CACHE_HTTPS": "0.0.0.0:1", "P2P_CACHE_LEND_TOKEN": "1"},
        files={"GITHUB_ENV": "/home/runner/env", "GITHUB_PATH": "/home/runner/path"}))
    assert dict(got.env) == {"GH_TOKEN": "t"}
    assert dict(got.files) == {"GITHUB_ENV": "/home/runner/env"}
    assert got.dropped == ("GITHUB_API_URL", "GITHUB_PATH", "LD_PRELOAD", "P2P_CACHE_HTTPS",
                           "P2P_CACHE_LEND_TOKEN", "PYTHONPATH")
    for name in ("GITHUB_API_URL", "P2P_CACHE_HTTPS", "P2P_CACHE_TLS_KEY", "P2P_CACHE_PORT",
                 "P2P_CACHE_HTTP", "P2P_CACHE_UPSTREAM_ADDRESSES", "P2P_CACHE_UPSTREAM_CA_BUNDLE",
                 "P2P_CACHE_LEND_TOKEN", "P2P_CACHE_WEBHOOK", "P2P_CACHE_UPNP"):
        assert name not in NODE_ENV  # root's to decide


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", b'{"version": 2, "state": "/s"}', json.dumps({"version": 1}).encode(),
    request(state="relative"), request(state="/a/../etc"), request(env={"GH_TOKEN": 1}),
    request(env={"GH_TOKEN": "a\0b"}), request(env={"GH_TOKEN": "x" * 20000}),
    request(env=["GH_TOKEN"]), request(files={"GITHUB_ENV": "env"}),
    b"\xff\xfe", b" " * (REQUEST_LIMIT + 1)])
def test_a_malformed_request_is_refused_in_one_line(bad):
    with pytest.raises(BoundaryError) as caught:
        JobRequest.decode(bad)
    assert "\n" not in str(caught.value)


def test_reading_the_request_is_bounded_in_size_and_time():
    r, w = os.pipe()
    try:
        began = time.monotonic()
        with pytest.raises(BoundaryError, match="no request on stdin within"):
            JobRequest.read(r, timeout=0.2)  # the writer never writes nor closes
        assert time.monotonic() - began < 5
        os.write(w, request())
        os.close(w)
        w = -1
        assert JobRequest.read(r).state == "/home/runner/work/_temp/p2pcache"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_root_takes_only_its_options():
    parse = build_parser().parse_args
    assert refused_args(vars(parse(["actions", "start", "--transparent", "--port", "1",
                                    "--http", "127.0.0.1:2", "--wait", "3",
                                    "--intercept", "api.github.com"]))) == []
    assert refused_args(vars(parse(["actions", "start", "--transparent", "--upstream",
                                    "https://evil.example", "--data-dir", "/etc", "--bootstrap",
                                    "/ip4/1.2.3.4/tcp/1"]))) == \
        ["--bootstrap", "--data-dir", "--upstream"]


# -- root's configuration ------------------------------------------------------------------


def test_the_configuration_defaults_and_parses():
    assert RootConfig.parse("") == RootConfig("api.github.com", "https://api.github.com")
    conf = RootConfig.parse("# GHES\nintercept = GHES.example.com\n"
                            "upstream = https://ghes.example.com/api/v3/\n"
                            "upstream_ca_bundle = /etc/ssl/ghes.pem  # its root\n")
    assert conf == RootConfig("ghes.example.com", "https://ghes.example.com/api/v3",
                              "/etc/ssl/ghes.pem")


@pytest.mark.parametrize("text", ["intercept = 10.0.0.1", "intercept = *.github.com",
                                  "upstream = http://api.github.com", "upstream = nope",
                                  "upstream_ca_bundle = relative.pem", "pythonpath = /x",
                                  "just a line"])
def test_a_bad_configuration_is_refused(text):
    with pytest.raises(BoundaryError):
        RootConfig.parse(text)


@pytest.fixture
def etc() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="p2pcache-etc-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_configuration_file_must_be_roots_alone(etc):
    require(os.geteuid() == 0, "files owned by root and by others need root to make")
    conf = etc / "transparent.conf"
    assert RootConfig.load(conf) == RootConfig()  # none: the defaults
    conf.write_text("intercept = ghes.example.com\n")
    conf.chmod(0o644)
    assert RootConfig.load(conf).intercept == "ghes.example.com"
    conf.chmod(0o664)  # writable by a group
    with pytest.raises(BoundaryError, match="not root's alone"):
        RootConfig.load(conf)
    conf.chmod(0o644)
    os.chown(conf, 65534, 65534)  # someone else's
    with pytest.raises(BoundaryError, match="not root's alone"):
        RootConfig.load(conf)
    os.chown(conf, 0, 0)
    etc.chmod(0o777)  # a directory on the way others may write
    with pytest.raises(BoundaryError, match="not root's alone"):
        RootConfig.load(conf)
    etc.chmod(0o755)
    real = etc / "real"
    real.mkdir()
    (real / "transparent.conf").write_text("intercept = evil.example\n")
    (etc / "link").symlink_to(real)
    with pytest.raises(BoundaryError):
        read_root_file(etc / "link" / "transparent.conf")
