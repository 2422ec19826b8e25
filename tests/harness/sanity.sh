#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the collection placed at
# <dir>/ansible_collections/openautoglm/deploy (ansible-test requires that layout).
# ansible-test bootstraps pip with a get-pip script it downloads from a host CI cannot
# reach, and runs pip with PIP_CONFIG_FILE=/dev/null (losing the CA settings): a stand-in
# get-pip in its cache uses ensurepip and passes the system CA bundle explicitly.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-/tmp/openautoglm-sanity/ansible_collections/openautoglm/deploy}
shift || true
venv=${VENV:-$repo/.venv}
export PATH="$venv/bin:$PATH"

# 0. shellcheck (Debian package) so the shellcheck test runs instead of being skipped
if ! command -v shellcheck >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi

# 1. stand-in get-pip for every pip version this ansible-test may ask for
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
versions=$(grep -rhoE "get_pip_[0-9]+_[0-9]+" "$venv"/lib/python3*/site-packages/ansible_test 2>/dev/null | sort -u || true)
for name in $versions get_pip_24_2 get_pip_25_0 get_pip_25_1 get_pip_25_2 get_pip_25_3; do
  cat >"$cache/$name.py" <<'PY'
"""Offline stand-in for get-pip.py (see tests/harness/sanity.sh)."""
import ssl
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel', '--disable-pip-version-check')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
cafile = ssl.get_default_verify_paths().cafile or '/etc/ssl/certs/ca-certificates.crt'
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check', '--cert', cafile] + args)
PY
done

# 2. a clean copy of the tracked tree (plus untracked, not ignored files) at the required path
rm -rf "$dest"
mkdir -p "$dest"
# (tracked files deleted in the work tree are skipped: --ignore-failed-read)
(cd "$repo" && git ls-files -co --exclude-standard -z \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$dest"
# ansible-test sanity consults git for the file list when .git exists: init a throwaway repo
(cd "$dest" && git init -q && git add -A && git -c user.email=ci@local -c user.name=ci commit -qm snapshot)

cd "$dest"
ansible-test sanity --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no "$@"
