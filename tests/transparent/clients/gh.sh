#!/bin/bash
# gh api -i PATH (GH_TOKEN from the environment): status and X-P2P-Cache as JSON.
set -u
out=$(gh api -i "$1" 2>&1) || { printf '{"error": "%s"}\n' "$(echo "$out" | tr -d '"\n')"; exit 1; }
status=$(echo "$out" | head -1 | cut -d' ' -f2)
cache=$(echo "$out" | tr -d '\r' | awk 'tolower($1) == "x-p2p-cache:" {print $2}')
printf '{"status": %s, "cache": "%s"}\n' "$status" "$cache"
