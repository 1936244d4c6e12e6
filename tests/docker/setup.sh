#!/usr/bin/env bash
# The Docker side of `make test` on a fresh Debian bookworm machine (run as root):
#   1. packages: Docker engine 26 and Compose v2 from Debian trixie (pinned low, so nothing
#      else on the machine moves to trixie), debootstrap for the offline base image;
#   2. a private Docker engine of the tests' own, on its own socket, data root and networks
#      (198.18.0.0/15, the benchmarking range: never a private range).
# Idempotent: an engine that already answers on the socket is reused, installed packages are
# not installed again. It never fails `make test` by itself: what is missing is reported here
# and the docker tests then fail (CI=true) or skip with the reason.
#
# Use the engine with: export DOCKER_HOST=unix:///run/p2pcache-test-docker/docker.sock
set -uo pipefail

NAME=p2pcache-test-docker
RUN_DIR=/run/$NAME
SOCKET=$RUN_DIR/docker.sock
DATA_ROOT=/var/lib/$NAME
CONFIG=/etc/$NAME/daemon.json
LOG=/var/log/$NAME.log
export DOCKER_HOST=unix://$SOCKET

say() { echo "tests/docker/setup.sh: $*"; }
give_up() { say "$* (the docker tests will say so)" >&2; exit 0; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && [ -S "$SOCKET" ] && engine_answers \
    && docker compose version >/dev/null 2>&1; then
  say "Docker engine already answers at $DOCKER_HOST"
  exit 0
fi

[ "$(id -u)" = 0 ] || give_up "not root: cannot install or start a Docker engine"
command -v apt-get >/dev/null || give_up "no apt-get: install Docker and Compose v2 yourself"

# -- packages ----------------------------------------------------------------------------
TRIXIE_SOURCE=/etc/apt/sources.list.d/p2pcache-trixie.sources
TRIXIE_PIN=/etc/apt/preferences.d/p2pcache-trixie
need=()
command -v dockerd >/dev/null || need+=(docker.io/trixie)
[ -x /usr/bin/docker ] || need+=(docker-cli/trixie)
[ -x /usr/libexec/docker/cli-plugins/docker-compose ] || need+=(docker-compose/trixie)
[ -x /usr/libexec/docker/cli-plugins/docker-buildx ] || need+=(docker-buildx/trixie)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ ! -f "$TRIXIE_SOURCE" ]; then
    # Compose v2 is packaged from trixie on; priority 100 keeps every other package on
    # bookworm unless named with /trixie (the engine's libraries resolve from bookworm).
    cat >"$TRIXIE_SOURCE" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$TRIXIE_PIN" <<'EOF'
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF
  fi
  say "installing ${need[*]}"
  apt-get update -qq || give_up "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null || give_up "could not install ${need[*]}"
fi
docker compose version >/dev/null 2>&1 || give_up "'docker compose' (Compose v2) does not run"

# -- the engine --------------------------------------------------------------------------
mkdir -p "$RUN_DIR" "$DATA_ROOT" "$(dirname "$CONFIG")"
cat >"$CONFIG" <<EOF
{
  "hosts": ["unix://$SOCKET"],
  "data-root": "$DATA_ROOT",
  "exec-root": "$RUN_DIR/exec",
  "pidfile": "$RUN_DIR/dockerd.pid",
  "bip": "198.18.0.1/24",
  "default-address-pools": [{"base": "198.19.0.0/16", "size": 24}],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
EOF

pid=$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null || true)
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
  say "dockerd $pid runs but does not answer yet; waiting"
else
  rm -f "$SOCKET" "$RUN_DIR/dockerd.pid"
  say "starting dockerd (log: $LOG)"
  nohup dockerd --config-file "$CONFIG" >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  engine_answers && break
  sleep 0.5
done
engine_answers || give_up "dockerd did not answer within 30 s; see $LOG"
say "Docker engine ready at $DOCKER_HOST ($(docker version --format '{{.Server.Version}}'))"
