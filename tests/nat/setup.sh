#!/usr/bin/env bash
# System prerequisites of the NAT lab (tests/nat), run as root by tests/setup.sh. Idempotent.
#
# 1. Host tools: iproute2 (ip netns, veth), nftables, debootstrap.
# 2. Once: a Debian trixie chroot holding miniupnpd 2.3.9 (nftables flavour). Bookworm's
#    miniupnpd 2.3.1 refuses reserved WAN addresses such as 203.0.113.42; 2.3.9 accepts them
#    with ext_allow_private_ipv4=yes, but needs trixie's libc, hence the chroot. It lives in a
#    fixed cache outside the repo and is reused by every run once its marker file exists.
#
# Environment: P2PCACHE_NAT_CHROOT (default /var/cache/p2pcache-test/trixie-miniupnpd),
#              P2PCACHE_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

CHROOT=${P2PCACHE_NAT_CHROOT:-/var/cache/p2pcache-test/trixie-miniupnpd}
MIRROR=${P2PCACHE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
MARKER=.p2pcache-complete
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "tests/nat/setup.sh: $*"; }

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nft >/dev/null || need_apt+=(nftables)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# Bookworm's keyring (2023.3+deb12u1 and later) carries the trixie archive keys.
[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || need_apt+=(debian-archive-keyring)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Unmount everything below a directory (deepest first), so that nothing below it is ever
# copied or deleted through a live /proc or /sys.
unmount_below() {
  local dir=$1 m
  { findmnt -rn -o TARGET | grep -E "^${dir}(/|$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

# Delete a chroot directory safely: never across a mount point, never "/" or an empty path.
remove_tree() {
  local dir=$1
  case "$dir" in ""|/|/var|/var/cache) say "refusing to remove '$dir'"; exit 1 ;; esac
  [ -e "$dir" ] || return 0
  unmount_below "$dir"
  if findmnt -rn -o TARGET | grep -qE "^${dir}(/|$)"; then
    say "$dir still has mounts; not removing it"; exit 1
  fi
  rm -rf --one-file-system "$dir"
}

if [ -f "$CHROOT/$MARKER" ]; then
  say "miniupnpd chroot ready at $CHROOT ($(cat "$CHROOT/$MARKER"))"
  exit 0
fi

mkdir -p "$(dirname "$CHROOT")"
# One builder at a time (parallel `make test` runs); the others wait, then find the marker.
exec 9>"$CHROOT.lock"
flock 9
if [ -f "$CHROOT/$MARKER" ]; then
  say "miniupnpd chroot ready at $CHROOT ($(cat "$CHROOT/$MARKER"))"
  exit 0
fi
say "building the trixie miniupnpd chroot in $CHROOT (about 35 s, once)"
partial="$CHROOT.partial"
remove_tree "$partial"
remove_tree "$CHROOT"
start=$(date +%s)
if ! debootstrap --variant=minbase --keyring="$KEYRING" \
    --include=miniupnpd-nftables,nftables,iproute2 trixie "$partial" "$MIRROR" \
    >"$partial.log" 2>&1; then
  tail -n 30 "$partial.log" >&2 || true
  unmount_below "$partial"
  say "debootstrap failed (full log: $partial.log)"
  exit 1
fi
unmount_below "$partial"

version=$(chroot "$partial" dpkg-query -W -f='${Version}' miniupnpd-nftables)
case "$version" in
  2.3.9*|2.3.1[0-9]*|2.[4-9]*) ;;
  *) say "trixie gave miniupnpd $version; the lab needs 2.3.9 or later"; exit 1 ;;
esac
runs=$(chroot "$partial" /usr/sbin/miniupnpd --version 2>&1 || true)
case "$runs" in
  "miniupnpd 2."*) ;;
  *) say "miniupnpd does not run in the chroot: $runs"; exit 1 ;;
esac
# Where each lab bind-mounts its own directory (config, pid file) for miniupnpd; the mount
# lives only in miniupnpd's private mount namespace (see tests/nat/lab.py).
mkdir -p "$partial/run/p2pcache-lab"
echo "miniupnpd-nftables $version, built $(date -u +%FT%TZ) in $(( $(date +%s) - start )) s" \
  >"$partial/$MARKER"
mv "$partial" "$CHROOT"
rm -f "$partial.log"
say "miniupnpd chroot ready at $CHROOT ($(cat "$CHROOT/$MARKER"))"
