#!/usr/bin/env bash
# `make demo`: start the embedded default test host (a systemd container built from the
# local image, named openautoglm-demo) and run the main job, playbooks/site.yml, against it
# through the docker connection with inventories/local, then ask the deployed model service
# a question about a phone screenshot. Stage 7 needs model weights and Hugging Face is
# unreachable here, so the demo runs stages 1-6, builds a tiny random GLM-4.1V (AutoGLM-Phone-9B's
# architecture: vision tower, M-RoPE, GLM-4.1V's processor and chat template) with the venv
# stage 5 created, then runs stage 7 (a second, tagged run of the same playbook). The
# screenshot (1080x2400 PNG) is drawn on the host with that venv's Pillow; the question goes
# from the controller (tests/harness/demo_ask.py: the openai client when the interpreter has
# it, else urllib; DEMO_CLIENT_PYTHON picks the interpreter, default $SVC_VENV/bin/python when
# that venv exists, else python3).
# DEMO_PLAYBOOK runs another playbook instead (e.g. playbooks/preflight.yml), extra
# arguments go to ansible-playbook.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
name=openautoglm-demo
image=${DEMO_IMAGE:-local/debian:12}
port=${DEMO_PORT:-18088}
wheels=${DEMO_WHEELHOUSE:-/opt/wheels}
ca=${DEMO_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p "$wheels"
if ! docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null | grep -q true; then
  docker rm -f "$name" >/dev/null 2>&1 || true
  echo "demo: starting test host $name from $image (service port 8080 published on 127.0.0.1:$port)"
  docker run -d --name "$name" --hostname "$name" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined --cgroupns=host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
    -v "$wheels:/wheelhouse:ro" -v "$ca:/usr/local/share/demo-ca-bundle.crt:ro" \
    -p "127.0.0.1:$port:8080" \
    "$image" /lib/systemd/systemd >/dev/null
fi
for _ in $(seq 1 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
# A real host has package lists; the bootstrapped image has none.
docker exec "$name" apt-get update -qq

if [ -n "${DEMO_PLAYBOOK:-}" ]; then
  ansible-playbook -i inventories/local/hosts.yml "$DEMO_PLAYBOOK" "$@"
  exit 0
fi

echo "demo: stages 1-6 of playbooks/site.yml against $name"
ansible-playbook -i inventories/local/hosts.yml playbooks/site.yml --skip-tags model_service "$@"

echo "demo: building a tiny random GLM-4.1V and a 1080x2400 phone screenshot on $name with the venv of stage 5"
docker exec "$name" mkdir -p /usr/local/src/autoglm-build
docker cp files/autoglm_service "$name:/usr/local/src/autoglm-build/"
docker exec -e PYTHONPATH=/usr/local/src/autoglm-build "$name" \
  /opt/openautoglm/venv/bin/python -m autoglm_service.tiny_glm4v /srv/tiny-glm4v
docker exec -e PYTHONPATH=/usr/local/src/autoglm-build "$name" /opt/openautoglm/venv/bin/python -c \
  'from autoglm_service.tiny_glm4v import phone_screenshot; phone_screenshot(1080, 2400).save("/srv/demo-screen.png")'
shot_dir=$(mktemp -d)
trap 'rm -rf "$shot_dir"' EXIT
docker cp "$name:/srv/demo-screen.png" "$shot_dir/screen.png"

echo "demo: stage 7 (model_service) of playbooks/site.yml"
ansible-playbook -i inventories/local/hosts.yml playbooks/site.yml --tags model_service "$@"

# The role generated the API key on the host at the first deploy (no model_service_api_key
# in inventories/local): read it there, as an operator would (or set
# model_service_api_key_fetch_dir to get a copy on the controller).
key=$(docker exec "$name" cat /etc/openautoglm/autoglm.key)
client_python=${DEMO_CLIENT_PYTHON:-}
if [ -z "$client_python" ]; then
  client_python=python3
  if [ -n "${SVC_VENV:-}" ] && [ -x "$SVC_VENV/bin/python" ]; then client_python=$SVC_VENV/bin/python; fi
fi
echo "demo: POST http://127.0.0.1:$port/v1/chat/completions (model autoglm-phone-9b; Authorization: Bearer <the key in /etc/openautoglm/autoglm.key>)"
AUTOGLM_DEMO_KEY="$key" "$client_python" tests/harness/demo_ask.py --port "$port" --image "$shot_dir/screen.png"
echo "demo: done. Reports: $repo/reports/; API: http://127.0.0.1:$port (random weights: the text is noise);"
echo "      API key: docker exec $name cat /etc/openautoglm/autoglm.key"
echo "      remove the host with: docker rm -f $name"
