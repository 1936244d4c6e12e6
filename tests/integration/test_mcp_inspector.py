"""`p2pcache mcp` driven by the MCP Inspector's CLI mode (npm, installed by tests/mcp/setup.sh):
another implementation of the protocol than the Python SDK the server is built with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require

HERE = Path(__file__).resolve().parent.parent / "mcp"
INSPECTOR = HERE / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture
def inspector(tmp_path: Path, nodes) -> Any:
    require(shutil.which("npx") is not None, "npx missing: run tests/setup.sh")
    require(INSPECTOR.exists(), "MCP Inspector missing: run tests/mcp/setup.sh")
    node = nodes("solo")
    server_env = {"P2P_CACHE_HTTP": f"127.0.0.1:{node.http_port}"}
    if os.environ.get("PYTHONPATH"):
        server_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    # The Inspector keeps a catalog of servers under HOME: keep it in the test's directory.
    env = {**os.environ, "HOME": str(tmp_path), "MCP_CATALOG_PATH": str(tmp_path / "mcp.json")}

    def run(*method: str) -> tuple[int, dict[str, Any], str]:
        argv = ["npx", "--no-install", "@modelcontextprotocol/inspector", "--cli"]
        for name, value in server_env.items():
            argv += ["-e", f"{name}={value}"]
        argv += [sys.executable, "-m", "p2pcache", "mcp", "--no-start", *method]
        done = subprocess.run(argv, cwd=HERE, env=env, capture_output=True, text=True,
                              timeout=120)
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"not JSON from the Inspector (exit {done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}") from None
        return done.returncode, answer, done.stderr

    return run


def test_inspector_lists_and_calls_every_tool(inspector, fake):
    code, listed, err = inspector("--method", "tools/list")
    assert code == 0, err
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == {"github_get", "cache_stats", "fleet_status", "doctor"}
    assert tools["github_get"]["inputSchema"]["required"] == ["path"]

    answers = []
    for _ in range(2):
        code, answer, err = inspector("--method", "tools/call", "--tool-name", "github_get",
                                      "--tool-arg", "path=repos/octo/hello")
        assert code == 0 and not answer.get("isError"), err
        answers.append(answer["structuredContent"])
    assert [a["source"] for a in answers] == ["miss", "hit"]
    assert answers[0]["body"]["full_name"] == "octo/hello"
    assert fake.stats()["by_path"]["/repos/octo/hello"] == 1

    code, paged, err = inspector("--method", "tools/call", "--tool-name", "github_get",
                                 "--tool-arg", "path=repos/octo/hello/issues",
                                 "paginate=true", "max_pages=10")
    assert code == 0, err
    assert paged["structuredContent"]["pages"] == 4
    assert len(paged["structuredContent"]["body"]) == 95

    got = {}
    for name in ("cache_stats", "fleet_status", "doctor"):
        code, answer, err = inspector("--method", "tools/call", "--tool-name", name)
        assert code == 0 and not answer.get("isError"), (name, err)
        got[name] = answer["structuredContent"]
    stats = got["cache_stats"]
    # The repository object (the MCP server's own, anonymous answer: it holds no token
    # here), the repository's view for the fleet (whether it is public; its /repositories/ID
    # spelling, which the pages' Links use, is the same repository), and 4 pages; the
    # second repository call was a hit. The fleet's token spent 5 units.
    assert stats["upstream_requests"] == 6 and stats["local_hits"] == 1
    assert stats["identity_requests"] == 1 and stats["credential_checks"] == 0
    assert stats["rate_limits"]["core"]["remaining"] == 5000 - 5
    assert got["fleet_status"]["peer_id"] == stats["peer_id"]
    assert any(c["title"] == "node running" and c["status"] == "ok"
               for c in got["doctor"]["checks"])


def test_inspector_gets_tool_errors(inspector, fake):
    code, answer, _ = inspector("--method", "tools/call", "--tool-name", "github_get",
                                "--tool-arg", "path=http://evil.example/x")
    assert code != 0 and answer["isError"] is True
    assert "not a relative GitHub API path" in answer["content"][0]["text"]

    code, answer, _ = inspector("--method", "tools/call", "--tool-name", "github_get",
                                "--tool-arg", "path=repos/octo/missing-thing")
    assert code != 0 and answer["isError"] is True
    assert "404" in answer["content"][0]["text"]
    assert "Not Found" in answer["content"][0]["text"]
    assert not any("evil" in p for p in fake.stats()["by_path"])
