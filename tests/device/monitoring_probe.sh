#!/usr/bin/env bash
# Issue 8 on the GPU host (the device tool's H100 VM: Ubuntu 24.04, driver installed, python3
# with torch, nvidia-ml-py and prometheus-client, no internet). Self-contained, < 5 minutes,
# everything lands in $OUT:
#   host.txt                    OS, GPU, driver, /proc/devices, disks
#   metrics.txt                 one scrape of the exporter (python3 -m gpu_exporter)
#   scrape_timing.json          50 scrapes idle + 50 while the GPU benchmark runs: median/p99 ms
#   hardened_metrics.txt        a scrape of the exporter under the unit's sandbox (systemd-run)
#   gpu_bench.json, gpu_verdict.json    files/perf_probe/gpu_bench.py and the datasheet verdict
#   fio_direct.json             fio probe without Ansible (argv and verdict from module_utils/perf.py)
#   playbook.txt, reports/      tests/device/monitoring.yml: gpu_monitoring role + validate.yml
#   summary.txt                 one line per step with rc and seconds
# Carry: build/device (static fio from tests/device/build-fio.sh) and .whl (ansible-core wheels
# and collections.tgz, as for host_prep.sh). Without .whl the playbook step is skipped; without
# any fio the fio steps record that fio is missing.
set -uo pipefail
repo=$(pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; export OUT
PROBE_PATH=${PROBE_PATH:-/data/models}       # model directory; its nearest existing parent is probed
FIO_SIZE=${FIO_SIZE:-1G}; FIO_RUNTIME=${FIO_RUNTIME:-10}
PORT=19445
export LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
summary() { echo "$1 rc=$2 $3s" | tee -a "$OUT/summary.txt"; }
FIO=""
for f in "$repo/build/device/fio" "$(command -v fio || true)"; do [ -n "$f" ] && [ -x "$f" ] && { FIO=$f; break; }; done

{
  echo "## host"; grep PRETTY /etc/os-release; uname -r; nproc; free -g | head -2
  python3 --version
  python3 -c 'import torch, prometheus_client, pynvml; print("torch", torch.__version__, "prometheus_client", getattr(prometheus_client, "__version__", "?"), "pynvml", getattr(pynvml, "__file__", "?"))' 2>&1
  nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current,power.limit --format=csv 2>&1
  echo "## /proc/devices (nvidia)"; grep -i nvidia /proc/devices; find /dev -maxdepth 2 -name "nvidia*" -exec ls -l {} + 2>&1 | head
  echo "## disks"; lsblk -o NAME,TYPE,SIZE,ROTA,TRAN,MODEL,MOUNTPOINT 2>&1 | head -20; df -hT / "$(dirname "$PROBE_PATH")" 2>&1
  echo "## fio: ${FIO:-missing}"; [ -n "$FIO" ] && "$FIO" --version
  echo "## systemd: $(systemctl --version | head -1)"
} > "$OUT/host.txt" 2>&1
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
GPUS=${GPUS:-0}

# 1. exporter + timed scrapes ------------------------------------------------------------
t0=$SECONDS
(cd "$repo/files" && exec python3 -m gpu_exporter --listen-address "127.0.0.1:$PORT" --expected-gpus "$GPUS") \
  > "$OUT/exporter.log" 2>&1 &
EXPORTER=$!
cat > /tmp/oag_scrape.py <<'PY'
import json, statistics, sys, time, urllib.request
url, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=2).read(); break
    except OSError:
        time.sleep(0.1)
wall, collect, body = [], [], ''
for _ in range(n):
    t = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    wall.append((time.perf_counter() - t) * 1000)
    for line in body.splitlines():
        if line.startswith('nvidia_gpu_exporter_collect_duration_seconds '):
            collect.append(float(line.split()[1]) * 1000)
    time.sleep(0.05)
def stats(v):
    v = sorted(v)
    return {'n': len(v), 'median_ms': round(statistics.median(v), 2), 'p99_ms': round(v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))], 2),
            'max_ms': round(v[-1], 2), 'min_ms': round(v[0], 2)} if v else None
