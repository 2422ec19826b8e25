# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet benchmark on simulated hosts, every figure from ONE run (docs/fleet.md records them).

Hosts are lightweight containers from local/debian:12 (`sleep infinity`, no network, 64 MiB)
reached with the community.docker.docker connection; preflight needs only python3, /proc and
/sys in them. The run:

1. tuning at --tune-size hosts: `ansible -m ping` and playbooks/preflight.yml under several
   settings (forks, pipelining, strategy) - both timed with the same settings;
2. growth: ping and preflight on 25, 50, 100, 200 hosts (--sizes) with the default settings
   of ansible.cfg; ratio preflight / ping (target <= 3x) and time per host (target: linear
   or better, i.e. time(N)/time(25) <= N/25);
3. the full job on the largest fleet: tests/integration/fleet/scale.yml (ping, one host
   removed mid-run, playbooks/report.yml = preflight + fleet report); checks that the other
   hosts got a verdict and that the report shows the lost host as unreachable.

Usage (repository root, after `make deps`):
    .venv/bin/python tests/benchmarks/fleet_bench.py [--sizes 25,50,100,200] [--tune-size 50] [--json out.json]
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
PREFIX = 'fleetops-bench-%d' % os.getpid()
TUNING = [
    ('defaults (forks 25, pipelining on, linear)', {}),
    ('forks 10', {'ANSIBLE_FORKS': '10'}),
    ('forks 50', {'ANSIBLE_FORKS': '50'}),
    ('pipelining off', {'ANSIBLE_PIPELINING': 'False'}),
    ('strategy free', {'ANSIBLE_STRATEGY': 'free'}),
]


def env(extra=None):
    e = dict(os.environ)
    e.update(ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
             ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'),
             ANSIBLE_NOCOLOR='1', PATH=VENV_BIN + os.pathsep + e.get('PATH', ''))
    e.update(extra or {})
    return e


