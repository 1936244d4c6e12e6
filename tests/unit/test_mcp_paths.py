"""What `p2pcache mcp` accepts: GitHub REST paths only for github_get (never a URL or the
node's own API), loopback only for --listen."""

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from p2pcache.config import ConfigError
from p2pcache.mcp import api_target, listen_address


@pytest.mark.parametrize("path, target", [
    ("repos/octo/hello", "/repos/octo/hello"),
    ("/repos/octo/hello", "/repos/octo/hello"),
    ("repos/octo/hello/issues?state=open&per_page=100",
     "/repos/octo/hello/issues?per_page=100&state=open"),
    ("repos/octo/a/../hello", "/repos/octo/hello"),
    ("search/issues?q=repo:octo/hello+is:open", "/search/issues?q=repo%3Aocto%2Fhello+is%3Aopen"),
    ("users/octocat", "/users/octocat"),
])
def test_api_paths_are_accepted(path, target):
    assert api_target(path) == target


@pytest.mark.parametrize("path", [
    "http://evil.example/x", "https://api.github.com/repos/o/r", "//evil.example/x",
    "///evil.example/x", "\\\\evil.example\\x", "/\\evil.example", "javascript:alert(1)",
    "https:evil", "/-/stats", "-/peers", "/-", "repos/o r", "repos/x#frag", "repos/\x00",
    "repos/\r\nHost: evil", "répos/o/r", "/" + "a" * 9000,
])
def test_everything_else_is_a_tool_error(path):
    with pytest.raises(ToolError):
        api_target(path)


@pytest.mark.parametrize("value", ["0.0.0.0:9181", "192.0.2.1:9181", "[::]:9181",
                                   "example.com:9181", "127.0.0.1:0", "127.0.0.1", ":9181",
                                   "127.0.0.1:99999"])
def test_http_transport_listens_on_loopback_only(value):
    with pytest.raises(ConfigError):
        listen_address(value)


@pytest.mark.parametrize("value, address", [("127.0.0.1:9181", ("127.0.0.1", 9181)),
                                            ("[::1]:9181", ("::1", 9181)),
                                            ("localhost:9181", ("localhost", 9181))])
def test_loopback_listen_addresses(value, address):
    assert listen_address(value) == address
