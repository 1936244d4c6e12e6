#!/usr/bin/env bash
# Install a runner node into a virtual environment, as the action does (action.yml):
#
#   bash runner/install.sh VENV              install (or keep a working VENV as it is)
#   bash runner/install.sh --cache-key VENV  print the actions/cache key for VENV
#
# Fast because it installs only what a node loads: runner/requirements.txt, pinned, with
# --no-deps (no resolver, and none of py-libp2p's dependencies that no p2pcache process
# imports, such as grpcio; bench/runner_deps.py is the trace), then node/ itself. It uses uv
# (from PATH, else a pinned uv fetched with pip) and falls back to pip alone;
# P2P_CACHE_INSTALLER=pip skips uv. A VENV that already holds a working install (the action
# restores it with actions/cache) is kept.
#
# Every VENV also gets bin/p2pcache-root, the entry a sudoers rule names for transparent
# mode without giving jobs root (README): run as root, `bash runner/install.sh /opt/p2pcache`
# makes the root-owned install that rule expects.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reqs=$root/runner/requirements.txt
UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--cache-key" ]; then
    venv=${2:?usage: install.sh --cache-key VENV}
    # A venv only works with the interpreter that made it, at the path it was made at
    # (its scripts' #! lines), and holds this checkout's node/ and pins.
    python=$("$PYTHON" -c 'import os, platform, sys
print(platform.python_version(), platform.machine(), os.path.realpath(sys.executable))')
    sources=$(cd "$root" && find runner node/pyproject.toml node/src -type f \
        \( -name '*.py' -o -name '*.txt' -o -name '*.toml' -o -name '*.sh' \) -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum)
    digest=$(printf '%s\n%s\n%s\n' "$python" "$venv" "$sources" | sha256sum | cut -c1-32)
    echo "p2pcache-runner-$(uname -s)-$(uname -m)-py$("$PYTHON" -c 'import platform
print(platform.python_version())')-$digest"
    exit 0
fi

venv=${1:?usage: install.sh VENV}

# A file of its own (not the venv's python, a symlink to the system's interpreter), running
# that interpreter isolated: -I ignores PYTHON* variables, user site-packages and the
# working directory, whatever the caller's environment.
root_entry() {
    local dir
    dir=$(cd "$venv" && pwd)
    printf '%s\n' "#!$dir/bin/python -I" \
        "# p2pcache's root entry: what README's sudoers rule for transparent mode names." \
        "import sys" "" "from p2pcache.cli import main" "" "sys.exit(main())" \
        >"$dir/bin/p2pcache-root.new"
    chmod 0755 "$dir/bin/p2pcache-root.new"
    mv -f "$dir/bin/p2pcache-root.new" "$dir/bin/p2pcache-root"
}

if [ -x "$venv/bin/p2pcache" ] && "$venv/bin/python" -c 'import p2pcache.cli' 2>/dev/null; then
    echo "✓ Reusing the cached runner environment"
    root_entry
    exit 0
fi
rm -rf "$venv"

uv=
[ "${P2P_CACHE_INSTALLER:-}" = pip ] || uv=$(command -v uv || true)
if [ -z "$uv" ] && [ "${P2P_CACHE_INSTALLER:-}" != pip ]; then
    # Kept in the user's cache directory: a self-hosted runner fetches it once.
    tools=${XDG_CACHE_HOME:-$HOME/.cache}/p2pcache/uv-$UV_VERSION
    if [ -x "$tools/bin/uv" ] || "$PYTHON" -m pip install --quiet --disable-pip-version-check \
            --target "$tools" "uv==$UV_VERSION" >/dev/null 2>&1; then
        uv=$tools/bin/uv
    fi
fi
if [ -n "$uv" ]; then
    "$uv" venv --quiet --python "$(command -v "$PYTHON")" "$venv"
    "$uv" pip install --quiet --python "$venv/bin/python" --no-deps -r "$reqs" "$root/node"
else
    echo "installing with pip (uv is not available, or P2P_CACHE_INSTALLER=pip)"
    "$PYTHON" -m venv "$venv"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
    # node/ and fastecdsa (PyPI has only its source) build with the pinned setuptools in
    # the venv itself, not in a fresh isolated build environment each.
    "${pip[@]}" install --no-deps "$(grep -E '^setuptools==' "$reqs")"
    "${pip[@]}" install --no-deps --no-build-isolation -r "$reqs" "$root/node"
fi
root_entry
