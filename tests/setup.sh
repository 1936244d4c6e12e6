#!/usr/bin/env bash
# Installs the system packages the tests need (fresh Debian, root). Idempotent.
set -euo pipefail
echo "tests/setup.sh: nothing system-wide needed yet"
