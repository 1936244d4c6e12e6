#!/usr/bin/env bash
# Make a Debian bookworm base image locally, for machines that cannot pull debian:bookworm-slim.
#
#   bash docker/base-image.sh [TAG]        # default TAG: p2pcache-base:bookworm
#
# debootstrap (minbase) from the Debian mirror, with what the image build would otherwise
# get from apt: python3, python3-venv (the build stage's venv and pip), ca-certificates and
# libgmp10 (fastecdsa's library). So a build on this base runs no apt at all and needs no
# network. Docs, man pages and apt lists are left out, as in debian:bookworm-slim.
# Skips the work when the tag exists. Needs root (debootstrap) and a Docker engine.
set -euo pipefail

TAG=${1:-${BASE_IMAGE:-p2pcache-base:bookworm}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,ca-certificates,libgmp10

say() { echo "docker/base-image.sh: $*"; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  say "$TAG exists"
  exit 0
fi
[ "$(id -u)" = 0 ] || { say "debootstrap needs root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d /var/tmp/p2pcache-base.XXXXXX)
cleanup() {
  # debootstrap mounts proc/sys while it works: never delete through a live mount.
  for m in proc sys dev/pts; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

say "debootstrap bookworm (minbase + $INCLUDE) from $MIRROR"
start=$(date +%s)
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$root" "$MIRROR" \
  >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
for m in proc sys dev/pts; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done

# Slim it the way debian:bookworm-slim is: no docs, man pages or translations, now or after
# a later apt-get install.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/cache/apt/*.bin \
  "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
echo "$MIRROR" | grep -q '^http' && echo "deb $MIRROR bookworm main" >"$root/etc/apt/sources.list"

tar --numeric-owner --one-file-system -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase --include=$INCLUDE bookworm" \
  - "$TAG" >/dev/null
say "$TAG made in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$TAG" \
  | awk '{printf "%.0f MB", $1 / 1e6}'))"
