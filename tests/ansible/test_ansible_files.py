"""ansible/ as files: ansible-lint (production profile), syntax, tags, and every role variable
documented in its defaults/main.yml and in its README table. No targets needed."""

from __future__ import annotations

import re
import subprocess

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
