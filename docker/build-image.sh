#!/usr/bin/env bash
# `make image`: build the p2pcache image with no package index access inside the build.
#
#   1. Wheelhouse, on the host: docker/wheelhouse/ gets a wheel for every pin of
#      docker/requirements.lock (PyPI's wheels, plus wheels built here for the dependencies
#      PyPI has only as source). A wheelhouse that is already complete is used as it is,
#      without any network: copy it to an air-gapped machine and build there.
#   2. Base: $BASE_IMAGE, by default p2pcache-base:bookworm, made from the Debian mirror by
#      docker/base-image.sh when missing (set BASE_IMAGE=debian:bookworm-slim to use the
#      registry's image instead).
#   3. docker build --network=none: the proof that nothing is fetched during the build
#      (on another base, which may lack Python, the build may use the network for apt).
#
# Environment: IMAGE (default p2pcache:latest, also tagged p2pcache:VERSION), BASE_IMAGE,
# PYTHON (a Python 3.11 for the wheelhouse), DOCKER_HOST (which engine), BUILD_NETWORK,
# DOCKER_BUILD_FLAGS (more `docker build` flags).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-p2pcache:latest}
BASE_IMAGE=${BASE_IMAGE:-p2pcache-base:bookworm}
WHEELHOUSE=docker/wheelhouse
LOCK=docker/requirements.lock
PROJECT_ENGINE=unix:///run/p2pcache-test-docker/docker.sock

say() { echo "docker/build-image.sh: $*"; }

# -- an engine: the one DOCKER_HOST names, else the system's, else the project's own --------
if ! timeout 10 docker info >/dev/null 2>&1; then
  if [ -z "${DOCKER_HOST:-}" ] && [ "$(id -u)" = 0 ]; then
    say "no Docker engine answers; starting the project's own (tests/docker/setup.sh)"
    bash tests/docker/setup.sh
    export DOCKER_HOST=$PROJECT_ENGINE
  fi
  timeout 10 docker info >/dev/null 2>&1 || {
    say "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}" >&2; exit 1; }
fi
say "engine: ${DOCKER_HOST:-default} ($(docker version --format '{{.Server.Version}}'))"

# -- 1. the wheelhouse ---------------------------------------------------------------------
PY=$(bash docker/python311.sh)
mkdir -p "$WHEELHOUSE"
if "$PY" -m pip wheel --quiet --disable-pip-version-check --no-index --find-links "$WHEELHOUSE" \
    --wheel-dir "$WHEELHOUSE" -r "$LOCK" >/dev/null 2>&1; then
  say "wheelhouse complete ($WHEELHOUSE), no download needed"
else
  say "filling $WHEELHOUSE from the package index (pins: $LOCK)"
  "$PY" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WHEELHOUSE" -r "$LOCK" \
    2> >(grep -v -e 'is ignored: it is neither a file nor a directory' >&2)
fi

# -- 2. the base image ---------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  case "$BASE_IMAGE" in
    p2pcache-base:*) bash docker/base-image.sh "$BASE_IMAGE" ;;
    *) say "pulling $BASE_IMAGE"; docker pull "$BASE_IMAGE" ;;
  esac
fi

# -- 3. the image, with no network inside the build ------------------------------------------
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("node/pyproject.toml", "rb"))["project"]["version"])')
REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The local base has Python already, so the build needs no network at all; another base
# (debian:bookworm-slim) gets python3 from the Debian mirror during the build.
case "$BASE_IMAGE" in
  p2pcache-base:*) NETWORK=${BUILD_NETWORK:-none} ;;
  *) NETWORK=${BUILD_NETWORK:-default} ;;
esac
tags=(-t "$IMAGE")
[ "$IMAGE" = p2pcache:latest ] && tags+=(-t "p2pcache:$VERSION")
say "building $IMAGE $VERSION ($REVISION) on $BASE_IMAGE, --network=$NETWORK"
start=$(date +%s)
docker build --network="$NETWORK" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" "${tags[@]}" \
  ${DOCKER_BUILD_FLAGS:-} .
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE in $(( $(date +%s) - start )) s: $(awk -v s="$size" 'BEGIN {printf "%.1f MB", s / 1e6}')"
if [ "${DOCKER_HOST:-}" = "$PROJECT_ENGINE" ]; then
  say "it is in the project's engine: export DOCKER_HOST=$PROJECT_ENGINE before docker compose"
fi
