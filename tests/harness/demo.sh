#!/usr/bin/env bash
# `make demo`: start the embedded default test host (a systemd container built from the
# local image, named openautoglm-demo) and run the main job against it through the
# docker connection, with inventories/local.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
name=openautoglm-demo
image=${DEMO_IMAGE:-local/debian:12}
playbook=${DEMO_PLAYBOOK:-playbooks/site.yml}
if ! docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null | grep -q true; then
  docker rm -f "$name" >/dev/null 2>&1 || true
  echo "demo: starting test host $name from $image"
  docker run -d --name "$name" --hostname "$name" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined --cgroupns=host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
    "$image" /lib/systemd/systemd >/dev/null
fi
for _ in $(seq 1 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
echo "demo: running $playbook against $name (inventory inventories/local)"
ansible-playbook -i inventories/local/hosts.yml "$playbook" "$@"
echo "demo: done. Reports: $repo/reports/; remove the host with: docker rm -f $name"
