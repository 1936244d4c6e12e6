#!/usr/bin/env bash
# Make a wheelhouse for the node role's p2pcache_wheelhouse: the node's own wheel and a wheel
# of every dependency, pinned as the image pins them (docker/requirements.lock), so that hosts
# without a package index install with `pip install --no-index`.
#
#   bash ansible/wheelhouse.sh DIR        # then: p2pcache_wheelhouse=/absolute/path/to/DIR
#
# Wheels come from docker/wheelhouse/ when it holds them all (`make image` fills it; no
# network then), else from the package index. They are built with a Python 3.11 (the one
# docker/python311.sh finds, or $PYTHON), so they fit hosts with Python 3.11 (Debian 12);
# for another Python on the hosts, set PYTHON to that version.
set -euo pipefail
OUT=${1:?usage: bash ansible/wheelhouse.sh DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."

PY=${PYTHON:-$(bash docker/python311.sh)}
LOCK=docker/requirements.lock
IMAGE_WHEELS=docker/wheelhouse
say() { echo "ansible/wheelhouse.sh: $*" >&2; }
pip_wheel() { "$PY" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$OUT" "$@"; }

# The dependencies: offline from the image's wheelhouse when it is complete.
mkdir -p "$IMAGE_WHEELS"
if pip_wheel --no-index --find-links "$IMAGE_WHEELS" -r "$LOCK" 2>/dev/null; then
  say "dependencies from $IMAGE_WHEELS (no download)"
else
  say "dependencies from the package index (pins: $LOCK)"
  pip_wheel --find-links "$IMAGE_WHEELS" -r "$LOCK"
fi

# The node, built from a copy: pip builds in the source tree, and node/ stays clean.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/node"
cp -r node/pyproject.toml node/src "$tmp/node/"
[ ! -f node/README.md ] || cp node/README.md "$tmp/node/"
rm -f "$OUT"/p2pcache-*.whl
# setuptools, the build backend, is pinned in the lock too: build without the index.
pip_wheel --no-deps --no-index --find-links "$OUT" "$tmp/node"
say "$OUT: $(ls "$OUT"/*.whl | wc -l) wheels, $(basename "$(ls "$OUT"/p2pcache-*.whl)")"
