"""Which paths `github_get` accepts: GitHub REST paths only, never a URL or the node's own API."""

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from p2pcache.mcp import api_target


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
