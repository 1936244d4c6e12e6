#!/usr/bin/env bash
# The host side of tests/transparent/ on a fresh Debian machine (run as root): npm, which
# fetches the runner container's JavaScript clients (@actions/github, @octokit/rest) on the
# host, since the container reaches no registry. The Docker engine comes from
# tests/docker/setup.sh. Idempotent; never fails `make test` by itself (the tests say what
# is missing).
set -uo pipefail
command -v npm >/dev/null && exit 0
say() { echo "tests/transparent/setup.sh: $*"; }
[ "$(id -u)" = 0 ] || { say "not root: cannot install npm (the transparent tests will say so)" >&2; exit 0; }
say "installing npm"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
  || say "could not install npm (the transparent tests will say so)" >&2
exit 0
