"""The appliance's files without an engine: the lock against node/pyproject.toml, compose.yaml
and its UPnP variant as Compose reads them, .env.example, the health check's address.

Only `docker compose config` is needed (the CLI, no engine), so these run fast and first.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import require  # tests/conftest.py
from dockerlab import REPO, env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = REPO / "docker/requirements.lock"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{LOCK.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_of_the_node() -> None:
    project = tomllib.loads((REPO / "node/pyproject.toml").read_text())
    pins = lock_pins()
    wanted = project["project"]["dependencies"] + project["build-system"]["requires"]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, (f"node/pyproject.toml needs {spec}, docker/requirements.lock has "
                              f"no pin for it: run `bash docker/lock.sh`")
        assert spec.specifier.contains(pins[name], prereleases=True), (
            f"docker/requirements.lock pins {name}=={pins[name]}, node/pyproject.toml wants "
            f"{spec}: run `bash docker/lock.sh`")


def compose_config(*files: str, variables: dict[str, str] | None = None,
                   tmp_path: Path) -> dict[str, Any]:
    require(shutil.which("docker") is not None
            and subprocess.run(["docker", "compose", "version"], capture_output=True,
                               env=env()).returncode == 0,
            "no `docker compose` (Compose v2): run `bash tests/docker/setup.sh` as root")
    env_file = tmp_path / "empty.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in (variables or {}).items()))
    args = [arg for f in files for arg in ("-f", str(REPO / f))]
    result = subprocess.run(
        ["docker", "compose", "--project-directory", str(REPO), "--env-file", str(env_file),
         *args, "config", "--format", "json"], env=env(), capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_publishes_the_peer_port_and_keeps_the_api_on_loopback(tmp_path: Path) -> None:
    node = compose_config("compose.yaml", tmp_path=tmp_path)["services"]["node"]
    ports = {(p["target"], p["published"], p.get("host_ip"), p["protocol"])
             for p in node["ports"]}
    assert ports == {(9100, "9100", None, "tcp"), (9180, "9180", "127.0.0.1", "tcp")}
    assert node["restart"] == "unless-stopped"
    assert [(v["type"], v["source"], v["target"]) for v in node["volumes"]] == [
        ("volume", "data", "/data")]
    assert node["logging"]["driver"] == "json-file"
    assert node["logging"]["options"]["max-size"] and node["logging"]["options"]["max-file"]
    assert "/opt/p2pcache/healthcheck.py" in node["healthcheck"]["test"]
    assert node["stop_signal"] == "SIGTERM"
    for variable in ("GH_TOKEN", "P2P_CACHE_SECRET", "MCP_P2P_BOOTSTRAP_PEERS",
                     "IPFS_ACCELERATE_GITHUB_REPO", "P2P_CACHE_ANNOUNCE", "GITHUB_API_URL"):
        assert variable in node["environment"], variable


def test_compose_reads_the_variables_from_the_env_file(tmp_path: Path) -> None:
    node = compose_config("compose.yaml", tmp_path=tmp_path, variables={
        "GH_TOKEN": "t0ken", "P2P_CACHE_PORT": "9200", "P2P_CACHE_HTTP_PORT": "9280",
        "MCP_P2P_BOOTSTRAP_PEERS": "/ip4/192.0.2.1/tcp/9100/p2p/12D3KooWabc"})["services"]["node"]
    assert node["environment"]["GH_TOKEN"] == "t0ken"
    assert node["environment"]["P2P_CACHE_PORT"] == "9200"
    assert node["environment"]["MCP_P2P_BOOTSTRAP_PEERS"].startswith("/ip4/192.0.2.1/")
    ports = {(p["target"], p["published"]) for p in node["ports"]}
    assert ports == {(9200, "9200"), (9180, "9280")}


def test_env_example_documents_every_variable_compose_reads(tmp_path: Path) -> None:
    node = compose_config("compose.yaml", tmp_path=tmp_path)["services"]["node"]
    compose_text = (REPO / "compose.yaml").read_text() + (REPO / "compose.upnp.yaml").read_text()
    interpolated = set(re.findall(r"\$\{(\w+)", compose_text))
    documented = set(re.findall(r"^#?(\w+)=", (REPO / ".env.example").read_text(), re.M))
    undocumented = (set(node["environment"]) | interpolated) - documented
    assert not undocumented, f".env.example does not mention {sorted(undocumented)}"


def test_the_upnp_variant_uses_the_host_network(tmp_path: Path) -> None:
    node = compose_config("compose.yaml", "compose.upnp.yaml",
                          tmp_path=tmp_path)["services"]["node"]
    assert node["network_mode"] == "host"
    assert not node.get("ports")
    assert node["environment"]["P2P_CACHE_UPNP"] == "1"
    assert node["environment"]["P2P_CACHE_HTTP"] == "127.0.0.1:9180"


@pytest.mark.parametrize(("http", "url"), [
    ("0.0.0.0:9180", "http://127.0.0.1:9180/-/healthz"),
    ("127.0.0.1:9280", "http://127.0.0.1:9280/-/healthz"),
    ("[::]:9180", "http://[::1]:9180/-/healthz"),
    ("[::1]:9180", "http://[::1]:9180/-/healthz"),
    ("10.1.2.3:80", "http://10.1.2.3:80/-/healthz"),
])
def test_the_health_check_asks_the_api_address(http: str, url: str) -> None:
    spec = importlib.util.spec_from_file_location("p2pcache_healthcheck",
                                                  REPO / "docker/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.healthz_url(http) == url


def test_the_dockerfile_version_label_default_follows_the_node() -> None:
    """`docker compose build` passes no VERSION, so the Dockerfile's default is the label."""
    version = tomllib.loads((REPO / "node/pyproject.toml").read_text())["project"]["version"]
    default = re.search(r"^ARG VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert default and default.group(1) == version, (
        f"Dockerfile: set `ARG VERSION={version}` (node/pyproject.toml's version)")


# Settings the image fixes for the container: the data volume, the API inside the container,
# and listening on every container interface.
FIXED_BY_THE_IMAGE = {"P2P_CACHE_DATA_DIR", "P2P_CACHE_HTTP", "P2P_CACHE_LISTEN_HOST"}
# Set only by `actions start --transparent` for the runner node it starts (a job's HTTPS
# listener and its pre-resolved upstream): nothing a container of the appliance uses.
TRANSPARENT_ONLY = {"P2P_CACHE_HTTPS", "P2P_CACHE_TLS_CERT", "P2P_CACHE_TLS_KEY",
                    "P2P_CACHE_UPSTREAM_ADDRESSES"}


def test_compose_passes_every_variable_the_node_reads(tmp_path: Path) -> None:
    """A setting the node gains must be settable in .env too (or fixed by the image)."""
    config = (REPO / "node/src/p2pcache/config.py").read_text()
    read = set(re.findall(r"\"((?:P2P_CACHE|MCP_P2P|GH|GITHUB|IPFS)_[A-Z0-9_]+)\"", config))
    assert {"GH_TOKEN", "MCP_P2P_BOOTSTRAP_PEERS", "P2P_CACHE_SECRET"} <= read, read
    node = compose_config("compose.yaml", tmp_path=tmp_path)["services"]["node"]
    missing = read - set(node["environment"]) - FIXED_BY_THE_IMAGE - TRANSPARENT_ONLY
    assert not missing, (f"compose.yaml does not pass {sorted(missing)} to the node: add them "
                         f"to services.node.environment and to .env.example")
