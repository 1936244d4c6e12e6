#!/usr/bin/env bash
# System prerequisites of `make test` on a fresh Debian machine (run as root). Idempotent:
# each step checks first, so a prepared machine spends no time here.
set -euo pipefail

need_apt=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v terraform >/dev/null || echo "tests/setup.sh: no terraform CLI on PATH (the Terraform tests will say so)" >&2

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "tests/setup.sh: installing ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
bash "$(dirname "${BASH_SOURCE[0]}")/nat/setup.sh"  # NAT lab: ip, nft, miniupnpd chroot
bash "$(dirname "${BASH_SOURCE[0]}")/docker/setup.sh"  # Docker engine + Compose: tests/docker
bash "$(dirname "${BASH_SOURCE[0]}")/ansible/setup.sh"  # ssh client: tests/ansible
bash "$(dirname "${BASH_SOURCE[0]}")/conformance/setup.sh"  # gh, curl, Node clients: tests/conformance
bash "$(dirname "${BASH_SOURCE[0]}")/transparent/setup.sh"  # npm: tests/transparent
bash "$(dirname "${BASH_SOURCE[0]}")/mcp/setup.sh"  # MCP Inspector (npm): test_mcp_inspector
echo "tests/setup.sh: system prerequisites ready"
