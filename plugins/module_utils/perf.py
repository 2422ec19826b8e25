# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Performance probes: fio job lines and results, GPU datasheet figures, verdicts.

Pure Python, no Ansible imports: used by the fio_probe module (on the managed host) and the
gpu_probe_verdict filter (on the controller), and unit-tested directly.

Units are decimal, as on datasheets: MB/s = 10^6 bytes/s, TB/s = 10^12 bytes/s,
TFLOP/s = 10^12 floating-point operations per second.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

PROBE_FILE = '.openautoglm-fio-probe'

# status of a check, worst last
PASS, WARN, FAIL, SKIP = 'pass', 'warn', 'fail', 'skip'


def fio_jobs(path, size, runtime, randread_iodepth=64, randread_bs='4k', randread_numjobs=4,
             seqread_bs='1M', seqread_iodepth=16, ioengine='libaio', direct=True):
    """argv for one fio run with two jobs run one after the other (stonewall).

    ``randread``: ``randread_numjobs`` x ``randread_iodepth`` outstanding 4k random reads;
    ``seqread``: one stream of 1M sequential reads. Both read the test file ``path``
    (laid out by fio with writes to that file only), for ``runtime`` seconds each.
    """
    common = ['--filename=%s' % path, '--size=%s' % size, '--ioengine=%s' % ioengine,
              '--direct=%d' % (1 if direct else 0), '--runtime=%d' % int(runtime), '--time_based',
              '--invalidate=1', '--randrepeat=0', '--norandommap', '--group_reporting']
    return (['--output-format=json'] +
            ['--name=randread', '--rw=randread', '--bs=%s' % randread_bs, '--iodepth=%d' % randread_iodepth,
             '--numjobs=%d' % randread_numjobs] + common +
            ['--name=seqread', '--stonewall', '--rw=read', '--bs=%s' % seqread_bs,
             '--iodepth=%d' % seqread_iodepth, '--numjobs=1'] + common)


def _percentile(clat, pct):
    percentiles = (clat or {}).get('percentile') or {}
    for key, value in percentiles.items():
        if abs(float(key) - pct) < 1e-6:
            return value
    return None


def parse_fio(report):
    """fio --output-format=json document -> {'randread': {...}, 'seqread': {...}}.

    Latencies in microseconds, bandwidth in bytes per second (fio's bw_bytes).
    """
    results = {}
    for job in report.get('jobs', []):
        name = job.get('jobname')
        read = job.get('read') or {}
        clat = read.get('clat_ns') or {}
        lat = read.get('lat_ns') or {}
        p99 = _percentile(clat, 99.0)
        results[name] = {
            'iops': round(float(read.get('iops', 0.0)), 1),
            'bandwidth_bytes_per_second': int(read.get('bw_bytes', 0)),
            'mean_latency_us': round(float(lat.get('mean', clat.get('mean', 0.0))) / 1000.0, 1),
            'p99_latency_us': round(p99 / 1000.0, 1) if p99 is not None else None,
            'io_bytes': int(read.get('io_bytes', 0)),
            'runtime_ms': int(read.get('runtime', 0)),
            'errors': int(job.get('error', 0)),
        }
    missing = [name for name in ('randread', 'seqread') if name not in results]
    if missing:
        raise ValueError('fio output has no %s job' % ' or '.join(missing))
    return results


def _check(name, status, measured, required, unit, message):
    return {'name': name, 'status': status, 'measured': measured, 'required': required, 'unit': unit,
            'message': message}


