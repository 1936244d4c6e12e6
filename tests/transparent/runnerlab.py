"""Harness of the transparent-mode tests: a container that plays a GitHub-hosted runner.

Images (the tests' Docker engine, tests/docker/setup.sh):
  - p2pcache-transparent-runner:<inputs> from runner/Dockerfile on the debootstrap base,
    with npm packages and wheels fetched on the host (the container reaches no registry);
    rebuilt only when runner/ or the base image changes (the tag is their hash);
  - p2pcache:transparent-test-<checkout>, the node's image as `make image` builds it (layer
    cache);
  - p2pcache-transparent-runner:test-<checkout>, the two together plus the client scripts,
    the fake, the root entry that runner/install.sh adds to a venv (/opt/p2pcache is the
    root-owned install README's sudoers rule names), and the user `selfhosted` (uid 1001)
    for the tests of that rule (seconds).
<checkout> keeps two checkouts on one engine (worktrees) from rebuilding each other's
images under a running test. The container runs with --network none: everything it talks
to is on its own loopback.

(No conftest.py here, for the reason tests/docker/dockerlab.py gives.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "docker"))
sys.path.insert(0, str(REPO / "tests"))
import dockerlab  # noqa: E402
from dockerlab import docker  # noqa: E402

BASE_IMAGE = os.environ.get("BASE_IMAGE", "p2pcache-base:bookworm")
RUNNER_BASE = "p2pcache-transparent-runner"
CHECKOUT = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
NODE_IMAGE = f"p2pcache:transparent-test-{CHECKOUT}"
TEST_IMAGE = f"p2pcache-transparent-runner:test-{CHECKOUT}"
LABEL = "p2pcache.transparent-lab"
VENV = "/opt/p2pcache/bin"
SELFHOSTED = "selfhosted"  # uid 1001: no sudo but what a test gives it


def missing_prerequisite() -> str | None:
    reason = dockerlab.missing_prerequisite()
    if reason:
        return reason
    if shutil.which("npm") is None:
        return "no npm on the host (the runner's JavaScript clients come from npm): " \
               "run `bash tests/transparent/setup.sh` as root"
    return None


def _base_image_id() -> str:
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run(["bash", "docker/base-image.sh", BASE_IMAGE], cwd=REPO, check=True,
                       env=dockerlab.env(), timeout=900, capture_output=True, text=True)
    return docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).stdout.strip()


def runner_base() -> tuple[str, float]:
    """The runner image (apt, npm, pip parts), built when its inputs changed."""
    digest = hashlib.sha256(_base_image_id().encode())
    for path in sorted((HERE / "runner").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    tag = f"{RUNNER_BASE}:{digest.hexdigest()[:16]}"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag, 0.0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="p2pcache-runner-") as tmp:
        ctx = Path(tmp)
        for path in (HERE / "runner").iterdir():
            shutil.copy(path, ctx / path.name)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                        "--omit=dev", "--loglevel=error"], cwd=ctx, check=True, timeout=600,
                       capture_output=True, text=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                        "--disable-pip-version-check", "--only-binary=:all:",
                        "-r", "requirements.txt", "-d", "wheels"], cwd=ctx, check=True,
                       timeout=600, capture_output=True, text=True)
        docker("build", "--quiet", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag,
               str(ctx), timeout=1200)
    return tag, time.monotonic() - start


_built: dict[str, float] = {}


def build_images() -> dict[str, float]:
    """All three images (once per test run); returns the seconds each part took."""
    if _built:
        return dict(_built)
    took = {}
    base, took["runner_base_s"] = runner_base()
    start = time.monotonic()
    subprocess.run(["bash", "docker/build-image.sh"], cwd=REPO, check=True, timeout=1200,
                   capture_output=True, text=True, env=dockerlab.env({"IMAGE": NODE_IMAGE}))
    took["node_image_s"] = time.monotonic() - start
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="p2pcache-runner-test-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(HERE / "clients", ctx / "clients")
        shutil.copy(HERE / "upstream_tls.py", ctx)
        shutil.copy(REPO / "tests" / "fakegithub.py", ctx)
        shutil.copy(REPO / "runner" / "install.sh", ctx)
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\n"
            f"COPY --from={NODE_IMAGE} /opt/p2pcache /opt/p2pcache\n"
            "COPY install.sh /opt/p2pcache-action/runner/install.sh\n"
            # README's step 1 (the venv is already there: install.sh keeps it, adds the entry)
            "RUN bash /opt/p2pcache-action/runner/install.sh /opt/p2pcache"
            f" && useradd --uid 1001 --create-home --shell /bin/bash {SELFHOSTED}\n"
            "COPY clients/ /opt/clients/\n"
            "COPY upstream_tls.py fakegithub.py /opt/fake/\n")
        docker("build", "--quiet", "-t", TEST_IMAGE, str(ctx), timeout=600)
    took["test_image_s"] = time.monotonic() - start
    _built.update(took)
    return took


RESULTS = REPO / "bench" / "results" / "transparent.json"


def record(**figures: object) -> None:
    """Merge figures into bench/results/transparent.json (read by people, not by tests)."""
    dockerlab.record_into(RESULTS, figures)


class Runner:
    """One runner container; exec() runs a command as root or as the job's user."""

    def __init__(self) -> None:
        self.name = f"p2pcache-transparent-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        listed = docker("ps", "-a", "--filter", f"label={LABEL}", "--format",
                        '{{.ID}} {{.Label "' + LABEL + '"}}').stdout.splitlines()
        for line in listed:  # what a dead test run left behind (not a live run's)
            cid, _, owner = line.partition(" ")
            if not owner.isdigit() or not Path(f"/proc/{owner}").exists():
                docker("rm", "-f", cid, check=False)
        docker("run", "-d", "--init", "--network", "none", "--name", self.name,
               "--label", f"{LABEL}={os.getpid()}", TEST_IMAGE, "sleep", "infinity")

    def exec(self, command: str, user: str = "root", env: dict[str, str] | None = None,
             check: bool = True, timeout: float = 120, detach: bool = False,
             workdir: str | None = None) -> subprocess.CompletedProcess[str]:
        home = f"/home/{user}" if user in ("runner", SELFHOSTED) else "/"
        args = ["exec", "-u", user, "-w", workdir or home]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if detach:
            args.append("-d")
        return docker(*args, self.name, "bash", "-c", command, check=check, timeout=timeout)

    def read(self, path: str) -> str:
        return self.exec(f"cat {path}").stdout

    def sha256(self, *paths: str) -> dict[str, str]:
        out = self.exec("sha256sum " + " ".join(paths)).stdout.split("\n")
        return {line.split()[1]: line.split()[0] for line in out if line.strip()}

    def listing(self, directory: str) -> list[str]:
        """Names and link targets: what update-ca-certificates adds and removes."""
        return self.exec(f"find {directory} -mindepth 1 -printf '%P -> %l\\n' | sort"
                         ).stdout.splitlines()

    def json(self, command: str, **kw: object) -> dict:
        result = self.exec(command, check=False, **kw)  # type: ignore[arg-type]
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"exit {result.returncode}: {result.stdout[-800:]}"
                             f"{result.stderr[-800:]}"}

    def close(self) -> None:
        docker("rm", "-f", self.name, check=False)


