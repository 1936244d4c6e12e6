"""terraform/: security groups for AWS, GCP and Azure, and the bootstrap multiaddr output.

AWS runs for real: `terraform init` from the machine's provider mirror, `validate`, the
module's `terraform test` suite, then `apply` of terraform/aws against a local moto_server,
read back with boto3, a second plan that must be empty, and `destroy`. The applies follow the
documented workflow: the port first, then the server nodes' addresses and peer IDs, whose
combined `bootstrap_multiaddrs` must be accepted by the node's own bootstrap parser.

The google and azurerm providers are not on this machine, so for GCP and Azure: `fmt`, a parse
of their HCL held to the AWS module's contract (same shared variables, same multiaddr output),
and their variable validations run in a provider-free copy that holds only variables.tf.

Terraform works on copies in temporary directories: no .terraform/, lock file or state is left
in the repository. Outside CI a missing prerequisite skips with its reason; under CI=true it
fails.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[1]
TERRAFORM = REPO / "terraform"
CLOUDS = ("aws", "gcp", "azure")
PROVIDER_MIRROR = Path(os.environ.get("P2PCACHE_TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"

# The inputs every cloud module shares, held identical (type, default, validation, message).
SHARED_VARIABLES = (
    "port", "webhook_port", "allowed_ipv4_cidrs", "allowed_ipv6_cidrs", "node_public_ip", "peer_id", "nodes"
)
# The multiaddr outputs every cloud module and root configuration has, and the multiaddr module's
# output each one is.
MULTIADDR_OUTPUTS = {
    "bootstrap_multiaddr": "value",
    "bootstrap_multiaddrs": "joined",
    "bootstrap_multiaddr_list": "values",
}
IDENTIFIER_OUTPUTS = {
    "aws": ("security_group_id", "security_group_arn", "ingress_rule_ids", "webhook_rule_ids"),
    "gcp": ("firewall_ids", "firewall_names", "firewall_self_links"),
    "azure": ("network_security_group_id", "network_security_group_name", "security_rule_ids"),
}
# Variables each cloud needs beyond the shared ones (GCP firewall rules take no labels).
CLOUD_VARIABLES = {
    "aws": ("name", "tags", "vpc_id", "allow_all_egress"),
    "gcp": ("name", "project", "network", "target_tags", "priority"),
    "azure": ("name", "tags", "resource_group_name", "location", "priority"),
}

# A real Ed25519 peer ID, made with py-libp2p.
PEER_ID_ED25519 = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
PEER_ID_SECP256K1 = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"

TERRAFORM_TIMEOUT = 180
MOTO_START_TIMEOUT = 30.0


def missing(reason: str) -> NoReturn:
    """A prerequisite is absent: CI must not pass without it; a developer may run the rest."""
    require(False, reason)
    raise AssertionError("unreachable")  # require() fails or skips


def require_module(name: str, install_hint: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"Python module {name} ({install_hint}): {exc}")


def one_line(text: str) -> str:
    """Terraform wraps diagnostics at 78 columns; compare messages with whitespace collapsed."""
    return " ".join(text.split())


# --- running terraform -------------------------------------------------------------------------


@dataclass(frozen=True)
class Terraform:
    binary: str
    env: dict[str, str]

    def run(self, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TERRAFORM_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"terraform {' '.join(args)} in {cwd} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    def init(self, cwd: Path) -> None:
        self.run(cwd, "init", "-input=false", "-no-color")


def _terraform_env(cli_config: Path) -> dict[str, str]:
    # Nothing from the caller's AWS or Terraform setup may leak in: no real credentials, profile,
    # CLI config or data dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """The CLI, configured to install providers from the local mirror only (never the network)."""
    binary = shutil.which("terraform")
    if binary is None:
        missing("terraform CLI not on PATH (the machine image ships Terraform 1.11)")
    version = subprocess.run(
        [binary, "version", "-json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
    )
    found = json.loads(version.stdout)["terraform_version"]
    if tuple(int(part) for part in found.split(".")[:2]) < (1, 9):
        missing(f"terraform {found} is older than the 1.9 the modules require")

    config_dir = tmp_path_factory.mktemp("terraform-cli")
    cli_config = config_dir / "terraform.rc"
    # No `direct` block: with an explicit provider_installation, only the listed methods are tried.
    cli_config.write_text(
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(PROVIDER_MIRROR))}\n"
        f"    include = [{json.dumps(AWS_PROVIDER)}]\n"
        "  }\n"
        "}\n"
    )
    return Terraform(binary=binary, env=_terraform_env(cli_config))


@pytest.fixture(scope="session")
def aws_provider_mirror() -> Path:
    provider = PROVIDER_MIRROR / AWS_PROVIDER
    if not any(provider.glob("*/linux_amd64/terraform-provider-aws_*")):
        missing(f"no hashicorp/aws provider in the filesystem mirror {PROVIDER_MIRROR}")
    return provider


@pytest.fixture(scope="session")
def terraform_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of terraform/ (relative module sources keep working) for init, state and plans."""
    copy = tmp_path_factory.mktemp("terraform-tree") / "terraform"
    shutil.copytree(
        TERRAFORM,
        copy,
        ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*", "*.tfvars"
        ),
    )
    return copy


