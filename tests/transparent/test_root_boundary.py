"""Transparent mode without giving jobs root (README), attacked from the job (issue 21).

The container (runnerlab.py) plays a self-hosted runner whose job user `selfhosted` (uid
1001) has no sudo but README's sudoers rule, installed as README writes it. The job gets
transparent mode through that rule, then does what a hostile job can: a PYTHONPATH with a
sitecustomize.py, a workspace holding p2pcache/__init__.py as the working directory, a data
directory inside the trust store's, --intercept / --upstream / GITHUB_API_URL pointing
elsewhere, GITHUB_ENV naming a root-only file (and a symlink to one), a request to root's
side written by hand, its state directory swapped for a symlink (renameat2
RENAME_EXCHANGE) while root works, a PID file naming someone else's process, and a
"reboot" (the node, the guardian and /run's records gone while /etc keeps the changes).
After each, the machine is as before: /etc/hosts and the trust store byte for byte, nothing
of the job's in root's places, nothing run as root from the job's files.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[0]))
import runnerlab  # noqa: E402
from conftest import require  # noqa: E402  (tests/conftest.py)
from runnerlab import (DIRECT, REPO, SELFHOSTED, TOKEN, VENV, Runner, differences,  # noqa: E402
                       fake_stats, parse_env_file, start_github, system_state)

pytestmark = pytest.mark.timeout(900)

HOME = f"/home/{SELFHOSTED}"
TEMP = f"{HOME}/work/_temp"
STATE = f"{TEMP}/p2pcache"
WORKSPACE = f"{HOME}/work/repo"
EVIL = f"{HOME}/evil"
ROOT_ENTRY = "/opt/p2pcache/bin/p2pcache-root"
NODE_ARGS = "--port 9010 --http 127.0.0.1:9190"
START = f"{VENV}/p2pcache actions start --transparent {NODE_ARGS} --wait 1"
SUMMARY = f"{VENV}/p2pcache actions summary {NODE_ARGS}"
RULE_FILE = "/etc/sudoers.d/p2pcache-transparent"
ROOT_ONLY = "/etc/p2pcache-root-only"
# Each payload leaves a file named for the uid it ran as: the job's (1001) shows it is live.
PAYLOAD = ("import os\nopen('/tmp/ran-as-%d-{what}' % os.geteuid(), 'a').close()\n")
SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop, out = (arg.encode() for arg in sys.argv[1:5])
n, deadline = 0, time.monotonic() + 120
while not os.path.exists(stop) and time.monotonic() < deadline:
    n += libc.renameat2(-100, a, -100, b, 2) == 0  # AT_FDCWD, RENAME_EXCHANGE
open(out, "w").write(str(n))
"""


def readme_rule() -> str:
    """The sudoers text of README's "Transparent mode without giving jobs root", as is."""
    section = (REPO / "README.md").read_text().split(
        "### Transparent mode without giving jobs root", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sudoers\n(.*?)```", section, re.S)
    assert found, "README's section has no ```sudoers block"
    return found.group(1)


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Runner:
    reason = runnerlab.missing_prerequisite()
    require(reason is None, reason or "")
    runnerlab.build_images()
    box = Runner()
    try:
        start_github(box, tmp_path_factory.mktemp("certs"))
        rule = base64.b64encode(readme_rule().encode()).decode()
        box.exec(f"echo {rule} | base64 -d >{RULE_FILE} && chmod 0440 {RULE_FILE} && "
                 f"visudo -cf {RULE_FILE} && groupadd --system p2pcache-transparent && "
                 f"usermod -aG p2pcache-transparent {SELFHOSTED}")
        box.exec(f"mkdir -p {TEMP} {EVIL} {WORKSPACE}/p2pcache", user=SELFHOSTED)
        write(box, f"{EVIL}/sitecustomize.py", PAYLOAD.format(what="sitecustomize"))
        write(box, f"{WORKSPACE}/p2pcache/__init__.py", PAYLOAD.format(what="workspace"))
        write(box, f"{HOME}/swap.py", SWAPPER)
        box.exec(f"umask 077 && echo root-only >{ROOT_ONLY}")
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def before(box) -> dict:
    return system_state(box)


def write(box: Runner, path: str, text: str) -> None:
    """A file of the job's, as the job writes it."""
    data = base64.b64encode(text.encode()).decode()
    box.exec(f"echo {data} | base64 -d >{path}", user=SELFHOSTED)


def job_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"GITHUB_ENV": f"{TEMP}/github_env", "GITHUB_OUTPUT": f"{TEMP}/github_output",
           "GITHUB_STEP_SUMMARY": f"{TEMP}/summary.md", "RUNNER_TEMP": TEMP,
           "GITHUB_ACTIONS": "true", "GH_TOKEN": TOKEN, "P2P_CACHE_LISTEN_HOST": "127.0.0.1"}
    env.update(extra or {})
    return env


