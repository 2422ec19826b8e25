"""Benchmark the fact gathering on a real GPU host, all figures from ONE run.

1. gpu_facts' collector (NVML through nvidia-ml-py, PCI sysfs for driver binding) against
   the naive way: run `nvidia-smi --query-gpu=<same fields> --format=csv` and parse it.
   Both gather the same per-GPU fields and host driver/CUDA versions.
2. The whole preflight (`playbooks/preflight.yml`, gather_facts off, one module call)
   against Ansible's `setup` module alone (a playbook that only gathers facts), both through
   ansible-playbook with a local connection, alternating runs.

Prints a table and the ratios; writes JSON to --json. Usage (on the GPU host, repo root):
    python3 tests/benchmarks/facts_bench.py --repeat 20 --playbook-repeat 5 --json out.json
Targets (issue 3): NVML path >= 2x faster than nvidia-smi; preflight <= 1.5x setup.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SMI_FIELDS = ('index,name,uuid,memory.total,compute_cap,pci.bus_id,pcie.link.gen.current,'
              'pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,ecc.mode.current,'
              'mig.mode.current,persistence_mode,power.limit,vbios_version,driver_version')


def collection_path():
    base = os.path.join(REPO, '.collections')
    link = os.path.join(base, 'ansible_collections', 'openautoglm', 'deploy')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link))
        os.symlink(REPO, link)
    sys.path.insert(0, base)
    return base


def nvidia_smi_facts():
    """The naive way: one nvidia-smi process per gather, CSV parsed by hand."""
    out = subprocess.run(['nvidia-smi', '--query-gpu=' + SMI_FIELDS, '--format=csv,noheader,nounits'],
                         check=True, capture_output=True, text=True).stdout
    keys = SMI_FIELDS.split(',')
    devices = [dict(zip(keys, [v.strip() for v in line.split(',')])) for line in out.strip().splitlines()]
    cuda = subprocess.run(['nvidia-smi'], check=True, capture_output=True, text=True).stdout
    cuda_version = cuda.split('CUDA Version:')[1].split()[0] if 'CUDA Version:' in cuda else None
    return {'devices': devices, 'cuda_driver_version': cuda_version}


def timed(func, repeat):
    samples = []
    result = None
    for _round in range(repeat):
        start = time.perf_counter()
        result = func()
        samples.append(time.perf_counter() - start)
    return samples, result


def summary(samples):
    return {'min_s': min(samples), 'median_s': statistics.median(samples), 'max_s': max(samples), 'n': len(samples)}


def run_playbook(args, env):
    start = time.perf_counter()
    proc = subprocess.run(['ansible-playbook'] + args, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit('ansible-playbook %s failed (%d)' % (' '.join(args), proc.returncode))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--playbook-repeat', type=int, default=5)
    parser.add_argument('--json')
    parser.add_argument('--preflight-preset', default='reference')
    opts = parser.parse_args()
    coll = collection_path()
    from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu
    from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths

    results = {}
    nvml_samples, facts = timed(lambda: gpu.collect(HostPaths()), opts.repeat)
    results['gpu_facts_nvml'] = summary(nvml_samples)
    results['gpu_facts_source'] = facts['source']
    results['gpu_count'] = facts['count']
    if shutil.which('nvidia-smi'):
        smi_samples, smi = timed(nvidia_smi_facts, opts.repeat)
        results['nvidia_smi_parse'] = summary(smi_samples)
        results['ratio_smi_over_nvml'] = statistics.median(smi_samples) / statistics.median(nvml_samples)
        results['same_gpus'] = [d['uuid'] for d in facts['devices']] == [d['uuid'] for d in smi['devices']]

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=coll, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
               ANSIBLE_HOST_KEY_CHECKING='False')
    interp = 'ansible_python_interpreter=%s' % sys.executable
    report_dir = tempfile.mkdtemp(prefix='preflight-bench-')
    setup_play = os.path.join(report_dir, 'setup-only.yml')
    with open(setup_play, 'w') as handle:
        handle.write('- name: Setup only\n  hosts: all\n  gather_facts: true\n  tasks: []\n')
    common = ['-c', 'local', '-i', 'localhost,', '-e', interp]
    preflight_args = common + ['-e', 'preflight_hosts=all', '-e', 'preflight_report_dir=%s' % report_dir,
                               '-e', 'preflight_preset=%s' % opts.preflight_preset,
                               '-e', 'preflight_fail_on_shortfall=false', 'playbooks/preflight.yml']
    setup_args = common + [setup_play]
    run_playbook(setup_args, env)  # warm caches (python bytecode, page cache) for both
    run_playbook(preflight_args, env)
    pre, setup = [], []
    for _round in range(opts.playbook_repeat):
        setup.append(run_playbook(setup_args, env))
        pre.append(run_playbook(preflight_args, env))
    results['playbook_setup_only'] = summary(setup)
    results['playbook_preflight'] = summary(pre)
    results['ratio_preflight_over_setup'] = statistics.median(pre) / statistics.median(setup)
    with open(os.path.join(report_dir, 'localhost.json')) as handle:
        results['preflight_report'] = json.load(handle)

    print('%-28s %10s %10s %10s' % ('measure', 'min s', 'median s', 'max s'))
    for key in ('gpu_facts_nvml', 'nvidia_smi_parse', 'playbook_setup_only', 'playbook_preflight'):
        if key in results:
            r = results[key]
            print('%-28s %10.4f %10.4f %10.4f' % (key, r['min_s'], r['median_s'], r['max_s']))
    if 'ratio_smi_over_nvml' in results:
        print('nvidia-smi / NVML (median): %.2fx  (target >= 2x)' % results['ratio_smi_over_nvml'])
    print('preflight / setup (median): %.2fx  (target <= 1.5x)' % results['ratio_preflight_over_setup'])
    if opts.json:
        with open(opts.json, 'w') as handle:
            json.dump(results, handle, indent=2, sort_keys=True, default=str)


if __name__ == '__main__':
    main()
