"""Bad settings and a bad publishing answer, through the real command line (issue 10, item 7).

Bad configuration is one line naming the variable and the value, and exit status 2; a
malformed answer from the API when publishing the multiaddr is one line, never a crash.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import FLEET_TOKEN, free_port


def p2pcache(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "p2pcache", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def serve_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("P2P_CACHE_", "GITHUB_", "MCP_P2P_"))}
    return {**env, "P2P_CACHE_DATA_DIR": str(tmp_path / "data"), "GH_TOKEN": FLEET_TOKEN,
            "P2P_CACHE_PORT": str(free_port()), "P2P_CACHE_HTTP": f"127.0.0.1:{free_port()}"}


@pytest.mark.parametrize("flag, var, value", [
    ("--listen-host", "P2P_CACHE_LISTEN_HOST", "localhost"),
    ("--upstream", "GITHUB_API_URL", "http://[::1"),
    ("--upstream", None, "http://127.0.0.1:99999"),
    ("--max-bytes", "P2P_CACHE_MAX_BYTES", "0.5"),
    ("--warm-start", "P2P_CACHE_WARM_START", "lots"),
    ("--warm-start", "P2P_CACHE_WARM_START", "99999999999"),
    ("--upstream-concurrency", "P2P_CACHE_UPSTREAM_CONCURRENCY", "0"),
    ("--upstream-concurrency", "P2P_CACHE_UPSTREAM_CONCURRENCY", "101"),
    ("--webhook", "P2P_CACHE_WEBHOOK", "9200"),
])
def test_bad_settings_are_one_line_and_status_2(tmp_path, flag, var, value):
    env = serve_env(tmp_path)
    ways = [([flag, value], flag, {})] + ([([], var, {var: value})] if var else [])
    for args, name, extra in ways:
        result = p2pcache("serve", *args, env={**env, **extra})
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and name in lines[0] and repr(value) in lines[0], result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_a_whole_number_of_bytes_is_still_fine(tmp_path):
    env = serve_env(tmp_path)
    result = p2pcache("serve", "--max-bytes", "0", env=env)
    assert result.returncode == 2 and "greater than 0" in result.stderr
    from p2pcache.config import load

    assert load({"max_bytes": "1048576"}, {}, need_data_dir=False).max_bytes == 1048576


# -- publishing against an API that answers garbage ------------------------------------------

GOOD_KEY = base64.b64encode(bytes(range(32))).decode()
MALFORMED = {
    "not JSON": b"<html>oops</html>",
    "not UTF-8": b"\xff\xfe\x00",
    "a list": b"[1, 2]",
    "no key_id": json.dumps({"key": GOOD_KEY}).encode(),
    "key not base64": json.dumps({"key_id": "1", "key": "!!not base64!!"}).encode(),
    "key too short": json.dumps({"key_id": "1",
                                 "key": base64.b64encode(b"x" * 16).decode()}).encode(),
    "key a number": json.dumps({"key_id": "1", "key": 12345}).encode(),
}


class GarbageApi:
    """An HTTP server in the test standing in for an API that answers the public-key
    request with `body` (status 200), and 404 for everything else."""

    def __init__(self, body: bytes) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.paths.append(self.path)
                if self.path.endswith("/actions/secrets/public-key"):
                    self._send(200, api.body)
                else:
                    self._send(404, b'{"message": "Not Found"}')

            def do_PUT(self) -> None:  # noqa: N802
                api.paths.append("PUT " + self.path)
                self._send(201, b"")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.body = body
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def garbage_api():
    servers: list[GarbageApi] = []

    def make(body: bytes) -> GarbageApi:
        servers.append(GarbageApi(body))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_public_key_is_a_value_error(kind):
    from p2pcache.publish import parse_public_key

    try:
        answer = json.loads(MALFORMED[kind])
    except ValueError:
        answer = None  # what the publisher hands on for a body that is not JSON
    with pytest.raises(ValueError):
        parse_public_key(answer)


@pytest.mark.parametrize("kind", ["not JSON", "key too short"])
def test_publish_says_the_public_key_is_malformed(tmp_path, garbage_api, kind):
    api = garbage_api(MALFORMED[kind])
    address = "/ip4/203.0.113.5/tcp/9100/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    result = p2pcache("publish", "--github-secret", "octo/fleet", "--multiaddr", address,
                      "--upstream", api.url, env=serve_env(tmp_path))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed public key for octo/fleet" in lines[0], result.stderr
    assert not any(p.startswith("PUT") for p in api.paths)
    assert FLEET_TOKEN not in result.stderr


def test_a_good_public_key_still_publishes(tmp_path, garbage_api):
    api = garbage_api(json.dumps({"key_id": "568250167242549743", "key": GOOD_KEY}).encode())
    address = "/ip4/203.0.113.5/tcp/9100/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    result = p2pcache("publish", "--github-secret", "octo/fleet", "--multiaddr", address,
                      "--upstream", api.url, env=serve_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "PUT /repos/octo/fleet/actions/secrets/MCP_P2P_BOOTSTRAP_PEERS" in api.paths


def test_a_node_publishing_to_a_garbage_api_serves_on(nodes, garbage_api):
    """Before: the node crashed at start on the malformed answer (KeyError / JSON error)."""
    api = garbage_api(MALFORMED["not JSON"])
    node = nodes("server", upstream=api.url, args=["--publish-secret", "octo/fleet"])
    node.wait_for_log("answered a malformed public key for octo/fleet")
    assert node.get("/-/healthz").status_code == 200
    assert node.proc.poll() is None