def timed(cmd, extra_env=None, check=True):
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(extra_env), cwd=REPO, check=False)
    elapsed = time.time() - start
    if check and proc.returncode != 0:
        sys.exit('%s failed (%d):\n%s\n%s' % (' '.join(cmd), proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    return elapsed, proc


def start_containers(count):
    names = ['%s-%03d' % (PREFIX, i) for i in range(1, count + 1)]

    def one(name):
        subprocess.run(['docker', 'run', '-d', '--name', name, '--hostname', name, '--network', 'none',
                        '--memory', '64m', 'local/debian:12', 'sleep', 'infinity'], check=True, capture_output=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))
    return names


def inventory(path, names):
    with open(path, 'w') as handle:
        json.dump({'all': {'children': {'gpu_nodes': {'hosts': dict((n, {}) for n in names), 'vars': {
            'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3',
            'preflight_preset': 'development'}}}}}, handle)
    return path


def measure(inv, work, extra_env=None):
    ping = timed(['ansible', 'gpu_nodes', '-i', inv, '-m', 'ansible.builtin.ping'], extra_env)[0]
    pre = timed(['ansible-playbook', '-i', inv, 'playbooks/preflight.yml',
                 '-e', 'preflight_report_dir=%s' % os.path.join(work, 'preflight')], extra_env)[0]
    return ping, pre


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--sizes', default='25,50,100,200')
    parser.add_argument('--tune-size', type=int, default=50)
    parser.add_argument('--no-tuning', action='store_true')
    parser.add_argument('--json')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    largest = max(sizes + [args.tune_size])
    work = tempfile.mkdtemp(prefix='fleet-bench-')
    results = {'cpus': os.cpu_count(), 'load_before': os.getloadavg(), 'tuning': [], 'growth': [], 'full_job': None}
    names = []
    try:
        t0 = time.time()
        names = start_containers(largest)
        results['containers_start_s'] = round(time.time() - t0, 1)
        print('started %d containers in %.1f s (load %.1f)' % (largest, results['containers_start_s'], os.getloadavg()[0]))

        if not args.no_tuning:
            inv = inventory(os.path.join(work, 'tune.json'), names[:args.tune_size])
            timed(['ansible', 'gpu_nodes', '-i', inv, '-m', 'ansible.builtin.ping'])   # warm caches
            print('\n== tuning on %d hosts ==' % args.tune_size)
            print('%-44s %9s %12s %7s' % ('setting', 'ping s', 'preflight s', 'ratio'))
            for label, extra in TUNING:
                ping, pre = measure(inv, work, extra)
                results['tuning'].append(dict(setting=label, env=extra, ping_s=round(ping, 1), preflight_s=round(pre, 1),
                                              ratio=round(pre / ping, 2)))
                print('%-44s %9.1f %12.1f %7.2f' % (label, ping, pre, pre / ping))

        print('\n== growth (ansible.cfg defaults) ==')
        print('%6s %9s %12s %7s %14s %12s' % ('hosts', 'ping s', 'preflight s', 'ratio', 'preflight/host', 'vs 25 hosts'))
        for n in sizes:
            inv = inventory(os.path.join(work, 'n%d.json' % n), names[:n])
            ping, pre = measure(inv, work)
            row = dict(hosts=n, ping_s=round(ping, 1), preflight_s=round(pre, 1), ratio=round(pre / ping, 2),
                       preflight_per_host_s=round(pre / n, 3))
            base = results['growth'][0] if results['growth'] else row
            row['time_growth'] = round(pre / base['preflight_s'], 2)
            row['host_growth'] = round(float(n) / base['hosts'], 2)
            results['growth'].append(row)
            print('%6d %9.1f %12.1f %7.2f %14.3f %6.2fx for %.0fx hosts'
                  % (n, ping, pre, pre / ping, pre / n, row['time_growth'], row['host_growth']))

        # the full job on the largest fleet with one host lost mid-run
        inv = inventory(os.path.join(work, 'full.json'), names[:largest])
        victim = names[largest // 2]
        extra = {'scale_victim': victim, 'report_dir': os.path.join(work, 'fleet'),
                 'report_preflight_dir': os.path.join(work, 'full-preflight'),
                 'report_tco': {'hardware_price': 22300, 'electricity_price': 1.0, 'hours_per_day': 8,
                                'maintenance_total': 1500}}
        elapsed, proc = timed(['ansible-playbook', '-i', inv, 'tests/integration/fleet/scale.yml', '-e', json.dumps(extra)],
                              check=False)
        with open(os.path.join(work, 'fleet', 'fleet.json')) as handle:
            summary = json.load(handle)['summary']
        ok = (proc.returncode == 4 and summary['counts']['unreachable'] == 1 and summary['unreachable_hosts'] == [victim]
              and summary['counts']['passed'] == largest - 1)
        results['full_job'] = dict(hosts=largest, seconds=round(elapsed, 1), rc=proc.returncode, victim=victim,
                                   counts=summary['counts'], as_expected=ok)
        print('\n== full job: ping, %s removed, preflight + fleet report on %d hosts ==' % (victim, largest))
        verdict = 'as expected' if ok else 'NOT AS EXPECTED'
        print('%.1f s, rc %d, counts %s -> %s' % (elapsed, proc.returncode, summary['counts'], verdict))
        results['load_after'] = os.getloadavg()
        worst_ratio = max(r['ratio'] for r in results['growth'])
        linear = all(r['time_growth'] <= r['host_growth'] * 1.1 for r in results['growth'])
        print('\npreflight / ping: worst %.2fx (target <= 3x): %s' % (worst_ratio, 'met' if worst_ratio <= 3 else 'MISSED'))
        print('growth 25 -> %d hosts: %s' % (sizes[-1], 'linear or better (within 10 %)' if linear else 'WORSE than linear'))
        results['targets'] = dict(ratio_met=worst_ratio <= 3, linear=linear, full_job_ok=ok)
        if args.json:
            with open(args.json, 'w') as handle:
                json.dump(results, handle, indent=2)
        return 0 if (worst_ratio <= 3 and ok) else 1
    finally:
        if names:
            subprocess.run(['docker', 'rm', '-f'] + names, capture_output=True, check=False)


if __name__ == '__main__':
    sys.exit(main())
