"""Harness of the docker tests: the tests' own Docker engine, the image, compose projects.

The engine is the one tests/docker/setup.sh starts, on its own socket, data root and networks
(198.18.0.0/15); P2PCACHE_TEST_DOCKER_HOST names another. Every docker command runs with a
minimal environment (no GH_TOKEN or other secret of the caller's leaks into a project), and
every compose project has a name of its own and a generated --env-file, so a .env beside
compose.yaml changes nothing here.

(No conftest.py here on purpose: a second module named `conftest` outside a package would
replace tests/conftest.py in sys.modules, and `tests/docker/__init__.py` would shadow the
`docker` distribution. Fixtures live in the test modules; this module holds the tools.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOCKER_HOST = os.environ.get("P2PCACHE_TEST_DOCKER_HOST",
                             "unix:///run/p2pcache-test-docker/docker.sock")
ENGINE_LOG = "/var/log/p2pcache-test-docker.log"
RESULTS = REPO / "bench" / "results" / "docker.json"
TEST_IMAGE = "p2pcache:test"
TOKEN = "ghp_dockertoken00000000000000000000000000"
NAMESPACE = "p2pcache-tests/docker"


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a docker command: the engine, and nothing of the caller's secrets."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "DOCKER_HOST": DOCKER_HOST,
    }
    base.update(extra or {})
    return base


def docker(*args: str, check: bool = True, timeout: float = 120,
           extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], env=env(extra_env), capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def missing_prerequisite() -> str | None:
    """Why the docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI: run `bash tests/docker/setup.sh` as root"
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        return f"the Docker engine at {DOCKER_HOST} does not answer (see {ENGINE_LOG})"
    if info.returncode != 0:
        return (f"no Docker engine answers at {DOCKER_HOST}: run `bash tests/docker/setup.sh` "
                f"as root (log: {ENGINE_LOG}); {info.stderr.strip()[-200:]}")
    if docker("compose", "version", check=False).returncode != 0:
        return "`docker compose` (Compose v2) does not run: see tests/docker/setup.sh"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, trust_env=False)


def record(**figures: Any) -> None:
    """Merge figures into bench/results/docker.json (read by people, not by tests)."""
    record_into(RESULTS, figures)


def record_into(results: Path, figures: dict[str, Any]) -> None:
    """Merge figures into a bench/results JSON file, with when and how loaded the machine
    was (these are wall times)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(results.read_text())
    except (OSError, ValueError):
        current = {}
    current.update(figures)
    current["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        current["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    tmp = results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(results)


class Compose:
    """One compose project: compose.yaml plus overrides, its own name and --env-file."""

    def __init__(self, workdir: Path, files: list[Path], variables: dict[str, str],
                 prefix: str = "p2pcache-test") -> None:
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.files = files
        self.env_file = workdir / f"{self.name}.env"
        lines = []
        for key, value in variables.items():
            assert "\n" not in value and "'" not in value, (key, value)
            lines.append(f"{key}='{value}'")
        self.env_file.write_text("\n".join(lines) + "\n")

    # -- commands -----------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 180,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        files = [arg for f in self.files for arg in ("-f", str(f))]
        return docker("compose", "--project-name", self.name, "--project-directory", str(REPO),
                      "--env-file", str(self.env_file), *files, *args, check=check,
                      timeout=timeout, extra_env=extra_env)

    def up(self, *services: str, timeout: float = 90,
           extra_env: dict[str, str] | None = None) -> float:
        """`up -d` the services, wait until each is healthy (or running, without a check);
        returns the seconds from the `up` command to that."""
        start = time.monotonic()
        self.run("up", "--detach", "--no-build", "--pull", "never", *services,
                 extra_env=extra_env)
        for service in services:
            self.wait_healthy(service, deadline=start + timeout)
        return time.monotonic() - start

    def wait_healthy(self, service: str, deadline: float) -> None:
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.inspect(service)["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy" or (health is None and state["Status"] == "running"):
                return
            if state["Status"] in ("exited", "dead") or state.get("Restarting"):
                break
            time.sleep(0.1)
        raise AssertionError(f"{service} not healthy: {json.dumps(state)[:1500]}\n"
                             f"{self.logs(service)}")

    def stop(self, service: str, timeout: float = 60) -> float:
        start = time.monotonic()
        self.run("stop", service, timeout=timeout)
        return time.monotonic() - start

    def down(self, volumes: bool) -> None:
        """Remove every container of the project, every profile, and (volumes=True) its
        volumes; then check that nothing of it is left."""
        args = ["--profile", "test", "down", "--remove-orphans", "--timeout", "30"]
        self.run(*args, *(["--volumes"] if volumes else []), timeout=120)
        label = f"label=com.docker.compose.project={self.name}"
        left = docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
        if volumes:
            left += docker("volume", "ls", "--quiet", "--filter", label).stdout.split()
        assert not left, f"{self.name} left {left} behind"

    # -- what a service is doing --------------------------------------------------------

    def container(self, service: str) -> str:
        ids = self.run("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(docker("inspect", self.container(service)).stdout)[0]

    def logs(self, service: str) -> str:
        """The service's output as it wrote it (`docker compose logs` adds terminal codes)."""
        result = docker("logs", self.container(service), check=False)
        return result.stdout + result.stderr

    def exec(self, service: str, *command: str) -> str:
        return self.run("exec", "-T", service, *command).stdout

    def url(self, service: str, port: int) -> str:
        """The host address of a published port, as http://127.0.0.1:PORT."""
        host_port = self.run("port", service, str(port)).stdout.strip().splitlines()[0]
        return f"http://{host_port}"
