#!/usr/bin/env bash
# Build the systemd test-host image local/debian:<suite-version> without a registry:
# debootstrap a minimal Debian with contrib/non-free enabled and `docker import` it.
# Usage: build-image.sh [SUITE...]   bookworm -> local/debian:12 (default), bullseye -> :11,
# trixie -> :13. Several suites build one after the other.
set -euo pipefail
if [ $# -gt 1 ]; then
  for suite in "$@"; do "$0" "$suite"; done
  exit 0
fi
suite=${1:-bookworm}
case "$suite" in
  bookworm) tag=local/debian:12 ;;
  bullseye) tag=local/debian:11 ;;
  trixie) tag=local/debian:13 ;;
  *) echo "build-image.sh: unknown suite '$suite' (allowed: bookworm, bullseye, trixie)" >&2; exit 2 ;;
esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$tag" >/dev/null 2>&1 && [ "${REBUILD:-0}" != 1 ]; then
  echo "harness: image $tag already present (REBUILD=1 to rebuild)"
  exit 0
fi
work=$(mktemp -d /tmp/openautoglm-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "harness: debootstrap $suite into $work (mirror $mirror)"
debootstrap --variant=minbase \
  --include=python3,python3-apt,sudo,systemd,systemd-sysv,ca-certificates,iproute2,procps,kmod \
  "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
components="main contrib non-free"
[ "$suite" != bullseye ] && components="$components non-free-firmware"
cat >"$work/rootfs/etc/apt/sources.list" <<SRC
deb $mirror $suite $components
deb $mirror $suite-updates $components
deb http://deb.debian.org/debian-security $suite-security $components
SRC
# Lean test host: no docs, no recommends; and no getty/udev noise under systemd in a container.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$work/rootfs/etc/apt/apt.conf.d/99openautoglm-test"
rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/archives/"*.deb
tar -C "$work/rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$tag" >/dev/null
echo "harness: built $tag"
