# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Probe verdict logic: fio argv and parsing, storage verdict, datasheet table, GPU verdict."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import perf

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'perf')


def fio_report():
    with open(os.path.join(FIXTURES, 'fio-3.33.json')) as handle:
        return json.load(handle)


def results(iops=450000.0, p99_us=1100.0, seq_mb=3200.0):
    return {'randread': {'iops': iops, 'bandwidth_bytes_per_second': int(iops * 4096), 'mean_latency_us': 500.0,
                         'p99_latency_us': p99_us, 'io_bytes': 1, 'runtime_ms': 10000, 'errors': 0},
            'seqread': {'iops': seq_mb, 'bandwidth_bytes_per_second': int(seq_mb * 1e6), 'mean_latency_us': 4000.0,
                        'p99_latency_us': 9000.0, 'io_bytes': 1, 'runtime_ms': 10000, 'errors': 0}}


def test_fio_jobs_read_only_a_test_file_with_two_stonewalled_jobs():
    argv = perf.fio_jobs('/data/.openautoglm-fio-probe', '1G', 10)
    assert argv[0] == '--output-format=json'
    assert argv.count('--filename=/data/.openautoglm-fio-probe') == 2
    assert not [a for a in argv if a.startswith('--filename=/dev/')]
    assert [a for a in argv if a.startswith('--rw=')] == ['--rw=randread', '--rw=read']
    assert '--stonewall' in argv[argv.index('--name=seqread'):]
    assert '--bs=4k' in argv and '--iodepth=64' in argv and '--numjobs=4' in argv and '--direct=1' in argv
    assert '--direct=0' in perf.fio_jobs('/x/f', '1G', 1, direct=False)


def test_parse_real_fio_output():
    parsed = perf.parse_fio(fio_report())
    rand, seq = parsed['randread'], parsed['seqread']
    assert rand['iops'] > 1000 and seq['bandwidth_bytes_per_second'] > 1e6
    assert rand['p99_latency_us'] is not None and rand['p99_latency_us'] > 0
    assert rand['mean_latency_us'] > 0
    assert rand['errors'] == 0


def test_parse_fio_without_a_job_is_an_error():
    report = fio_report()
    report['jobs'] = [j for j in report['jobs'] if j['jobname'] != 'seqread']
    with pytest.raises(ValueError, match='no seqread job'):
        perf.parse_fio(report)


def test_fast_nvme_passes():
    v = perf.storage_verdict(results(), '/data/models', True, ['nvme0n1'])
    assert v['passed'] and v['shortfalls'] == [] and v['warnings'] == []
    assert v['summary'].startswith('PASS: /data/models is on NVMe (nvme0n1). 450 000 IOPS 4k random read (p99 1 100 us), 3 200 MB/s')
    assert [c['status'] for c in v['checks']] == ['pass'] * 4


def test_not_on_nvme_is_said_and_warns_or_fails():
    v = perf.storage_verdict(results(), '/data/models', False, ['vda'])
    assert v['passed']
    assert v['summary'].startswith('PASS: /data/models is not on NVMe (it is on vda).')
    assert v['warnings'] == ['/data/models is not on NVMe (it is on vda)']
    v = perf.storage_verdict(results(), '/data/models', False, ['vda'], require_nvme=True)
    assert not v['passed']
    assert v['summary'].startswith('FAIL: /data/models is not on NVMe (it is on vda).')


def test_unknown_backing_device_names_the_reason():
    v = perf.storage_verdict(results(), '/m', None, [], notes=['/ is on overlay'])
    assert 'whether /m is on NVMe is unknown (/ is on overlay)' in v['summary']


@pytest.mark.parametrize('kwargs, failed', [
    (dict(iops=99999.0), ['randread_iops']),
    (dict(p99_us=2500.0), ['randread_p99_latency']),
    (dict(seq_mb=1499.0), ['seqread_throughput']),
    (dict(iops=5000.0, p99_us=30000.0, seq_mb=150.0), ['randread_iops', 'randread_p99_latency', 'seqread_throughput']),
    (dict(iops=100000.0, p99_us=2000.0, seq_mb=1500.0), []),   # thresholds are inclusive
])
def test_thresholds(kwargs, failed):
    v = perf.storage_verdict(results(**kwargs), '/d', True, ['nvme0n1'])
    assert [c['name'] for c in v['checks'] if c['status'] == 'fail'] == failed
    assert v['passed'] == (not failed)
    assert len(v['shortfalls']) == len(failed)
    if failed:
        assert 'below threshold: ' in v['summary']


def test_latency_check_can_be_off_and_missing_percentile_skips():
    v = perf.storage_verdict(results(p99_us=99999.0), '/d', True, max_randread_p99_latency_us=0)
    assert 'randread_p99_latency' not in [c['name'] for c in v['checks']]
    r = results()
    r['randread']['p99_latency_us'] = None
    v = perf.storage_verdict(r, '/d', True)
    assert [c['status'] for c in v['checks'] if c['name'] == 'randread_p99_latency'] == ['skip']


