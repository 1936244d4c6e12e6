"""Harness of the Ansible tests: real Debian hosts for ansible/deploy.yml, on this machine.

Each target is a container of the tests' Docker engine (tests/docker/setup.sh) that boots
systemd as PID 1 (privileged, its own cgroup namespace), runs sshd, D-Bus and the firewall of
its flavour, and is reached over real SSH with a key made for the run, at its address on a
network of its own (198.19.x.0/24, the engine's pool). Images come from
tests/ansible/target/Dockerfile on the local debootstrap base (docker/base-image.sh); each is
rebuilt only when its inputs change (label p2pcache.inputs holds their hash).

    with AnsibleLab(workdir) as lab:                # network, fake GitHub API on its gateway
        ufw = lab.add_target("ufw", "ufw")          # container, SSH key, firewall set up
        lab.write_inventory({...})
        run = lab.playbook()                        # ansible-playbook ansible/deploy.yml
        run.recap["ufw"]["changed"]
        lab.ssh(ufw, "systemctl is-active p2pcache")
        lab.can_connect(ufw.ip, 9100)

Everything the lab makes carries the label p2pcache.ansible-lab=<id>; close() removes it
(containers with their volumes, then the network), and a later lab sweeps what a dead test
process left behind.

(No conftest.py here on purpose, as in tests/docker: a second module named `conftest` would
replace tests/conftest.py, and tests/ansible/__init__.py would shadow the `ansible` package.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tests" / "docker"))
sys.path.insert(0, str(REPO / "tests"))
import dockerlab  # noqa: E402  (tests/docker/dockerlab.py: the engine, `docker` helper)
from dockerlab import docker  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402

ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = ANSIBLE_DIR / "deploy.yml"
TARGET_DIR = HERE / "target"
BIN = Path(sys.executable).parent          # ansible-playbook, ansible-lint: the venv's
BASE_IMAGE = os.environ.get("BASE_IMAGE", "p2pcache-base:bookworm")
TARGET_IMAGE = "p2pcache-ansible-target"
NODE_IMAGE = "p2pcache:ansible-test"
FLAVOURS = ("ufw", "firewalld", "iptables", "docker")
LABEL = "p2pcache.ansible-lab"

TOKEN = "ghp_ansibletoken000000000000000000000000000"
FLEET_SECRET = "ansible-fleet-secret-9f2c41d0e8b7a6c5"
NAMESPACE = "p2pcache-tests/ansible"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def missing_prerequisite() -> str | None:
    """Why the Ansible end-to-end tests cannot run here, or None."""
    for tool in ("ansible-playbook", "ansible-vault"):
        if not (BIN / tool).exists():
            return f"no {tool} beside {sys.executable}: pip install -e 'node[test]'"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH: run `bash tests/ansible/setup.sh` as root"
    reason = dockerlab.missing_prerequisite()
    if reason:
        return reason
    if os.geteuid() != 0:
        return "the target containers run privileged: the tests need root"
    return None


def nat_lab_missing() -> list[str]:
    """Why the UPnP host cannot sit behind the NAT lab's router here (empty: it can)."""
    from nat.lab import prerequisites

    reasons = prerequisites()
    try:
        import miniupnpc  # noqa: F401
    except ImportError:
        reasons.append("the miniupnpc Python module is missing (pip install miniupnpc)")
    return reasons


# -- images ---------------------------------------------------------------------------------


def _image_label(tag: str, label: str) -> str | None:
    result = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}',
                    tag, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_base_image() -> str:
    """The debootstrap base of the image build (docker/base-image.sh makes it once)."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run(["bash", "docker/base-image.sh", BASE_IMAGE], cwd=REPO, check=True,
                       env=dockerlab.env(), timeout=600, capture_output=True, text=True)
    return docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).stdout.strip()


def build_target_images() -> dict[str, float]:
    """Every flavour's image, rebuilt only when the Dockerfile, its files or the base image
    changed. Returns the seconds each build took (0 when it was up to date)."""
    digest = hashlib.sha256(ensure_base_image().encode())
    for path in sorted(TARGET_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(TARGET_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    inputs = digest.hexdigest()[:16]
    took = {}
    for flavour in FLAVOURS:
        tag = f"{TARGET_IMAGE}:{flavour}"
        start = time.monotonic()
        if _image_label(tag, "p2pcache.inputs") != inputs:
            docker("build", "--quiet", "--target", flavour,
                   "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                   "--label", f"p2pcache.inputs={inputs}", "-t", tag, str(TARGET_DIR),
                   timeout=900)
        took[flavour] = round(time.monotonic() - start, 1)
    return took


def build_node_image(archive: Path) -> Path:
    """The node's image as `make image` builds it (offline, cached layers), saved to a tar
    for the node role's p2pcache_image_archive."""
    subprocess.run(["bash", "docker/build-image.sh"], cwd=REPO, check=True, timeout=900,
                   capture_output=True, text=True,
                   env=dockerlab.env({"IMAGE": NODE_IMAGE, "BASE_IMAGE": BASE_IMAGE}))
    docker("save", "--output", str(archive), NODE_IMAGE, timeout=300)
    return archive


