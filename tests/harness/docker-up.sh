#!/usr/bin/env bash
# Install (if needed) and start a Docker daemon on this machine, then wait for it.
# Used by `make deps` and .ci/run. Idempotent: does nothing when `docker info` already works.
set -euo pipefail
log=${DOCKERD_LOG:-/tmp/openautoglm-dockerd.log}
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "harness: installing docker.io and debootstrap from Debian's archive"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
echo "harness: starting dockerd (log: $log)"
(setsid dockerd >"$log" 2>&1 &)
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "harness: docker daemon is up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "harness: dockerd did not come up within 60 s; last log lines:" >&2
tail -n 30 "$log" >&2
exit 1
