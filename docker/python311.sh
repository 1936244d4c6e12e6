#!/usr/bin/env bash
# Print a host Python 3.11 with pip (the image's Python version), so wheels built on the host
# for sdist-only dependencies (cp311) install in the image: $PYTHON, then python3.11,
# python3, the project's .venv, Debian's python3.11. Fails with a clear line when none fits.
set -euo pipefail
cd "$(dirname "$0")/.."
for candidate in ${PYTHON:-} python3.11 python3 .venv/bin/python /usr/bin/python3.11; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
    exit 0
  fi
done
echo "docker/python311.sh: no Python 3.11 with pip on this machine (set PYTHON=...); the" \
  "image runs Debian bookworm's 3.11, and wheels built here must match it" >&2
exit 1