def as_job(box: Runner, command: str, env: dict[str, str] | None = None,
           workdir: str | None = None, timeout: float = 120):
    box.exec(f"rm -f {TEMP}/github_env {TEMP}/github_output && touch {TEMP}/github_env "
             f"{TEMP}/github_output", user=SELFHOSTED)
    return box.exec(command, user=SELFHOSTED, env=env or job_env(), check=False,
                    timeout=timeout, workdir=workdir)


def summary(box: Runner, before: dict) -> str:
    done = box.exec(SUMMARY, user=SELFHOSTED, env=job_env(), check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not differences(before, system_state(box))
    assert box.exec("curl -s -o /dev/null http://127.0.0.1:9190/-/healthz", check=False
                    ).returncode != 0, "summary left the node running"
    return done.stdout


def ran_as_root(box: Runner) -> list[str]:
    return box.exec("ls /tmp | grep '^ran-as-0-' || true").stdout.split()


def owned_by_the_job(box: Runner, *where: str) -> list[str]:
    return box.exec(f"find {' '.join(where)} -uid 1001 2>/dev/null || true").stdout.split()


def test_the_readme_rule_is_all_the_job_may_do_as_root(box):
    assert "p2pcache-root actions start --transparent *" in readme_rule()
    assert box.exec("sudo -n true", user=SELFHOSTED, check=False).returncode != 0
    allowed = box.exec("sudo -n -l", user=SELFHOSTED, check=False).stdout
    commands = [line.strip() for line in allowed.split("may run the following", 1)[-1]
                .splitlines() if line.strip().startswith(("(", "/"))]
    assert commands and all(ROOT_ENTRY in line for line in commands), allowed
    # what the rule names is root's own: a file of its own, isolated Python
    entry = box.exec(f"stat -c '%U %a' {ROOT_ENTRY} && head -1 {ROOT_ENTRY}").stdout
    assert entry.splitlines() == ["root 755", "#!/opt/p2pcache/bin/python -I"], entry


def test_transparent_mode_through_the_rule_and_nothing_of_the_job_runs_as_root(box, before):
    """PYTHONPATH with a sitecustomize.py, the working directory holding p2pcache/, an
    upstream and a GITHUB_API_URL of the job's: transparent mode works, root's own calls
    to api.github.com reach GitHub through the node, and no payload ran as root."""
    env = job_env({"PYTHONPATH": EVIL, "GITHUB_API_URL": "https://evil.example"})
    started = as_job(box, f"{START} --upstream https://evil.example", env=env,
                     workdir=WORKSPACE)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "✓ Transparent mode: https://api.github.com goes through the node" in started.stdout
    assert "--upstream is root's choice in transparent mode" in started.stdout
    assert TOKEN not in started.stdout + started.stderr
    exported = parse_env_file(box.read(f"{TEMP}/github_env"))
    assert exported["P2P_CACHE_TRANSPARENT"] == "api.github.com"
    assert box.exec(f"stat -c %u {TEMP}/github_env").stdout.strip() == "1001"
    # root's own curl, with nothing of the job's: through the node, to "GitHub" itself
    seen = fake_stats(box)["by_path"].get("/repos/boundary/root", 0)
    head = box.exec(f"curl -sS -D - -o /dev/null -H 'authorization: Bearer {TOKEN}' "
                    "https://api.github.com/repos/boundary/root | tr -d '\\r'").stdout
    assert head.startswith("HTTP/1.1 200") and "x-p2p-cache: miss" in head.lower(), head
    assert fake_stats(box)["by_path"]["/repos/boundary/root"] == seen + 1
    # the node runs as the job's user, with root's upstream and nothing of PYTHONPATH
    pid = box.read(f"{STATE}/p2pcache-node.pid").split()[0]
    node_env = box.exec(f"tr '\\0' '\\n' </proc/{pid}/environ", user=SELFHOSTED
                        ).stdout.splitlines()
    assert "GITHUB_API_URL=https://api.github.com" in node_env
    assert not [v for v in node_env if v.startswith("PYTHON")], node_env
    assert box.exec(f"stat -c %u /proc/{pid}").stdout.strip() == "1001"
    assert not owned_by_the_job(box, "/usr/local/share/ca-certificates", "/etc/ssl/certs")
    summary(box, before)
    # the payloads were live (they ran as the job's user), and never as root
    box.exec(f"cd {WORKSPACE} && python3 -c 'import p2pcache'", user=SELFHOSTED)
    ran = box.exec("ls /tmp").stdout.split()
    assert {"ran-as-1001-sitecustomize", "ran-as-1001-workspace"} <= set(ran), ran
    assert not ran_as_root(box)


def test_root_takes_from_a_hand_written_request_only_what_its_allowlist_names(box, before):
    """The job can skip its side and write root's request itself."""
    request = {"version": 1, "state": STATE, "files": {"GITHUB_ENV": f"{TEMP}/github_env",
                                                       "GITHUB_PATH": f"{TEMP}/github_path"},
               "env": {"GH_TOKEN": TOKEN, "P2P_CACHE_LISTEN_HOST": "127.0.0.1",
                       "GITHUB_API_URL": "https://evil.example", "PYTHONPATH": EVIL,
                       "LD_PRELOAD": f"{EVIL}/x.so", "P2P_CACHE_LEND_TOKEN": "1",
                       "P2P_CACHE_UPSTREAM_CA_BUNDLE": f"{EVIL}/ca.pem",
                       "P2P_CACHE_HTTPS": "0.0.0.0:8443"}}
    text = base64.b64encode(json.dumps(request).encode()).decode()
    box.exec(f"mkdir -p -m 700 {STATE}", user=SELFHOSTED)
    started = as_job(box, f"echo {text} | base64 -d | sudo -n {ROOT_ENTRY} actions start "
                     f"--transparent {NODE_ARGS} --wait 1", workdir=WORKSPACE)
    assert started.returncode == 0, started.stdout + started.stderr
    dropped = next(line for line in started.stdout.splitlines() if "Not taken" in line)
    for name in ("GITHUB_API_URL", "PYTHONPATH", "LD_PRELOAD", "P2P_CACHE_LEND_TOKEN",
                 "P2P_CACHE_UPSTREAM_CA_BUNDLE", "P2P_CACHE_HTTPS", "GITHUB_PATH"):
        assert name in dropped, dropped
    pid = box.read(f"{STATE}/p2pcache-node.pid").split()[0]
    node_env = dict(line.split("=", 1) for line in box.exec(
        f"tr '\\0' '\\n' </proc/{pid}/environ", user=SELFHOSTED).stdout.splitlines()
        if "=" in line)
    assert node_env["GITHUB_API_URL"] == "https://api.github.com"
    assert node_env["P2P_CACHE_UPSTREAM_CA_BUNDLE"] == "/opt/fake/public-root.pem"
    assert node_env["P2P_CACHE_HTTPS"].startswith("fd:")
    assert not {"PYTHONPATH", "LD_PRELOAD", "P2P_CACHE_LEND_TOKEN"} & set(node_env)
    summary(box, before)
    # root's side refuses options beyond its allowlist, and a request that is not one
    refused = as_job(box, f"echo '{{}}' | sudo -n {ROOT_ENTRY} actions start --transparent "
                     f"{NODE_ARGS} --data-dir /usr/local/share/ca-certificates/x")
    assert refused.returncode == 2 and "--data-dir" in refused.stderr, refused.stderr
    garbage = as_job(box, f"head -c 100000 /dev/zero | sudo -n {ROOT_ENTRY} actions start "
                     f"--transparent {NODE_ARGS}")
    assert garbage.returncode == 2 and "over 65536 bytes" in garbage.stderr, garbage.stderr
    assert not differences(before, system_state(box))
    assert not ran_as_root(box)


def test_a_data_dir_in_the_trust_store_is_the_job_users_problem_not_roots(box, before):
    target = "/usr/local/share/ca-certificates/zz"
    started = as_job(box, START, env=job_env({"P2P_CACHE_DATA_DIR": target}))
    assert started.returncode == 1, started.stdout + started.stderr  # the node cannot make it
    assert "cannot create it (Permission denied)" in started.stdout + started.stderr
    assert box.exec(f"test -e {target}", check=False).returncode != 0
    summary(box, before)
    assert not owned_by_the_job(box, "/usr/local/share/ca-certificates", "/etc/ssl/certs")


def test_the_intercepted_host_is_roots_choice(box, before):
    started = as_job(box, f"{START} --intercept www.example.org")
    assert started.returncode == 0, started.stdout + started.stderr
    assert ("⚠️  Transparent mode is off: this runner captures only api.github.com "
            "(/etc/p2pcache/transparent.conf), not www.example.org") in started.stdout
    assert "www.example.org" not in box.read("/etc/hosts")
    assert parse_env_file(box.read(f"{TEMP}/github_output"))["transparent"] == "false"
    summary(box, before)


def test_root_writes_no_file_the_job_does_not_own(box, before):
    """GITHUB_ENV naming a root-only file, directly or through a symlink: refused before
    anything starts, the file unchanged."""
    original = box.sha256(ROOT_ONLY)
    box.exec(f"ln -sfn {ROOT_ONLY} {TEMP}/env-link", user=SELFHOSTED)
    for target in (ROOT_ONLY, f"{TEMP}/env-link"):
        started = as_job(box, START, env=job_env({"GITHUB_ENV": target}))
        assert started.returncode == 1, started.stdout + started.stderr
        assert "refusing to write it" in started.stderr, started.stderr
        assert box.sha256(ROOT_ONLY) == original
        assert not differences(before, system_state(box))
    # a hand-written request naming the symlink itself (the job's side resolves it)
    request = {"version": 1, "state": STATE, "files": {"GITHUB_ENV": f"{TEMP}/env-link"},
               "env": {"P2P_CACHE_LISTEN_HOST": "127.0.0.1"}}
    text = base64.b64encode(json.dumps(request).encode()).decode()
    started = as_job(box, f"echo {text} | base64 -d | sudo -n {ROOT_ENTRY} actions start "
                     f"--transparent {NODE_ARGS} --wait 1")
    assert started.returncode == 1 and "a symlink" in started.stderr, started.stderr
    assert box.sha256(ROOT_ONLY) == original
    assert box.exec("curl -s http://127.0.0.1:9190/-/healthz", check=False).returncode != 0
    assert not differences(before, system_state(box))


def test_the_state_directory_swapped_for_a_symlink_while_root_works(box, before):
    """Finding 2: a process of the job exchanges its state directory with a symlink to the
    trust store's directory as fast as it can, while root's side starts (by hand-written
    requests, so the job's own checks are out of the way). Root writes nothing there."""
    request = {"version": 1, "state": STATE, "env": {"P2P_CACHE_LISTEN_HOST": "127.0.0.1"}}
    text = base64.b64encode(json.dumps(request).encode()).decode()
    swaps = 0
    for _ in range(2):
        box.exec(f"rm -rf {STATE} {STATE}.swap {HOME}/stop {HOME}/swaps && "
                 f"mkdir -m 700 {STATE} && ln -s /usr/local/share/ca-certificates {STATE}.swap",
                 user=SELFHOSTED)
        box.exec(f"python3 {HOME}/swap.py {STATE} {STATE}.swap {HOME}/stop {HOME}/swaps",
                 user=SELFHOSTED, detach=True)
        time.sleep(0.3)
        as_job(box, f"echo {text} | base64 -d | sudo -n {ROOT_ENTRY} actions start "
               f"--transparent {NODE_ARGS} --wait 1")
        box.exec(f"touch {HOME}/stop", user=SELFHOSTED)
        deadline = time.monotonic() + 10
        while box.exec(f"test -s {HOME}/swaps", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the swapper did not finish"
            time.sleep(0.1)
        swaps += int(box.read(f"{HOME}/swaps"))
        assert not owned_by_the_job(box, "/usr/local/share/ca-certificates", "/etc/ssl/certs")
        box.exec(f"test -L {STATE} && rm {STATE} && mv {STATE}.swap {STATE} || true",
                 user=SELFHOSTED)
        summary(box, before)
    assert swaps > 300, f"the race ran only {swaps} exchanges"
    assert box.exec("ls /usr/local/share/ca-certificates").stdout.split() == \
        ["test-public-root.crt"]


def test_summary_signals_only_the_node_root_recorded(box, before):
    """Finding 9: the PID file is the job's; root's summary goes by its own record."""
    victim = box.exec("bash -c 'exec -a p2pcache-victim sleep 600' >/dev/null 2>&1 & echo $!"
                      ).stdout.strip()
    started_at = box.exec(f"cut -d')' -f2 /proc/{victim}/stat | awk '{{print $20}}'"
                          ).stdout.strip()
    started = as_job(box, START)
    assert started.returncode == 0, started.stdout + started.stderr
    node = box.read(f"{STATE}/p2pcache-node.pid").split()[0]
    box.exec(f"echo '{victim} {started_at}' >{STATE}/p2pcache-node.pid", user=SELFHOSTED)
    summary(box, before)
    assert box.exec(f"kill -0 {victim}", check=False).returncode == 0, "root killed the victim"
    assert box.exec(f"kill -0 {node}", check=False).returncode != 0, "the node still runs"
    box.exec(f"kill {victim}")


def test_after_a_reboot_start_and_summary_put_the_machine_back(box, before):
    """Finding 3: /run (the records) and every process gone, /etc still redirected."""
    def reboot() -> None:
        pids = box.exec("for f in /run/p2pcache-intercept/*.json; do python3 -c 'import json, "
                        "sys; r = json.load(open(sys.argv[1])); print(r[\"guardian_pid\"], "
                        "r[\"node_pid\"])' $f; done").stdout.split()
        assert len(pids) == 2, pids
        box.exec(f"kill -9 {' '.join(pids)}")  # the guardian first: it would clean up
        box.exec("rm -rf /run/p2pcache-intercept")
        assert "p2pcache-intercept" in box.read("/etc/hosts")  # broken, as after a reboot

    first = as_job(box, START)
    assert first.returncode == 0, first.stdout + first.stderr
    reboot()
    second = as_job(box, START)  # the next job's start repairs, then works
    assert second.returncode == 0, second.stdout + second.stderr
    assert "✓ Repaired what an earlier job left behind (a reboot, or a lost /run): " \
           "/etc/hosts: api.github.com no longer redirected" in second.stdout
    assert "✓ Transparent mode: https://api.github.com goes through the node" in second.stdout
    reboot()
    done = summary(box, before)  # and summary repairs, and says so
    assert "/etc/hosts: api.github.com no longer redirected" in done
    assert "trust store: per-job CA for api.github.com removed" in done
    assert box.exec("ls /var/lib/p2pcache/intercept").stdout.split() == []
    answer = box.json("bash /opt/clients/curl.sh repos/boundary/after-reboot",
                      user=SELFHOSTED, env=job_env({"GITHUB_TOKEN": TOKEN}))
    assert answer["status"] == 200 and answer["cache"] == "", answer  # GitHub itself