def storage_verdict(results, path, on_nvme, disks=None, min_randread_iops=100000,
                    max_randread_p99_latency_us=2000, min_seqread_mb_per_second=1500,
                    require_nvme=False, notes=None):
    """Judge fio results; ``on_nvme`` as nvme_facts reports it (True, False, None = unknown).

    Returns {'passed', 'checks', 'shortfalls', 'warnings', 'summary'}.
    """
    rand = results['randread']
    seq = results['seqread']
    seq_mb = round(seq['bandwidth_bytes_per_second'] / 1e6, 1)
    checks = []

    iops = rand['iops']
    checks.append(_check(
        'randread_iops', PASS if iops >= min_randread_iops else FAIL, iops, min_randread_iops, 'IOPS',
        '4k random read: %s IOPS, need >= %s' % (_num(iops), _num(min_randread_iops))))
    p99 = rand['p99_latency_us']
    if max_randread_p99_latency_us:
        status = SKIP if p99 is None else (PASS if p99 <= max_randread_p99_latency_us else FAIL)
        checks.append(_check(
            'randread_p99_latency', status, p99, max_randread_p99_latency_us, 'us',
            '4k random read p99 latency: %s us, need <= %s us' % (_num(p99), _num(max_randread_p99_latency_us))))
    checks.append(_check(
        'seqread_throughput', PASS if seq_mb >= min_seqread_mb_per_second else FAIL, seq_mb,
        min_seqread_mb_per_second, 'MB/s',
        'sequential read: %s MB/s, need >= %s MB/s' % (_num(seq_mb), _num(min_seqread_mb_per_second))))

    where = ', '.join(disks or []) or 'an unknown device'
    if on_nvme is True:
        checks.append(_check('on_nvme', PASS, True, require_nvme, None, '%s is on NVMe (%s)' % (path, where)))
    else:
        if on_nvme is False:
            text = '%s is not on NVMe (it is on %s)' % (path, where)
        else:
            text = 'whether %s is on NVMe is unknown (%s)' % (
                path, '; '.join(notes or []) or 'its backing device could not be identified')
        checks.append(_check('on_nvme', FAIL if require_nvme else WARN, on_nvme, require_nvme, None, text))

    shortfalls = [c['message'] for c in checks if c['status'] == FAIL]
    warnings = [c['message'] for c in checks if c['status'] == WARN]
    passed = not shortfalls
    nvme = [c for c in checks if c['name'] == 'on_nvme'][0]
    below = [c['message'] for c in checks if c['status'] == FAIL and c['name'] != 'on_nvme']
    tail = ('below threshold: ' + '; '.join(below)) if below else 'all thresholds met'
    if nvme['status'] == FAIL:
        tail += '; NVMe is required'
    summary = '%s: %s. %s IOPS 4k random read (p99 %s us), %s MB/s sequential read; %s.' % (
        'PASS' if passed else 'FAIL', nvme['message'], _num(iops), _num(p99), _num(seq_mb), tail)
    return {'passed': passed, 'checks': checks, 'shortfalls': shortfalls, 'warnings': warnings,
            'summary': summary}


# Datasheet figures per GPU model: memory bandwidth (TB/s) and dense bf16 tensor throughput
# (TFLOP/s, without sparsity). First match wins: specific names before general ones.
GPU_DATASHEET = [
    {'match': r'GB200|B200', 'model': 'B200', 'memory_bandwidth_tbps': 8.0, 'bf16_tflops': 2250.0},
    {'match': r'GH200', 'model': 'GH200', 'memory_bandwidth_tbps': 4.0, 'bf16_tflops': 989.0},
    {'match': r'H200', 'model': 'H200', 'memory_bandwidth_tbps': 4.8, 'bf16_tflops': 989.0},
    {'match': r'H100 NVL', 'model': 'H100 NVL', 'memory_bandwidth_tbps': 3.9, 'bf16_tflops': 835.0},
    {'match': r'H100.*PCIe', 'model': 'H100 PCIe', 'memory_bandwidth_tbps': 2.0, 'bf16_tflops': 756.0},
    {'match': r'H100|H800', 'model': 'H100 SXM', 'memory_bandwidth_tbps': 3.35, 'bf16_tflops': 989.0},
    {'match': r'A100.*80GB.*PCIe|A100 80GB PCIe', 'model': 'A100 80GB PCIe', 'memory_bandwidth_tbps': 1.935,
     'bf16_tflops': 312.0},
    {'match': r'A100.*SXM.*80GB', 'model': 'A100 SXM 80GB', 'memory_bandwidth_tbps': 2.039, 'bf16_tflops': 312.0},
    {'match': r'A100', 'model': 'A100 40GB', 'memory_bandwidth_tbps': 1.555, 'bf16_tflops': 312.0},
    {'match': r'L40S', 'model': 'L40S', 'memory_bandwidth_tbps': 0.864, 'bf16_tflops': 362.0},
    {'match': r'L40', 'model': 'L40', 'memory_bandwidth_tbps': 0.864, 'bf16_tflops': 181.0},
    {'match': r'\bL4\b', 'model': 'L4', 'memory_bandwidth_tbps': 0.3, 'bf16_tflops': 121.0},
    {'match': r'A10\b', 'model': 'A10', 'memory_bandwidth_tbps': 0.6, 'bf16_tflops': 125.0},
]