# -- the machine's "GitHub" and what transparent mode may change -------------------------

TOKEN = "ghp_transparenttoken000000000000000000000"
# How a test looks at the fake itself, bypassing whatever /etc/hosts says.
DIRECT = "curl -sS --cacert /opt/fake/public-root.pem --resolve api.github.com:443:127.0.0.2"
STATE_FILES = ("/etc/hosts", "/etc/ssl/certs/ca-certificates.crt")


def start_github(box: Runner, certs: Path) -> None:
    """The fake API over HTTPS on 127.0.0.2:443 as api.github.com, its certificate from a
    test public root the system store trusts; a hosts line plays DNS; root's transparent
    configuration names that root (the node verifies "GitHub" with it: certifi does not
    hold it)."""
    from upstream_tls import make_public_root

    make_public_root(certs, "api.github.com")
    for name in ("public-root.pem", "upstream.pem", "upstream.key"):
        docker("cp", str(certs / name), f"{box.name}:/opt/fake/{name}")
    box.exec("cp /opt/fake/public-root.pem /usr/local/share/ca-certificates/test-public-root.crt"
             " && update-ca-certificates >/dev/null && echo '127.0.0.2 api.github.com' >>/etc/hosts"
             " && mkdir -p /etc/p2pcache && printf '%s\\n' 'intercept = api.github.com'"
             " 'upstream = https://api.github.com'"
             " 'upstream_ca_bundle = /opt/fake/public-root.pem' >/etc/p2pcache/transparent.conf")
    box.exec("python3 /opt/fake/upstream_tls.py --host 127.0.0.2 --port 443 "
             "--cert /opt/fake/upstream.pem --key /opt/fake/upstream.key "
             f"--token {TOKEN} >/var/log/fake.log 2>&1", detach=True)
    deadline = time.monotonic() + 30
    while box.exec(f"{DIRECT} -o /dev/null https://api.github.com/_fake/stats",
                   check=False).returncode != 0:
        assert time.monotonic() < deadline, box.read("/var/log/fake.log")
        time.sleep(0.2)


def fake_stats(box: Runner) -> dict:
    return json.loads(box.exec(f"{DIRECT} https://api.github.com/_fake/stats").stdout)


def system_state(box: Runner) -> dict:
    return {"files": box.sha256(*STATE_FILES),
            "local_cas": box.listing("/usr/local/share/ca-certificates"),
            "store": box.listing("/etc/ssl/certs")}


def differences(before: dict, now: dict) -> list[str]:
    out = [f"{path} changed" for path in before["files"]
           if before["files"][path] != now["files"].get(path)]
    for key in ("local_cas", "store"):
        out += [f"{key} lost {x}" for x in sorted(set(before[key]) - set(now[key]))]
        out += [f"{key} gained {x}" for x in sorted(set(now[key]) - set(before[key]))]
    return out


def parse_env_file(text: str) -> dict[str, str]:
    """GITHUB_ENV as the runner reads it: NAME=value lines and NAME<<DELIM heredocs."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values