@pytest.fixture(scope="session")
def aws_module(terraform: Terraform, aws_provider_mirror: Path, terraform_copy: Path) -> Path:
    workdir = terraform_copy / "modules" / "aws"
    terraform.init(workdir)
    return workdir


# --- checks that need no provider --------------------------------------------------------------


def test_fmt_check_recursive(terraform: Terraform) -> None:
    proc = terraform.run(TERRAFORM, "fmt", "-check", "-recursive", "-diff", "-no-color", check=False)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


# --- the HCL contract (python-hcl2) -----------------------------------------------------------


def _label(key: str) -> str:
    return key.strip('"')


def _blocks(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """{label: body} of the top-level blocks of one kind (variable, output, module, ...)."""
    found: dict[str, Any] = {}
    for entry in document.get(kind, []):
        for key, body in entry.items():
            found[_label(key)] = body
    return found


def _resources(document: dict[str, Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for entry in document.get("resource", []):
        for rtype, named in entry.items():
            for name, body in named.items():
                found[(_label(rtype), _label(name))] = body
    return found


def _attributes(body: dict[str, Any]) -> dict[str, Any]:
    """A parsed body without python-hcl2's own markers (__is_block__, __comments__)."""
    return {key: value for key, value in body.items() if not key.startswith("__")}


def _text(value: Any) -> str:
    """A parsed HCL scalar without the quoting or ${} wrapping python-hcl2 may keep."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text.strip('"')


@dataclass(frozen=True)
class Module:
    variables: dict[str, Any]
    outputs: dict[str, Any]
    modules: dict[str, Any]
    resources: dict[tuple[str, str], Any]


@pytest.fixture(scope="session")
def parsed_modules() -> dict[str, Module]:
    hcl2 = require_module("hcl2", "pip install python-hcl2")
    parsed: dict[str, Module] = {}
    for name in (*CLOUDS, "multiaddr"):
        merged: dict[str, list[Any]] = {}
        for path in sorted((TERRAFORM / "modules" / name).glob("*.tf")):
            with path.open() as handle:
                for kind, entries in hcl2.load(handle).items():
                    merged.setdefault(kind, []).extend(entries)
        parsed[name] = Module(
            variables=_blocks(merged, "variable"),
            outputs=_blocks(merged, "output"),
            modules=_blocks(merged, "module"),
            resources=_resources(merged),
        )
    return parsed


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_shared_variables_match_aws(parsed_modules: dict[str, Module], cloud: str) -> None:
    """The AWS module's variables are exercised by terraform test; the others must be the same."""
    aws, other = parsed_modules["aws"], parsed_modules[cloud]
    for name in SHARED_VARIABLES:
        assert name in other.variables, f"{cloud} module lacks variable {name}"
        assert other.variables[name] == aws.variables[name], f"{cloud} variable {name} differs from aws"
    if "tags" in other.variables:
        for attribute in ("type", "default", "nullable"):
            assert other.variables["tags"].get(attribute) == aws.variables["tags"].get(attribute)
    assert _text(other.variables["name"]["type"]) == "string"
    assert _text(other.variables["name"]["default"]) == _text(aws.variables["name"]["default"])


@pytest.mark.parametrize("cloud", CLOUDS)
def test_variables_are_the_documented_set(parsed_modules: dict[str, Module], cloud: str) -> None:
    assert set(parsed_modules[cloud].variables) == {*SHARED_VARIABLES, *CLOUD_VARIABLES[cloud]}


@pytest.mark.parametrize("module", [*CLOUDS, "multiaddr"])
def test_every_variable_typed_and_described(parsed_modules: dict[str, Module], module: str) -> None:
    for name, body in parsed_modules[module].variables.items():
        assert body.get("type"), f"{module}: variable {name} has no type"
        assert len(_text(body.get("description", ""))) > 10, f"{module}: variable {name} is not described"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_value_variable_validated(parsed_modules: dict[str, Module], cloud: str) -> None:
    """Booleans and free-form tag maps have nothing to validate; everything else does."""
    for name, body in parsed_modules[cloud].variables.items():
        if _text(body["type"]) in ("bool", "map(string)"):
            continue
        assert body.get("validation"), f"{cloud}: variable {name} has no validation"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_outputs_identifiers_and_multiaddr(parsed_modules: dict[str, Module], cloud: str) -> None:
    module = parsed_modules[cloud]
    expected = {*IDENTIFIER_OUTPUTS[cloud], *MULTIADDR_OUTPUTS}
    assert expected <= set(module.outputs), f"{cloud} lacks outputs {expected - set(module.outputs)}"
    for name, body in module.outputs.items():
        assert len(_text(body.get("description", ""))) > 10, f"{cloud}: output {name} is not described"
    for name, value in MULTIADDR_OUTPUTS.items():
        assert _text(module.outputs[name]["value"]) == f"module.multiaddr.{value}"
        assert value in parsed_modules["multiaddr"].outputs
    # Every cloud builds the multiaddr the same way, from the same inputs.
    assert module.modules["multiaddr"] == parsed_modules["aws"].modules["multiaddr"]
    assert _text(module.modules["multiaddr"]["source"]) == "../multiaddr"


def test_rules_are_separate_resources_never_inline(parsed_modules: dict[str, Module]) -> None:
    aws = parsed_modules["aws"].resources
    assert not {"ingress", "egress"} & set(aws[("aws_security_group", "this")])
    assert {
        ("aws_vpc_security_group_ingress_rule", "ipv4"),
        ("aws_vpc_security_group_ingress_rule", "ipv6"),
    } <= set(aws)

    azure = parsed_modules["azure"].resources
    assert "security_rule" not in azure[("azurerm_network_security_group", "this")]
    assert ("azurerm_network_security_rule", "this") in azure

    gcp = parsed_modules["gcp"].resources
    firewall = gcp[("google_compute_firewall", "this")]
    assert _text(firewall["target_tags"]) == "var.target_tags"
    assert _text(firewall["direction"]) == "INGRESS"


@pytest.mark.parametrize("module", [*CLOUDS, "multiaddr"])
def test_readme_tables_list_every_input_and_output(parsed_modules: dict[str, Module], module: str) -> None:
    readme = (TERRAFORM / "modules" / module / "README.md").read_text()
    rows = set(re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|", readme, flags=re.MULTILINE))
    documented = {*parsed_modules[module].variables, *parsed_modules[module].outputs}
    assert documented - rows == set(), f"modules/{module}/README.md has no table row for these"
    assert rows - documented == set(), f"modules/{module}/README.md documents names the module lacks"


@pytest.fixture(scope="session")
def parsed_roots() -> dict[str, dict[str, Any]]:
    hcl2 = require_module("hcl2", "pip install python-hcl2")
    roots: dict[str, dict[str, Any]] = {}
    for cloud in CLOUDS:
        merged: dict[str, list[Any]] = {}
        for path in sorted((TERRAFORM / cloud).glob("*.tf")):
            with path.open() as handle:
                for kind, entries in hcl2.load(handle).items():
                    merged.setdefault(kind, []).extend(entries)
        with (TERRAFORM / cloud / "terraform.tfvars.example").open() as handle:
            example = hcl2.load(handle)
        roots[cloud] = {
            "variables": _blocks(merged, "variable"),
            "outputs": _blocks(merged, "output"),
            "modules": _blocks(merged, "module"),
            "example": example,
        }
    return roots


@pytest.mark.parametrize("cloud", CLOUDS)
def test_root_passes_every_module_input_and_exposes_multiaddr(
    parsed_roots: dict[str, dict[str, Any]], parsed_modules: dict[str, Module], cloud: str
) -> None:
    root = parsed_roots[cloud]
    (call,) = root["modules"].values()
    assert _text(call["source"]) == f"../modules/{cloud}"
    passed = set(_attributes(call)) - {"source"}
    # allow_all_egress keeps its default in the AWS root.
    assert passed == set(parsed_modules[cloud].variables) - {"allow_all_egress"}
    for name in SHARED_VARIABLES:
        assert _text(call[name]) == f"var.{name}"
        assert root["variables"][name].get("description")
    for name in MULTIADDR_OUTPUTS:
        assert _text(root["outputs"][name]["value"]) == f"module.p2pcache_node.{name}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_tfvars_example_sets_only_root_variables(parsed_roots: dict[str, dict[str, Any]], cloud: str) -> None:
    root = parsed_roots[cloud]
    assert set(_attributes(root["example"])) <= set(root["variables"])
    required = {name for name, body in root["variables"].items() if "default" not in body}
    assert required <= set(_attributes(root["example"])), "the example must set every required variable"


# --- GCP and Azure variable validation, without their providers --------------------------------

# Values that must pass, including the required ones; each bad case overrides one of them.
GOOD_VALUES = {
    "gcp": {"project": "p2pcache-ci", "network": "default", "target_tags": '["p2pcache"]'},
    "azure": {"resource_group_name": "rg-p2pcache", "location": "westeurope"},
}
SHARED_BAD = [
    ("port", "70000", "port must be a whole number from 1 to 65535 (got 70000)."),
    ("webhook_port", "70000", "webhook_port must be null (no webhooks) or a whole number from 1 to 65535"),
    ("webhook_port", "9100", "other than port (got 9100)."),
    (
        "allowed_ipv4_cidrs",
        '["10.0.0.0/33"]',
        "allowed_ipv4_cidrs must hold IPv4 CIDR blocks in canonical form",
    ),
    (
        "allowed_ipv6_cidrs",
        '["2001:db8::1/32"]',
        "allowed_ipv6_cidrs must hold IPv6 CIDR blocks in canonical form",
    ),
    ("node_public_ip", "203.0.113.10/32", "node_public_ip must be a single IPv4 or IPv6 address"),
    ("peer_id", "12D3KooW", "peer_id must be a base58btc libp2p peer ID"),
    (
        "nodes",
        f'[{{public_ip = "203.0.113.10/32", peer_id = "{PEER_ID_ED25519}"}}]',
        'nodes: each public_ip must be a single IPv4 or IPv6 address without a prefix length, such as '
        '"203.0.113.10" or "2001:db8::10"; got ["203.0.113.10/32"].',
    ),
    (
        "nodes",
        '[{public_ip = "203.0.113.10", peer_id = "12D3KooW"}]',
        "nodes: each peer_id must be a base58btc libp2p peer ID: 12D3KooW... (52 characters, Ed25519), "
        '16Uiu2HA... (53, secp256k1) or Qm... (46, RSA/ECDSA); got ["12D3KooW"].',
    ),
    (
        "nodes",
        f'[{{public_ip = "2001:db8::10", peer_id = "{PEER_ID_ED25519}"}}, '
        f'{{public_ip = "2001:DB8:0::10", peer_id = "{PEER_ID_SECP256K1}"}}]',
        "nodes: each node needs an address of its own (node_public_ip, when set, counts as one more "
        'node); listed more than once: ["2001:db8::10"].',
    ),
]
CLOUD_BAD = {
    "gcp": [
        ("name", "P2PCache", "name must be 1 to 58 lowercase letters"),
        ("project", "p", "project must be a project ID"),
        ("network", " ", "network must name a VPC network"),
        ("target_tags", "[]", "an empty list would open the port on every instance"),
        ("priority", "70000", "priority must be a whole number from 0 to 65535."),
    ],
    "azure": [
        ("name", "-p2pcache", "name must be 1 to 80 letters"),
        ("resource_group_name", "rg-p2pcache.", "resource_group_name must be 1 to 90"),
        ("location", "", "location must name an Azure region"),
        ("priority", "4096", "priority must be a whole number from 100 to 4095"),
    ],
}


@pytest.fixture(scope="session")
def variables_only(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each module's variables.tf alone: a configuration Terraform can plan with no provider."""
    dirs = {}
    for cloud in ("gcp", "azure"):
        workdir = tmp_path_factory.mktemp(f"{cloud}-variables")
        shutil.copy(TERRAFORM / "modules" / cloud / "variables.tf", workdir)
        dirs[cloud] = workdir
    return dirs


def _plan_variables(
    terraform: Terraform, workdir: Path, values: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    args = [f"-var={name}={value}" for name, value in values.items()]
    return terraform.run(workdir, "plan", "-input=false", "-no-color", "-lock=false", *args, check=False)


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_variables_accept_good_values(
    terraform: Terraform, variables_only: dict[str, Path], cloud: str
) -> None:
    values = {
        **GOOD_VALUES[cloud],
        "allowed_ipv6_cidrs": '["2001:db8::/32"]',
        "node_public_ip": "2001:db8::10",
        "peer_id": PEER_ID_ED25519,
        # The same peer at its IPv4 address, another node, and one whose peer ID is not known yet.
        "nodes": (
            f'[{{public_ip = "203.0.113.10", peer_id = "{PEER_ID_ED25519}"}}, '
            f'{{public_ip = "198.51.100.7", peer_id = "{PEER_ID_SECP256K1}"}}, '
            '{public_ip = "198.51.100.8", peer_id = ""}]'
        ),
    }
    proc = _plan_variables(terraform, variables_only[cloud], values)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("cloud", "variable", "value", "message"),
    [(cloud, *case) for cloud in ("gcp", "azure") for case in [*SHARED_BAD, *CLOUD_BAD[cloud]]],
)
def test_variables_reject_bad_values(
    terraform: Terraform, variables_only: dict[str, Path], cloud: str, variable: str, value: str, message: str
) -> None:
    proc = _plan_variables(terraform, variables_only[cloud], {**GOOD_VALUES[cloud], variable: value})
    assert proc.returncode == 1
    error = one_line(proc.stderr)
    assert "Invalid value for variable" in error
    assert message in error
    assert error.count("Invalid value for variable") == 1, "only the bad variable may be rejected"


# --- AWS, for real -----------------------------------------------------------------------------


def test_aws_module_validates(terraform: Terraform, aws_module: Path) -> None:
    proc = terraform.run(aws_module, "validate", "-no-color")
    assert "The configuration is valid." in proc.stdout


def test_aws_module_terraform_test_suite(terraform: Terraform, aws_module: Path) -> None:
    runs = sum(path.read_text().count('\nrun "') for path in (aws_module / "tests").glob("*.tftest.hcl"))
    proc = terraform.run(aws_module, "test", "-no-color")
    assert f"Success! {runs} passed, 0 failed." in proc.stdout, proc.stdout


@dataclass(frozen=True)
class Moto:
    endpoint: str

    def ec2(self) -> Any:
        boto3 = require_module("boto3", "pip install boto3")
        return boto3.client(
            "ec2",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto_server on loopback, as the local EC2 API for terraform and boto3."""
    require_module("moto.server", "pip install 'moto[server]'")
    require_module("boto3", "pip install boto3")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto_server exited {process.returncode}; see {log.name}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"moto_server not up after {MOTO_START_TIMEOUT}s; see {log.name}", pytrace=False
                    )
                time.sleep(0.2)
        yield Moto(endpoint=endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def aws_root(terraform: Terraform, aws_provider_mirror: Path, terraform_copy: Path, moto: Moto) -> Path:
    """terraform/aws pointed at moto by an override file in the copy; the real files stay clean."""
    workdir = terraform_copy / "aws"
    (workdir / "moto_override.tf").write_text(
        'provider "aws" {\n'
        '  access_key                  = "testing"\n'
        '  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n"
        "  skip_requesting_account_id  = true\n"
        "  skip_metadata_api_check     = true\n"
        "  endpoints {\n"
        f"    ec2 = {json.dumps(moto.endpoint)}\n"
        "  }\n"
        "}\n"
    )
    terraform.init(workdir)
    return workdir


def test_aws_root_validates(terraform: Terraform, aws_root: Path) -> None:
    proc = terraform.run(aws_root, "validate", "-no-color")
    assert "The configuration is valid." in proc.stdout


def _fresh_peer_id() -> str:
    """A peer ID as the node makes it, so the validation is proven to accept real ones."""
    ed25519 = require_module("libp2p.crypto.ed25519", "pip install libp2p (a p2pcache dependency)")
    peer = require_module("libp2p.peer.id", "pip install libp2p (a p2pcache dependency)")
    return peer.ID.from_pubkey(ed25519.create_new_key_pair().public_key).to_base58()


def _cidr(rule: dict[str, Any]) -> str:
    return rule.get("CidrIpv4") or rule["CidrIpv6"]


def _ingress_by_cidr(rules: list[dict[str, Any]]) -> dict[str, tuple[str, int, int]]:
    return {_cidr(r): (r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules if not r["IsEgress"]}


def _outputs(terraform: Terraform, workdir: Path) -> dict[str, Any]:
    return {
        name: value["value"]
        for name, value in json.loads(terraform.run(workdir, "output", "-json").stdout).items()
    }


def _apply(terraform: Terraform, workdir: Path, *variables: str) -> str:
    return terraform.run(workdir, "apply", "-auto-approve", "-input=false", "-no-color", *variables).stdout


def test_aws_root_apply_readback_idempotence_destroy(
    terraform: Terraform, aws_root: Path, moto: Moto
) -> None:
    """The README's workflow: open the port, start the nodes, then apply again with their IDs."""
    config = require_module("p2pcache.config", "PYTHONPATH=node/src, or pip install ./node")
    first, second, third = _fresh_peer_id(), _fresh_peer_id(), _fresh_peer_id()
    port_only = [
        "-var=region=us-east-1",
        "-var=name=p2pcache-test",
        '-var=allowed_ipv4_cidrs=["0.0.0.0/0","198.51.100.0/24"]',
        # How unset CI variables arrive: no node is known yet.
        "-var=node_public_ip=",
        "-var=nodes=[]",
    ]
    ec2 = moto.ec2()
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]

    # The group, three ingress rules (two IPv4 CIDRs and ::/0) and two egress rules.
    assert "Resources: 6 added, 0 changed, 0 destroyed." in _apply(terraform, aws_root, *port_only)
    outputs = _outputs(terraform, aws_root)
    # A null output has no raw value: `terraform output -raw ... | gh secret set` fails rather than
    # storing an empty secret.
    assert outputs.get("bootstrap_multiaddrs") is None and outputs.get("bootstrap_multiaddr") is None
    assert outputs["bootstrap_multiaddr_list"] == []
    unset = terraform.run(aws_root, "output", "-raw", "bootstrap_multiaddrs", check=False)
    assert unset.returncode != 0 and unset.stdout == ""

    # Read back: the group, in the default VPC, opening TCP 9100 and nothing else.
    groups = ec2.describe_security_groups(GroupIds=[outputs["security_group_id"]])["SecurityGroups"]
    assert [(g["GroupName"], g["VpcId"]) for g in groups] == [("p2pcache-test", default_vpc)]
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [outputs["security_group_id"]]}]
    )["SecurityGroupRules"]
    assert _ingress_by_cidr(rules) == {
        "0.0.0.0/0": ("tcp", 9100, 9100),
        "198.51.100.0/24": ("tcp", 9100, 9100),
        "::/0": ("tcp", 9100, 9100),
    }
    assert outputs["ingress_rule_ids"] == {
        _cidr(r): r["SecurityGroupRuleId"] for r in rules if not r["IsEgress"]
    }
    egress = {(_cidr(r), r["IpProtocol"]) for r in rules if r["IsEgress"]}
    assert egress == {("0.0.0.0/0", "-1"), ("::/0", "-1")}

    # Two server nodes share the group; their multiaddrs change outputs only, nothing in EC2
    # (-refresh=false saves reading every resource back: the plan below does that).
    nodes = [
        {"public_ip": "203.0.113.10", "peer_id": first},
        {"public_ip": "2001:DB8::20", "peer_id": second},
    ]
    two_nodes = [*port_only[:-1], f"-var=nodes={json.dumps(nodes)}"]
    applied = _apply(terraform, aws_root, "-refresh=false", *two_nodes)
    assert "Resources: 0 added, 0 changed, 0 destroyed." in applied
    expected = [f"/ip4/203.0.113.10/tcp/9100/p2p/{first}", f"/ip6/2001:db8::20/tcp/9100/p2p/{second}"]
    secret = terraform.run(aws_root, "output", "-raw", "bootstrap_multiaddrs").stdout
    assert secret == ",".join(expected)
    outputs = _outputs(terraform, aws_root)
    assert outputs["bootstrap_multiaddr_list"] == expected
    assert outputs["bootstrap_multiaddr"] == expected[0]
    # What Terraform prints is what a runner accepts, read the way the node reads the secret.
    settings = config.load({}, {"MCP_P2P_BOOTSTRAP_PEERS": secret}, need_data_dir=False)
    assert settings.bootstrap_rejected == ()
    assert settings.bootstrap == (
        config.BootstrapPeer(expected[0], first),
        config.BootstrapPeer(expected[1], second),
    )

    # Idempotence: a second plan finds nothing to change (exit 0; 2 would mean a diff).
    plan = terraform.run(
        aws_root, "plan", "-detailed-exitcode", "-input=false", "-no-color", *two_nodes, check=False
    )
    assert plan.returncode == 0, f"second plan is not empty:\n{plan.stdout}{plan.stderr}"

    # The single-node variables of earlier versions still work: one more node, listed first.
    with_single = [*two_nodes, "-var=node_public_ip=198.51.100.7", f"-var=peer_id={third}"]
    applied = _apply(terraform, aws_root, "-refresh=false", *with_single)
    assert "Resources: 0 added, 0 changed, 0 destroyed." in applied
    single = f"/ip4/198.51.100.7/tcp/9100/p2p/{third}"
    outputs = _outputs(terraform, aws_root)
    assert outputs["bootstrap_multiaddr"] == single
    assert outputs["bootstrap_multiaddrs"] == ",".join([single, *expected])
    secret = outputs["bootstrap_multiaddrs"]
    settings = config.load({}, {"MCP_P2P_BOOTSTRAP_PEERS": secret}, need_data_dir=False)
    assert [peer.peer_id for peer in settings.bootstrap] == [third, first, second]

    terraform.run(aws_root, "destroy", "-auto-approve", "-input=false", "-no-color", *with_single)
    assert terraform.run(aws_root, "state", "list").stdout.strip() == ""
    left = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["p2pcache-test"]}])
    assert left["SecurityGroups"] == []
    left_rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [outputs["security_group_id"]]}]
    )
    assert left_rules["SecurityGroupRules"] == []


