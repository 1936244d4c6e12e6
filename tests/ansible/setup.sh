#!/usr/bin/env bash
# System prerequisites of the Ansible tests (tests/ansible), run as root by tests/setup.sh
# after tests/docker/setup.sh (the Docker engine the target hosts run on) and
# tests/nat/setup.sh (the UPnP router lab). Idempotent, and it never fails `make test` by
# itself: what is missing is reported here, and the tests then fail (CI=true) or skip with
# the reason.
#
# ansible-playbook and ansible-lint come with the project's virtual environment
# (node/pyproject.toml, extra "test"); the target images are built by the tests themselves,
# once, from the local debootstrap base (docker/base-image.sh) and tests/ansible/target/.
set -uo pipefail

say() { echo "tests/ansible/setup.sh: $*"; }

need=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v tar >/dev/null || need+=(tar)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "missing ${need[*]}: install them (the Ansible tests will say so)" >&2
    exit 0
  fi
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" \
    >/dev/null || say "could not install ${need[*]} (the Ansible tests will say so)" >&2
fi
say "ready"