print(json.dumps({'label': label, 'http_scrape': stats(wall), 'nvml_collect': stats(collect), 'bytes': len(body),
                  'series': sum(1 for l in body.splitlines() if l and not l.startswith('#'))}))
PY
python3 /tmp/oag_scrape.py "http://127.0.0.1:$PORT/metrics" 50 idle > "$OUT/scrape_idle.json" 2> "$OUT/scrape_idle.err"
rc=$?
curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt" 2>&1 || python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/metrics').read().decode())" > "$OUT/metrics.txt"
summary exporter_scrape_idle $rc $((SECONDS - t0))

# 2. GPU benchmark (raw) with scrapes running alongside ----------------------------------
t0=$SECONDS
python3 /tmp/oag_scrape.py "http://127.0.0.1:$PORT/metrics" 50 during_gpu_bench > "$OUT/scrape_load.json" 2> "$OUT/scrape_load.err" &
SCRAPER=$!
timeout 180 python3 "$repo/files/perf_probe/gpu_bench.py" > "$OUT/gpu_bench.json" 2> "$OUT/gpu_bench.err"
rc=$?
wait $SCRAPER
summary gpu_bench $rc $((SECONDS - t0))
python3 - "$repo" > "$OUT/gpu_verdict.json" 2>&1 <<'PY'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('perf', sys.argv[1] + '/plugins/module_utils/perf.py')
perf = importlib.util.module_from_spec(spec); spec.loader.exec_module(perf)
import os
print(json.dumps(perf.gpu_verdict(json.load(open(os.environ['OUT'] + '/gpu_bench.json'))), indent=1))
PY
python3 -c "import json,sys; print(json.dumps([json.load(open(f)) for f in sys.argv[1:]], indent=1))" \
  "$OUT/scrape_idle.json" "$OUT/scrape_load.json" > "$OUT/scrape_timing.json" 2>&1
kill "$EXPORTER" 2>/dev/null; wait "$EXPORTER" 2>/dev/null

# 3. the exporter inside the unit's sandbox (same directives as the role's unit) ------------
t0=$SECONDS; rc=0
if command -v systemd-run >/dev/null && [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /opt/openautoglm-probe && cp -r "$repo/files/gpu_exporter" /opt/openautoglm-probe/
  props=(-p DynamicUser=yes -p Environment=PYTHONPATH=/opt/openautoglm-probe -p Environment=PYTHONDONTWRITEBYTECODE=1)
  while IFS= read -r line; do
    case "$line" in ''|'#'*) ;; *) props+=(-p "$line") ;; esac
  done < "$repo/roles/gpu_monitoring/files/exporter-hardening.conf"
  systemd-run --unit=oag-exporter-probe "${props[@]}" /usr/bin/python3 -m gpu_exporter \
    --listen-address "127.0.0.1:$((PORT + 1))" --expected-gpus "$GPUS" > "$OUT/hardened_run.txt" 2>&1
  python3 /tmp/oag_scrape.py "http://127.0.0.1:$((PORT + 1))/metrics" 20 hardened > "$OUT/scrape_hardened.json" 2>&1; rc=$?
  python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$((PORT + 1))/metrics').read().decode())" \
    > "$OUT/hardened_metrics.txt" 2>&1
  { systemctl show oag-exporter-probe -p User,NoNewPrivileges,ProtectSystem,DevicePolicy,DeviceAllow,SystemCallFilter | cut -c1-300
    journalctl -u oag-exporter-probe --no-pager | tail -20; } >> "$OUT/hardened_run.txt" 2>&1
  grep -q "^nvidia_gpu_count $GPUS.0$" "$OUT/hardened_metrics.txt" || rc=1
  systemctl stop oag-exporter-probe 2>/dev/null
else
  echo "no systemd (PID 1) or not root: skipped" > "$OUT/hardened_run.txt"; rc=2
fi
summary exporter_hardened $rc $((SECONDS - t0))

# 4. fio probe without Ansible -----------------------------------------------------------
t0=$SECONDS
python3 - "$repo" "$FIO" "$PROBE_PATH" "$FIO_SIZE" "$FIO_RUNTIME" > "$OUT/fio_direct.json" 2> "$OUT/fio_direct.err" <<'PY'
import json, os, subprocess, sys
repo, fio, path, size, runtime = sys.argv[1:6]
sys.path.insert(0, '/tmp/oag_coll')
os.makedirs('/tmp/oag_coll/ansible_collections/openautoglm', exist_ok=True)
link = '/tmp/oag_coll/ansible_collections/openautoglm/deploy'
if not os.path.islink(link):
    os.symlink(repo, link)