def test_aws_root_opens_the_webhook_port_only_while_it_is_set(
    terraform: Terraform, aws_root: Path, moto: Moto
) -> None:
    """webhook_port null (the default): only the peer port; set: the same CIDRs on that port
    too, as rules of their own; null again: those rules go, and the peer port's stay as they
    were (same rule IDs)."""
    base = ["-var=region=us-east-1", "-var=name=p2pcache-webhook-test", "-var=nodes=[]"]
    ec2 = moto.ec2()

    def ingress() -> set[tuple[str, int]]:
        group = _outputs(terraform, aws_root)["security_group_id"]
        rules = ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group]}]
        )["SecurityGroupRules"]
        return {(_cidr(r), r["FromPort"]) for r in rules if not r["IsEgress"] and r["FromPort"] == r["ToPort"]}

    _apply(terraform, aws_root, *base)
    assert ingress() == {("0.0.0.0/0", 9100), ("::/0", 9100)}
    peer_rules = _outputs(terraform, aws_root)["ingress_rule_ids"]
    assert _outputs(terraform, aws_root)["webhook_rule_ids"] == {}

    applied = _apply(terraform, aws_root, *base, "-var=webhook_port=9443")
    assert "Resources: 2 added, 0 changed, 0 destroyed." in applied
    assert ingress() == {("0.0.0.0/0", 9100), ("::/0", 9100), ("0.0.0.0/0", 9443), ("::/0", 9443)}
    outputs = _outputs(terraform, aws_root)
    assert set(outputs["webhook_rule_ids"]) == {"0.0.0.0/0", "::/0"}
    assert outputs["ingress_rule_ids"] == peer_rules

    applied = _apply(terraform, aws_root, *base)
    assert "Resources: 0 added, 0 changed, 2 destroyed." in applied
    assert ingress() == {("0.0.0.0/0", 9100), ("::/0", 9100)}
    assert _outputs(terraform, aws_root)["ingress_rule_ids"] == peer_rules

    terraform.run(aws_root, "destroy", "-auto-approve", "-input=false", "-no-color", *base)
    assert terraform.run(aws_root, "state", "list").stdout.strip() == ""