def build_wheelhouse(directory: Path) -> Path:
    """The wheelhouse of the node role's p2pcache_wheelhouse, by ansible/wheelhouse.sh."""
    subprocess.run(["bash", str(ANSIBLE_DIR / "wheelhouse.sh"), str(directory)], cwd=REPO,
                   check=True, timeout=600, capture_output=True, text=True)
    return directory


# -- the lab ---------------------------------------------------------------------------------


@dataclass
class Target:
    """One host of the inventory: a container booted into systemd."""
    name: str
    flavour: str
    container: str
    ip: str = ""
    hostvars: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit status, output, and the PLAY RECAP per host."""
    args: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        return {m.group(1): dict(zip(keys, map(int, m.groups()[1:])))
                for m in RECAP.finditer(self.output)}

    def changed_tasks(self) -> list[str]:
        """`changed: [host]` lines with the task each one belongs to, to explain a failure."""
        task, out = "", []
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                task = line
            elif line.startswith("changed: ["):
                out.append(f"{task}\n    {line[:200]}")
        return out

    def explain(self) -> str:
        return (f"ansible-playbook {' '.join(self.args)} exited {self.returncode} "
                f"in {self.seconds:.0f} s; recap {self.recap}\n"
                + "\n".join(self.changed_tasks()) + "\n--- output (tail) ---\n"
                + self.output[-12000:])


class AnsibleLab:
    """Targets on a Docker network of their own, the fake GitHub API on its gateway, an SSH
    key, an inventory, and ansible-playbook runs against them."""

    def __init__(self, workdir: Path) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.workdir = workdir
        self.network = f"p2pcache-ansible-{self.id}"
        self.targets: dict[str, Target] = {}
        self.key = workdir / "id_ed25519"
        self.inventory = workdir / "inventory.ini"
        self.gateway = ""
        self.fake: FakeGitHub | None = None
        self.runs: list[PlaybookRun] = []
        self.timings: dict[str, Any] = {}
        self.installed_by_check: list[str] = []
        self.secret_args: list[str] = []
        self.secret_env: dict[str, str] = {}

    def __enter__(self) -> "AnsibleLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "AnsibleLab":
        sweep_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "p2pcache-ansible-test", "-f", str(self.key)], check=True)
        docker("network", "create", "--label", f"{LABEL}={self.id}",
               "--label", f"{LABEL}.pid={os.getpid()}", self.network)
        info = json.loads(docker("network", "inspect", self.network).stdout)[0]
        self.gateway = info["IPAM"]["Config"][0]["Gateway"]
        # The targets' GitHub: on this machine, at the address they route to.
        self.fake = FakeGitHub(self.gateway, 0, tokens=[TOKEN], rate_limit=5000).start()
        return self

    def close(self) -> None:
        """Remove every container (with its volumes) and the network; stop the fake."""
        errors = []
        for target in self.targets.values():
            result = docker("rm", "--force", "--volumes", target.container, check=False,
                            timeout=120)
            if result.returncode != 0 and "No such container" not in result.stderr:
                errors.append(result.stderr.strip())
        result = docker("network", "rm", self.network, check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            errors.append(result.stderr.strip())
        if self.fake is not None:
            self.fake.stop()
        left = docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}={self.id}").stdout
        assert not errors and not left.strip(), f"teardown left {left.split()}: {errors}"

    # -- targets ----------------------------------------------------------------------------

    def add_target(self, name: str, flavour: str, **hostvars: Any) -> Target:
        """Start a container of `flavour` and wait for it to boot; no SSH yet."""
        container = f"{self.network}-{name}"
        volumes = ["--volume", "/var/lib/docker"] if flavour == "docker" else []
        docker("run", "--detach", "--name", container, "--hostname", name,
               "--network", self.network, "--privileged", "--cgroupns=private",
               "--tmpfs", "/run", "--tmpfs", "/run/lock", *volumes,
               "--label", f"{LABEL}={self.id}", "--label", f"{LABEL}.pid={os.getpid()}",
               f"{TARGET_IMAGE}:{flavour}")
        target = Target(name, flavour, container, hostvars=dict(hostvars))
        self.targets[name] = target
        return target

    def prepare(self, target: Target, timeout: float = 90) -> None:
        """Wait for systemd, let our key in, and give the host the firewall a cautious admin
        would have before the play: SSH allowed, every other inbound port closed."""
        self.wait_booted(target, timeout)
        target.ip = json.loads(docker("inspect", target.container).stdout)[0][
            "NetworkSettings"]["Networks"][self.network]["IPAddress"]
        pub = self.key.with_suffix(".pub").read_text()
        self.exec(target, "sh", "-c", "cat > /root/.ssh/authorized_keys && "
                  "chmod 600 /root/.ssh/authorized_keys", input=pub)
        if target.flavour == "ufw":
            self.exec(target, "sh", "-c", "ufw default deny incoming && ufw allow 22/tcp && "
                      "ufw --force enable")
        elif target.flavour == "firewalld":
            assert self.exec(target, "firewall-cmd", "--state").strip() == "running"
        else:  # iptables, docker: netfilter-persistent loaded rules.v4 / rules.v6 at boot
            assert "-P INPUT DROP" in self.exec(target, "iptables", "-S", "INPUT")

    def wait_booted(self, target: Target, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = docker("exec", target.container, "systemctl", "is-system-running",
                            check=False)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = self.exec(target, "systemctl", "--failed", "--no-legend")
                    raise AssertionError(f"{target.name} booted degraded:\n{failed}")
                return
            time.sleep(0.5)
        raise AssertionError(f"{target.name} did not boot in {timeout} s (state {state!r}):\n"
                             + docker("logs", target.container, check=False).stdout[-2000:])

    def exec(self, target: Target, *argv: str, input: str | None = None,
             check: bool = True, timeout: float = 120) -> str:
        """Run a command in the target as root (docker exec: the tests' back door, not
        the play's way in)."""
        result = subprocess.run(["docker", "exec", "-i", target.container, *argv],
                                env=dockerlab.env(), input=input, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {target.name} exited "
                                 f"{result.returncode}:\n{result.stdout}{result.stderr}")
        return result.stdout

    def ssh_argv(self, target: Target) -> list[str]:
        return ["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                f"root@{target.ip}"]

    def ssh(self, target: Target, command: str, *, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A new SSH connection (no multiplexing) that runs `command` on the target."""
        result = subprocess.run([*self.ssh_argv(target), command], capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ssh {target.name} {command!r} exited {result.returncode}:"
                                 f"\n{result.stdout}{result.stderr}")
        return result

    def attach_to_lan(self, target: Target, nat: Any, ip: str) -> None:
        """Put the target on the NAT lab's LAN (tests/nat/lab.py) as a host behind the
        router: a veth from the lab's LAN switch into the container, `ip`/24 on it, and the
        default route via the router (192.0.2.1), as on a home network. Its SSH address on
        the Docker network stays on-link, so the play still reaches it."""
        from nat.lab import LAN_GATEWAY

        pid = docker("inspect", "--format", "{{.State.Pid}}", target.container).stdout.strip()
        port = f"d{ip.rsplit('.', 1)[1]}"
        switch = nat.switch.ns
        for argv in (["link", "add", port, "type", "veth", "peer", "name", "lan0", "netns", pid],
                     ["link", "set", port, "master", "brlan"], ["link", "set", port, "up"]):
            subprocess.run(["ip", "-n", switch, *argv], check=True, capture_output=True)
        self.exec(target, "sh", "-c", f"ip addr add {ip}/24 dev lan0 && ip link set lan0 up && "
                  f"ip route replace default via {LAN_GATEWAY} dev lan0")

    def restart(self, target: Target, timeout: float = 90) -> None:
        """A reboot: the container stops (systemd shuts down) and boots again."""
        docker("restart", "--time", "30", target.container, timeout=120)
        self.wait_booted(target, timeout)

    # -- ansible ----------------------------------------------------------------------------

    def write_inventory(self, group_vars: dict[str, Any]) -> Path:
        """An INI inventory: the targets in p2pcache_servers, at their IPs, over SSH."""
        lines = ["[p2pcache_servers]"]
        for target in self.targets.values():
            extra = " ".join(f"{k}={_ini(v)}" for k, v in target.hostvars.items())
            lines.append(f"{target.name} ansible_host={target.ip} {extra}".rstrip())
        lines += ["", "[p2pcache_servers:vars]",
                  "ansible_user=root",
                  f"ansible_ssh_private_key_file={self.key}",
                  "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
                  "-o UserKnownHostsFile=/dev/null'",
                  "ansible_python_interpreter=/usr/bin/python3"]
        lines += [f"{k}={_ini(v)}" for k, v in group_vars.items()]
        self.inventory.write_text("\n".join(lines) + "\n")
        return self.inventory

    def vault(self, variables: dict[str, str]) -> list[str]:
        """A vars file encrypted with ansible-vault; returns the playbook arguments."""
        password = self.workdir / "vault-password"
        password.write_text(uuid.uuid4().hex + "\n")
        password.chmod(0o600)
        secrets = self.workdir / "vault.yml"
        secrets.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in variables.items()))
        subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file",
                        str(password), str(secrets)], check=True, capture_output=True,
                       env=self.ansible_env())
        assert "$ANSIBLE_VAULT" in secrets.read_text()
        return ["--vault-password-file", str(password), "--extra-vars", f"@{secrets}"]

    def ansible_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of an ansible command: the project's ansible.cfg, a private
        home and SSH control directory, the venv first on PATH, and none of the caller's
        secrets."""
        home = self.workdir / "ansible-home"
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra or {})
        return env

    def playbook(self, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 600) -> PlaybookRun:
        """ansible-playbook -i <inventory> ansible/deploy.yml ARGS, from the repository root
        as README says to run it."""
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(PLAYBOOK), *args]
        start = time.monotonic()
        result = subprocess.run(argv, cwd=REPO, env=self.ansible_env(env), capture_output=True,
                                text=True, timeout=timeout)
        run = PlaybookRun(list(args), result.returncode, result.stdout + result.stderr,
                          time.monotonic() - start)
        self.runs.append(run)
        (self.workdir / f"run-{len(self.runs)}.log").write_text(run.output)
        return run

    # -- from outside -------------------------------------------------------------------------

    @staticmethod
    def can_connect(ip: str, port: int, timeout: float = 2.0) -> bool:
        """A TCP connection from this machine (outside the target) gets through."""
        try:
            with socket.create_connection((ip, port), timeout=timeout):
                return True
        except OSError:
            return False

    def can_connect_from(self, source: Target, ip: str, port: int) -> bool:
        """A TCP connection from another target (another source address) gets through."""
        code = ("import socket, sys\n"
                "try:\n"
                f"    socket.create_connection(({ip!r}, {port}), timeout=2).close()\n"
                "except OSError:\n"
                "    sys.exit(1)\n")
        result = subprocess.run(["docker", "exec", source.container, "python3", "-c", code],
                                env=dockerlab.env(), capture_output=True, timeout=30)
        return result.returncode == 0


def _ini(value: Any) -> str:
    """A value for an INI inventory line (JSON for lists and dicts, which Ansible parses)."""
    if isinstance(value, (list, dict, bool)):
        text = json.dumps(value)
        return f"'{text}'" if " " in text else text
    return str(value)


def sweep_stale() -> list[str]:
    """Remove containers and networks of labs whose test process is gone."""
    removed = []
    for kind in ("container", "network"):
        listing = docker(kind, "ls", *(["--all"] if kind == "container" else []),
                         "--filter", f"label={LABEL}.pid",
                         "--format", f'{{{{.ID}}}} {{{{.Label "{LABEL}.pid"}}}}',
                         check=False).stdout
        for line in listing.splitlines():
            ident, _, pid = line.partition(" ")
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                args = ["rm", "--force", "--volumes", ident] if kind == "container" \
                    else ["network", "rm", ident]
                if docker(*args, check=False, timeout=120).returncode == 0:
                    removed.append(ident)
    return removed
