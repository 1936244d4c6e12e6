#!/usr/bin/env bash
# Re-pin docker/requirements.lock, the exact versions the image installs.
#
#   bash docker/lock.sh
#
# Run it after a change to the dependencies in node/pyproject.toml (the docker tests fail
# while the lock misses one). It resolves node/'s runtime dependencies in a throwaway
# virtual environment with Python 3.11 on Linux x86_64 (the image's platform), freezes
# them, and pins the setuptools that builds node/ inside the image.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=$(bash docker/python311.sh)
SETUPTOOLS=${SETUPTOOLS:-84.2.1}
LOCK=docker/requirements.lock

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Install from a copy: pip builds in the source tree, and node/ is not ours to litter.
mkdir "$tmp/node"
cp -r node/pyproject.toml node/src "$tmp/node/"
[ ! -f node/README.md ] || cp node/README.md "$tmp/node/"
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$tmp/node[mcp]"
{
  echo "# The image's Python dependencies, pinned. Made by docker/lock.sh from node/pyproject.toml"
  echo "# with $("$PY" -c 'import platform; print("CPython", platform.python_version())') on Linux x86_64; do not edit by hand."
  echo "#"
  echo "# Build requirement of node/ (the image builds it with --no-build-isolation):"
  echo "setuptools==$SETUPTOOLS"
  echo "#"
  echo "# Runtime dependencies:"
  "$tmp/venv/bin/pip" freeze --exclude-editable --disable-pip-version-check \
    | grep -v -i -E '^p2pcache( |=|@)' | LC_ALL=C sort -f
} >"$LOCK.tmp"
mv "$LOCK.tmp" "$LOCK"
echo "docker/lock.sh: wrote $LOCK ($(grep -c '==' "$LOCK") pins)"