@pytest.mark.parametrize('name, model', [
    ('NVIDIA H100 80GB HBM3', 'H100 SXM'),
    ('NVIDIA H100 PCIe', 'H100 PCIe'),
    ('NVIDIA H100 NVL', 'H100 NVL'),
    ('NVIDIA H200', 'H200'),
    ('NVIDIA GH200 480GB', 'GH200'),
    ('NVIDIA B200', 'B200'),
    ('NVIDIA A100-SXM4-80GB', 'A100 SXM 80GB'),
    ('NVIDIA A100 80GB PCIe', 'A100 80GB PCIe'),
    ('NVIDIA A100-PCIE-40GB', 'A100 40GB'),
    ('NVIDIA L40S', 'L40S'),
    ('NVIDIA L40', 'L40'),
    ('NVIDIA L4', 'L4'),
    ('NVIDIA A10', 'A10'),
    ('NVIDIA A100-SXM4-40GB', 'A100 40GB'),
])
def test_datasheet_lookup(name, model):
    assert perf.datasheet_for(name)['model'] == model


def test_datasheet_unknown_and_extra_first():
    assert perf.datasheet_for('NVIDIA GeForce RTX 4090') is None
    extra = [{'match': 'H100', 'model': 'site H100', 'memory_bandwidth_tbps': 3.0, 'bf16_tflops': 900.0}]
    assert perf.datasheet_for('NVIDIA H100 80GB HBM3', extra)['model'] == 'site H100'


def gpu(index, name='NVIDIA H100 80GB HBM3', tbps=2.9, tflops=720.0, error=None):
    return {'index': index, 'uuid': 'GPU-%d' % index, 'name': name, 'memory_bandwidth_bytes_per_second': tbps * 1e12,
            'bf16_flops_per_second': tflops * 1e12, 'error': error}


def test_gpu_verdict_pass_and_fail_named_by_index_and_uuid():
    v = perf.gpu_verdict({'gpus': [gpu(0), gpu(1, tbps=2.0), gpu(2, tflops=500.0)]})
    assert not v['passed']
    assert [g['status'] for g in v['gpus']] == ['pass', 'fail', 'fail']
    assert v['gpus'][0]['required_memory_bandwidth_tbps'] == pytest.approx(3.35 * 0.7, abs=1e-3)
    assert v['gpus'][0]['required_bf16_tflops'] == pytest.approx(989 * 0.6, abs=0.1)
    assert v['shortfalls'][0].startswith('GPU 1 (GPU-1, NVIDIA H100 80GB HBM3): memory bandwidth 2.00 TB/s < 2.35 TB/s '
                                         '(70% of H100 SXM datasheet 3.35 TB/s)')
    assert v['shortfalls'][1].startswith('GPU 2 (GPU-2, NVIDIA H100 80GB HBM3): bf16 matmul 500 TFLOP/s < 593 TFLOP/s')
    assert v['summary'].startswith('FAIL: GPU 1 (GPU-1')


def test_gpu_verdict_fractions_are_configurable():
    assert perf.gpu_verdict({'gpus': [gpu(0, tbps=2.0)]}, min_bandwidth_fraction=0.5)['passed']
    assert not perf.gpu_verdict({'gpus': [gpu(0)]}, min_bf16_fraction=0.9)['passed']


def test_gpu_verdict_unknown_model_warns_and_error_fails():
    v = perf.gpu_verdict({'gpus': [gpu(0, name='NVIDIA GeForce RTX 4090')]})
    assert v['passed'] and v['gpus'][0]['status'] == 'warn'
    assert 'no datasheet figures' in v['warnings'][0]
    v = perf.gpu_verdict({'gpus': [gpu(0, error='RuntimeError: CUDA error: out of memory')]})
    assert not v['passed'] and v['shortfalls'][0].startswith('GPU 0 (GPU-0, NVIDIA H100 80GB HBM3): probe failed')


def test_gpu_verdict_no_gpu_and_probe_error():
    v = perf.gpu_verdict({'gpus': [], 'note': 'torch 2.5.1+cpu sees no CUDA device'})
    assert v['passed'] and v['summary'] == 'SKIP: no GPU visible to torch (torch 2.5.1+cpu sees no CUDA device)'
    v = perf.gpu_verdict({'gpus': [], 'note': 'none'}, min_gpu_count=8)
    assert not v['passed'] and v['shortfalls'] == ['0 GPU(s) visible to torch, need >= 8']
    v = perf.gpu_verdict({'gpus': [], 'error': 'torch is not importable by /usr/bin/python3'})
    assert not v['passed'] and v['summary'] == 'FAIL: GPU probe failed: torch is not importable by /usr/bin/python3'


def test_required_nvme_is_named_once_in_the_summary():
    v = perf.storage_verdict(results(iops=10.0), '/m', False, ['sda'], require_nvme=True)
    assert v['summary'] == ('FAIL: /m is not on NVMe (it is on sda). 10 IOPS 4k random read (p99 1 100 us), 3 200 MB/s '
                            'sequential read; below threshold: 4k random read: 10 IOPS, need >= 100 000; NVMe is required.')
    assert len(v['shortfalls']) == 2