from ansible_collections.openautoglm.deploy.plugins.module_utils import perf, nvme
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
facts = nvme.collect(HostPaths(), path)
out = {'nvme': facts['path'], 'notes': facts['notes'], 'fio': fio or None}
if not fio:
    out['verdict'] = {'passed': None, 'summary': 'NOT RUN: fio is not installed on this host and none was carried (build/device/fio)'}
else:
    probe_dir = path
    while not os.path.isdir(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    test_file = os.path.join(probe_dir, perf.PROBE_FILE)
    argv = [fio] + perf.fio_jobs(test_file, size, int(runtime))
    try:
        run = subprocess.run(argv, capture_output=True, text=True)
    finally:
        if os.path.exists(test_file):
            os.remove(test_file)
    out.update(cmd=argv, rc=run.returncode, stderr=run.stderr[-2000:])
    if run.returncode == 0:
        results = perf.parse_fio(json.loads(run.stdout[run.stdout.index('{'):]))
        out['measurements'] = results
        out['verdict'] = perf.storage_verdict(results, path, facts['path']['on_nvme'], facts['path'].get('disks'),
                                              notes=facts['notes'])
print(json.dumps(out, indent=1))
PY
rc=$?
summary fio_direct $rc $((SECONDS - t0))

# 5. the roles through Ansible -----------------------------------------------------------
t0=$SECONDS
if ls "$repo"/.whl/ansible_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/oag_site "$repo"/.whl/*.whl \
    > "$OUT/pip.txt" 2>&1
  mkdir -p /tmp/oag_ans/ansible_collections/openautoglm && tar -xzf "$repo/.whl/collections.tgz" -C /tmp/oag_ans
  ln -sfn "$repo" /tmp/oag_ans/ansible_collections/openautoglm/deploy
  python3 -m venv --without-pip --system-site-packages /opt/openautoglm-probe/venv >> "$OUT/pip.txt" 2>&1
  PYTHONPATH=/tmp/oag_site PATH=/tmp/oag_site/bin:$PATH ANSIBLE_COLLECTIONS_PATH=/tmp/oag_ans ANSIBLE_CONFIG="$repo/ansible.cfg" \
    ANSIBLE_FORCE_COLOR=0 timeout 300 ansible-playbook -c local -i localhost, -e "ansible_python_interpreter=$(command -v python3)" \
    -e "perf_probe_fio_path=${FIO:-/nonexistent/fio}" -e perf_probe_fio_install=false -e "perf_probe_path=$PROBE_PATH" \
    -e "perf_probe_fio_size=$FIO_SIZE" -e "perf_probe_fio_runtime=$FIO_RUNTIME" -e "perf_probe_gpu_python=$(command -v python3)" \
    -e "perf_probe_report_dir=$OUT/reports" -e perf_probe_fail_on_shortfall=false -e validate_hosts=all \
    tests/device/monitoring.yml > "$OUT/playbook.txt" 2>&1
  rc=$?
else
  echo "no .whl carried: playbook step skipped" > "$OUT/playbook.txt"; rc=2
fi
summary playbook $rc $((SECONDS - t0))
rm -rf /opt/openautoglm-probe /tmp/oag_scrape.py

echo "=== scrape timing"; cat "$OUT/scrape_timing.json" "$OUT/scrape_hardened.json" 2>/dev/null
echo "=== gpu verdict"; python3 -c "import json; v=json.load(open('$OUT/gpu_verdict.json')); print(v['summary'])" 2>&1
echo "=== fio verdict"; python3 -c "import json; v=json.load(open('$OUT/fio_direct.json')); print(v['verdict']['summary'])" 2>&1
echo "=== playbook"; grep -E '"(storage|gpu): |^localhost|fatal|PLAY RECAP' "$OUT/playbook.txt" | tail -8
cat "$OUT/summary.txt"