def test_aws_root_plans_with_tfvars_example(terraform: Terraform, aws_root: Path) -> None:
    """The example is ready to use: it plans (in its own region of moto) and opens the port."""
    proc = terraform.run(
        aws_root,
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
        "-var-file=terraform.tfvars.example",
        check=False,
    )
    assert proc.returncode == 2, f"expected a plan with changes:\n{proc.stdout}{proc.stderr}"
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in proc.stdout


def _nodes(*nodes: tuple[str, str]) -> str:
    return "-var=nodes=" + json.dumps([{"public_ip": ip, "peer_id": peer_id} for ip, peer_id in nodes])


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (["-var=port=70000"], "port must be a whole number from 1 to 65535 (got 70000)."),
        (
            ['-var=allowed_ipv4_cidrs=["10.0.0.0/33"]'],
            'allowed_ipv4_cidrs must hold IPv4 CIDR blocks in canonical form, such as "203.0.113.0/24" '
            '(no host bits set, prefix length 0 to 32); got ["10.0.0.0/33"].',
        ),
        (
            [_nodes(("203.0.113.10", PEER_ID_ED25519), ("203.0.113.300", PEER_ID_SECP256K1))],
            'nodes: each public_ip must be a single IPv4 or IPv6 address without a prefix length, '
            'such as "203.0.113.10" or "2001:db8::10"; got ["203.0.113.300"].',
        ),
        (
            # The whole multiaddr pasted where the peer ID goes.
            [_nodes(("203.0.113.10", f"/ip4/203.0.113.10/tcp/9100/p2p/{PEER_ID_ED25519}"))],
            "nodes: each peer_id must be a base58btc libp2p peer ID: 12D3KooW... (52 characters, "
            "Ed25519), 16Uiu2HA... (53, secp256k1) or Qm... (46, RSA/ECDSA); "
            f'got ["/ip4/203.0.113.10/tcp/9100/p2p/{PEER_ID_ED25519}"].',
        ),
        (
            [_nodes(("203.0.113.10", PEER_ID_ED25519), ("203.0.113.10", PEER_ID_ED25519))],
            "nodes: each node needs an address of its own (node_public_ip, when set, counts as one "
            'more node); listed more than once: ["203.0.113.10"].',
        ),
        (
            [
                "-var=node_public_ip=2001:db8::10",
                f"-var=peer_id={PEER_ID_ED25519}",
                _nodes(("2001:DB8:0:0::10", PEER_ID_SECP256K1)),
            ],
            "nodes: each node needs an address of its own (node_public_ip, when set, counts as one "
            'more node); listed more than once: ["2001:db8::10"].',
        ),
        # Terraform's own type check: a node must name both parts, even if only as "".
        (["-var=nodes=[{}]"], 'element 0: attributes "peer_id" and "public_ip" are required.'),
    ],
    ids=[
        "port-70000",
        "cidr-slash-33",
        "node-ip-out-of-range",
        "node-peer-id-a-multiaddr",
        "node-twice",
        "node-repeats-node-public-ip",
        "node-empty-object",
    ],
)
def test_aws_root_bad_input_fails_at_plan(
    terraform: Terraform, aws_root: Path, variables: list[str], message: str
) -> None:
    proc = terraform.run(
        aws_root, "plan", "-input=false", "-no-color", "-var=region=us-east-1", *variables, check=False
    )
    assert proc.returncode == 1
    error = one_line(proc.stderr)
    assert "Invalid value for" in error
    assert message in error, error
    assert error.count("Error:") == 1, "only the bad value may be rejected"
