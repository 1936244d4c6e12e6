#!/usr/bin/env bash
# The real clients the conformance suite drives (tests/conformance), on a fresh Debian machine
# as root. Idempotent and quick when everything is present. The Python clients (PyGithub,
# githubkit) come with the `test` extra of node/pyproject.toml, into the venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v gh >/dev/null || need_apt+=(gh)  # bookworm: 2.23
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
# @octokit/rest 22 needs Node 20; bookworm's nodejs is 18, trixie's is 20.
if [ "$(node_major)" -lt 20 ]; then
  if apt-cache policy nodejs 2>/dev/null | grep -q trixie; then
    trixie_node=1
  else
    need_apt+=(nodejs npm)
  fi
fi
command -v npm >/dev/null || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ] || [ -n "${trixie_node:-}" ]; then
  echo "tests/conformance/setup.sh: installing ${need_apt[*]} ${trixie_node:+nodejs (trixie)}"
  apt-get update -qq
  [ ${#need_apt[@]} -eq 0 ] || apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ -z "${trixie_node:-}" ] || apt-get install -y -qq -t trixie nodejs npm >/dev/null
fi

# @octokit/rest and @actions/github, exactly as locked; skipped while the lock is unchanged.
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$here/node_modules/.installed-lock" 2>/dev/null)" != "$want" ]; then
  echo "tests/conformance/setup.sh: npm ci (@octokit/rest, @actions/github)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$here/node_modules/.installed-lock"
fi

# githubkit in a venv of its own: its newest release (0.16.1) imports hishel 1.x names and
# fails to import beside hishel 2, which the bench extra of the project's venv needs.
gk="$here/.venv-githubkit"
if ! "$gk/bin/python" -c 'import githubkit' 2>/dev/null; then
  echo "tests/conformance/setup.sh: githubkit venv"
  rm -rf "$gk"
  python3 -m venv "$gk"
  "$gk/bin/python" -m pip install --quiet --disable-pip-version-check 'githubkit>=0.16' 'hishel>=1.3,<2'
fi
