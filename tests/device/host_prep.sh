#!/usr/bin/env bash
# Host-preparation roles on a real GPU host (the device tool's H100 VM, Ubuntu 24.04, driver
# preinstalled, no internet). Carry .whl (ansible-core + deps as wheels, collections.tgz with
# community.general). Writes every output to $OUT.
set -uo pipefail
repo=$(pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH LC_ALL=C.UTF-8 ANSIBLE_FORCE_COLOR=0
mkdir -p /tmp/coll/ansible_collections/openautoglm && tar -xzf .whl/collections.tgz -C /tmp/coll
ln -sfn "$repo" /tmp/coll/ansible_collections/openautoglm/deploy
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_CONFIG="$repo/ansible.cfg"
# The OS interpreter has the apt bindings (python3-apt, python3-debian) that apt modules
# need in check mode; the image's torch venv python does not.
py=/usr/bin/python3
"$py" -c 'import apt, debian' 2>/dev/null || py=$(command -v python3)
common=(-c local -i "localhost," -e "ansible_python_interpreter=$py")
{
  echo "## host"; grep PRETTY /etc/os-release; uname -r; printf '%s ' /usr/bin/python3*; echo
  echo "module interpreter: $py"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} > "$OUT/host.txt" 2>&1
run() { local name=$1; shift; local t0=$SECONDS
  ansible-playbook "${common[@]}" "$@" > "$OUT/$name.txt" 2>&1; local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"; }
run nvidia_driver_real tests/device/host_prep.yml
for role in nouveau nvidia_driver cuda; do
  run "${role}_check" --check --diff -e "stage_role=$role" tests/device/role.yml
done
run cuda_check_12_1 --check -e stage_role=cuda -e '{"cuda_versions": ["12.1"]}' tests/device/role.yml
run python_venv_check --check -e stage_role=python_venv tests/device/role.yml
run python_venv_image_python --check -e stage_role=python_venv -e python_venv_python_install=false \
  -e "python_venv_python_executable=$(command -v python3)" tests/device/role.yml
python3 -c 'import torch; print("image torch", torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))' >> "$OUT/host.txt" 2>&1
for f in "$OUT"/*_check*.txt "$OUT"/nvidia_driver_real.txt "$OUT"/python_venv_image_python.txt; do
  echo "=== $(basename "$f")"; grep -E '^(PLAY RECAP|localhost|fatal|ok: .*msg|changed:)|"msg"|=> \{' "$f" | tail -8
done
cat "$OUT/summary.txt" "$OUT/host.txt"
