"""ansible/ as files: ansible-lint (production profile), syntax, tags, and every role variable
documented in its defaults/main.yml and in its README table; the publish role's fleet tasks
on hosts of this machine (local connection). No targets needed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansiblelab import ANSIBLE_DIR, BIN, REPO
from conftest import require  # tests/conftest.py

ROLES = ("firewall", "node", "upnp", "publish")


def ansible(tool: str, *args: str, cwd=REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    require((BIN / tool).exists(),
            f"no {tool} beside the test's Python: pip install -e 'node[test]'")
    env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "NO_COLOR": "1"}
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_ansible_lint_passes_the_production_profile() -> None:
    # --project-dir: ansible/ itself, so that ansible-lint keeps its cache out of the repo root.
    result = ansible("ansible-lint", "--project-dir", ".", "--profile", "production",
                     "--nocolor", cwd=ANSIBLE_DIR)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Profile 'production' was required, and it passed" in output, output[-3000:]


def test_the_playbook_parses() -> None:
    result = ansible("ansible-playbook", "--syntax-check", "-i",
                     str(ANSIBLE_DIR / "inventory.example.ini"), str(ANSIBLE_DIR / "deploy.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_tags_select_one_role(role: str) -> None:
    """`--tags firewall` runs the firewall role alone (and so on): every task listed for
    the tag belongs to that role."""
    result = ansible("ansible-playbook", "--list-tasks", "--tags", role, "-i",
                     str(ANSIBLE_DIR / "inventory.example.ini"), str(ANSIBLE_DIR / "deploy.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = re.findall(r"^\s{6}(\S+) : ", result.stdout, re.M)
    assert tasks, result.stdout
    assert set(tasks) == {role}, result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_every_role_variable_is_documented(role: str) -> None:
    """defaults/main.yml comments each variable; README.md has it in its variables table."""
    defaults_path = ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml"
    text = defaults_path.read_text()
    defaults = yaml.safe_load(text)
    lines = text.splitlines()
    readme = (ANSIBLE_DIR / "roles" / role / "README.md").read_text()
    for name in defaults:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        above = lines[index - 1] if index else ""
        assert above.startswith("#") or lines[index - 2].startswith("#"), \
            f"{role}: {name} has no comment in defaults/main.yml"
        assert re.search(rf"^\| `{name}` \|", readme, re.M), f"{role}: {name} not in README table"


def test_the_docs_name_every_role_and_the_run_command() -> None:
    doc = (REPO / "docs" / "ansible.md").read_text()
    for role in ROLES:
        assert f"roles/{role}" in doc
    assert "ansible-playbook -i ansible/inventory.example.ini ansible/deploy.yml" in doc


FLEET_PLAY = """
- hosts: p2pcache_servers
  gather_facts: false
  tasks:
    - name: What the role's first tasks leave (a node's answer, on the hosts that have one)
      ansible.builtin.set_fact:
        p2pcache_multiaddr: "{{ addresses[inventory_hostname] }}"
        p2pcache_publish_secret_repo: "{{ p2pcache_publish_github_secret | default('') }}"
      when: inventory_hostname in addresses
    - name: A host that fails after it had its address
      ansible.builtin.fail:
      when: inventory_hostname == 'broken'
    - name: The fleet
      ansible.builtin.include_role:
        name: publish
        tasks_from: fleet.yml
"""


def test_the_fleets_list_is_sorted_leaves_out_hosts_without_an_address_and_is_set_once(
        tmp_path: Path) -> None:
    """tasks/fleet.yml with real ansible-playbook on four local hosts: one has no address
    (check mode on a new host), one failed; the list has the other two, sorted by name, and
    names both; of the two hosts asking for the secret, one sets it, once; under --limit
    neither the file nor the secret is touched."""
    peer = "12D3KooWGzvF3Rcu5ysvhAGcHFkqM1ovEiy4o3tGHZzJVyoAfLQa"
    addresses = {"zeta": f"/ip4/198.51.100.3/tcp/9100/p2p/{peer}",
                 "alpha": f"/ip4/198.51.100.1/tcp/9100/p2p/{peer}",
                 "broken": f"/ip4/198.51.100.2/tcp/9100/p2p/{peer}"}
    calls = tmp_path / "calls"
    (tmp_path / "inventory.ini").write_text(
        "[p2pcache_servers]\nzeta p2pcache_publish_github_secret=o/r\nnew\nbroken\n"
        "alpha p2pcache_publish_github_secret=o/r\n[p2pcache_servers:vars]\n"
        "ansible_connection=local\nansible_python_interpreter=" + str(BIN / "python") + "\n")
    (tmp_path / "overrides.yml").write_text(json.dumps({
        "addresses": addresses,
        "p2pcache_publish_fleet_file": str(tmp_path / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS"),
        # Stands in for `p2pcache publish` on the node: records its arguments.
        "p2pcache_publish_command": ["sh", "-c", f'echo "$*" >> {calls}', "p2pcache"]}))
    (tmp_path / "play.yml").write_text(FLEET_PLAY)
    playbook = ("ansible-playbook", "-i", "inventory.ini", "-e", "@overrides.yml", "play.yml")

    run = ansible(*playbook, cwd=tmp_path)
    output = " ".join((run.stdout + run.stderr).split())
    listed = f"{addresses['alpha']},{addresses['zeta']}"
    assert (tmp_path / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS").read_text() == listed + "\n"
    assert calls.read_text().splitlines() == [f"publish --github-secret o/r --multiaddr {listed}"]
    assert f"Bootstrap peers for MCP_P2P_BOOTSTRAP_PEERS (2 servers): {listed} (" in output
    assert "left out, without a multiaddr: broken, new)" in output, output[-3000:]
    assert output.count("Bootstrap peers for") == 1

    (tmp_path / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS").write_text("as before\n")
    limited = ansible(*playbook, "--limit", "zeta", cwd=tmp_path)
    assert limited.returncode == 0, limited.stdout + limited.stderr
    assert "not collected under --limit" in limited.stdout
    assert (tmp_path / "multiaddr" / "MCP_P2P_BOOTSTRAP_PEERS").read_text() == "as before\n"
    assert len(calls.read_text().splitlines()) == 1