def datasheet_for(name, extra=None):
    """The datasheet entry whose ``match`` regex finds ``name`` (``extra`` entries first)."""
    for entry in list(extra or []) + GPU_DATASHEET:
        if re.search(entry['match'], name or '', re.IGNORECASE):
            return entry
    return None


def gpu_verdict(measurements, min_bandwidth_fraction=0.7, min_bf16_fraction=0.6, extra_datasheet=None,
                min_gpu_count=0):
    """Judge gpu_bench.py output against datasheet x fraction, per GPU.

    ``measurements``: {'gpus': [{'index', 'uuid', 'name', 'memory_bandwidth_bytes_per_second',
    'bf16_flops_per_second'}], 'error': str|None, ...}. A GPU with no datasheet entry is
    reported (warning) but does not fail the verdict.
    """
    gpus = []
    shortfalls = []
    warnings = []
    if measurements.get('error'):
        shortfalls.append('GPU probe failed: %s' % measurements['error'])
    for gpu in measurements.get('gpus', []):
        who = 'GPU %s (%s, %s)' % (gpu.get('index'), gpu.get('uuid') or 'no UUID', gpu.get('name'))
        sheet = datasheet_for(gpu.get('name'), extra_datasheet)
        bw_tbps = (gpu.get('memory_bandwidth_bytes_per_second') or 0) / 1e12
        tflops = (gpu.get('bf16_flops_per_second') or 0) / 1e12
        row = {'index': gpu.get('index'), 'uuid': gpu.get('uuid'), 'name': gpu.get('name'),
               'memory_bandwidth_tbps': round(bw_tbps, 3), 'bf16_tflops': round(tflops, 1),
               'datasheet': None, 'required_memory_bandwidth_tbps': None, 'required_bf16_tflops': None,
               'status': PASS, 'problems': []}
        if gpu.get('error'):
            row['status'] = FAIL
            row['problems'].append('probe failed: %s' % gpu['error'])
        if sheet is None:
            if row['status'] != FAIL:
                row['status'] = WARN
            warnings.append('%s: no datasheet figures for this model; measured %.2f TB/s, %.0f TFLOP/s bf16 '
                            '(add it with perf_probe_gpu_datasheet)' % (who, bw_tbps, tflops))
        else:
            need_bw = round(sheet['memory_bandwidth_tbps'] * min_bandwidth_fraction, 3)
            need_tflops = round(sheet['bf16_tflops'] * min_bf16_fraction, 1)
            row.update(datasheet=sheet['model'], required_memory_bandwidth_tbps=need_bw,
                       required_bf16_tflops=need_tflops)
            if bw_tbps < need_bw:
                row['problems'].append('memory bandwidth %.2f TB/s < %.2f TB/s (%d%% of %s datasheet %.2f TB/s)' % (
                    bw_tbps, need_bw, round(min_bandwidth_fraction * 100), sheet['model'],
                    sheet['memory_bandwidth_tbps']))
            if tflops < need_tflops:
                row['problems'].append('bf16 matmul %.0f TFLOP/s < %.0f TFLOP/s (%d%% of %s datasheet %.0f)' % (
                    tflops, need_tflops, round(min_bf16_fraction * 100), sheet['model'], sheet['bf16_tflops']))
            if row['problems']:
                row['status'] = FAIL
        if row['status'] == FAIL:
            shortfalls.append('%s: %s' % (who, '; '.join(row['problems'])))
        gpus.append(row)
    if len(gpus) < min_gpu_count:
        shortfalls.append('%d GPU(s) visible to torch, need >= %d' % (len(gpus), min_gpu_count))
    passed = not shortfalls
    if not gpus and passed:
        summary = 'SKIP: no GPU visible to torch%s' % (
            ' (%s)' % measurements['note'] if measurements.get('note') else '')
    else:
        summary = '%s: %s' % ('PASS' if passed else 'FAIL', '; '.join(shortfalls) if shortfalls else ', '.join(
            'GPU %s %.2f TB/s %.0f TFLOP/s bf16' % (g['index'], g['memory_bandwidth_tbps'], g['bf16_tflops'])
            for g in gpus))
    return {'passed': passed, 'gpus': gpus, 'shortfalls': shortfalls, 'warnings': warnings, 'summary': summary}


def _num(value):
    if value is None:
        return 'n/a'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return '{:,}'.format(value).replace(',', ' ')
    return '{:,.1f}'.format(value).replace(',', ' ')
