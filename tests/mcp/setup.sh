#!/usr/bin/env bash
# The MCP Inspector from npm, whose CLI mode tests/integration/test_mcp_inspector.py drives.
# Idempotent: `npm ci` runs only when package-lock.json changed since the last install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v npm >/dev/null; then
  echo "tests/mcp/setup.sh: installing nodejs and npm"
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
stamp="$here/node_modules/.p2pcache-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ -x "$here/node_modules/.bin/mcp-inspector" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "tests/mcp/setup.sh: npm ci (MCP Inspector)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
