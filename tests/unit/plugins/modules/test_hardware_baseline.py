# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""hardware_baseline module: verdicts over given `hardware`, argument validation.

Every test either passes all four `hardware` keys or replaces the collectors, and the
``no_live_gathering`` fixture makes any live collection fail the test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import pytest

from ansible_collections.openautoglm.deploy.plugins.modules import hardware_baseline as hb
from ansible_collections.openautoglm.deploy.tests.unit.plugins.module_utils.test_baseline import (
    A100_40, H100, RTX_3090_NVML, laptop, reference_host)

GIB = 2 ** 30

LAPTOP_SHORTFALLS = [
    'GPU: none found, need >= 1 GPU(s) with >= 40 GB and compute capability >= 8.0',
    'CPU: 4 physical cores, need >= 16',
    'RAM: 23.4 GB installed, need >= 128 GB',
    'NVMe: none found, need >= 1 TB NVMe',
]
LAPTOP_WARNINGS = [
    'RAM ECC: cannot be confirmed on this host, ECC enabled (expected)',
    'Model path: /data/models on /dev/sda2 (not NVMe), model directory on NVMe (recommended)',
]
REFERENCE_THRESHOLDS = {
    'min_gpu_count': 1, 'min_gpu_memory_gb': 40, 'min_compute_capability': '8.0', 'min_cpu_cores': 16,
    'cpu_core_kind': 'physical', 'min_ram_gb': 128, 'require_ecc': False, 'min_nvme_tb': 1.0,
    'require_model_path_on_nvme': False}


@pytest.fixture(autouse=True)
def no_live_gathering(monkeypatch):
    """Any collector reaching the live host fails the test."""
    for name in ('gpu', 'cpu', 'memory', 'nvme'):
        def _refuse(*args, **kwargs):
            raise AssertionError('live collection attempted')
        monkeypatch.setattr(getattr(hb, name), 'collect', _refuse)


@pytest.mark.parametrize('check_mode', [False, True])
def test_reference_host_passes(run_module, check_mode):
    hardware = reference_host()
    status, result = run_module(hb.main, {'hardware': hardware}, check_mode=check_mode)
    assert status == 'exit'
    assert result['changed'] is False
    assert result['passed'] is True
    assert result['msg'] == 'Host meets the reference hardware baseline'
    assert result['preset'] == 'reference'
    assert result['thresholds'] == REFERENCE_THRESHOLDS
    assert result['shortfalls'] == []
    assert result['warnings_list'] == []
    assert result['hardware'] == hardware
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'pass'), ('cpu_cores', 'pass'), ('ram', 'pass'), ('ram_ecc', 'pass'),
        ('nvme', 'pass'), ('model_path_nvme', 'pass')]
    for item in result['checks']:
        assert sorted(item) == ['measured', 'message', 'name', 'required', 'status']


def test_pass_with_warnings_names_them(run_module):
    hardware = reference_host(gpu={'devices': [dict(H100, mig_mode='enabled')]})
    hardware['memory'] = dict(hardware['memory'], ecc='unknown')
    status, result = run_module(hb.main, {'hardware': hardware})
    assert (status, result['passed']) == ('exit', True)
    assert result['warnings_list'] == [
        'GPU MIG: enabled on GPU 0; the service sees MIG slices, not the whole GPU memory',
        'RAM ECC: cannot be confirmed on this host, ECC enabled (expected)']
    assert result['msg'] == (
        'Host meets the reference hardware baseline (warnings: GPU MIG: enabled on GPU 0; the service sees '
        'MIG slices, not the whole GPU memory; RAM ECC: cannot be confirmed on this host, ECC enabled (expected))')


@pytest.mark.parametrize('check_mode', [False, True])
def test_gpu_less_laptop_fails_listing_every_shortfall(run_module, check_mode):
    status, result = run_module(hb.main, {'hardware': laptop()}, check_mode=check_mode)
    assert status == 'fail'
    assert result['failed'] is True
    assert result['passed'] is False
    assert result['changed'] is False
    assert result['shortfalls'] == LAPTOP_SHORTFALLS
    assert result['warnings_list'] == LAPTOP_WARNINGS
    assert result['msg'] == 'Host is below the reference hardware baseline: ' + '; '.join(LAPTOP_SHORTFALLS)
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'fail'), ('cpu_cores', 'fail'), ('ram', 'fail'), ('ram_ecc', 'warn'),
        ('nvme', 'fail'), ('model_path_nvme', 'warn')]
    assert result['thresholds'] == REFERENCE_THRESHOLDS


def test_fail_on_shortfall_false_exits_with_verdict(run_module):
    status, result = run_module(hb.main, {'hardware': laptop(), 'fail_on_shortfall': False})
    assert status == 'exit'
    assert 'failed' not in result
    assert result['passed'] is False
    assert result['shortfalls'] == LAPTOP_SHORTFALLS
    assert result['msg'] == 'Host is below the reference hardware baseline: ' + '; '.join(LAPTOP_SHORTFALLS)


def test_laptop_passes_development_preset(run_module):
    status, result = run_module(hb.main, {'hardware': laptop(), 'preset': 'development'})
    assert (status, result['passed'], result['preset']) == ('exit', True, 'development')
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'skip'), ('cpu_cores', 'pass'), ('ram', 'pass'), ('ram_ecc', 'warn'),
        ('nvme', 'skip'), ('model_path_nvme', 'warn')]


def test_laptop_passes_lowered_thresholds(run_module):
    args = {'hardware': laptop(), 'min_gpu_count': 0, 'min_cpu_cores': 4, 'min_ram_gb': 16, 'min_nvme_tb': 0}
    status, result = run_module(hb.main, args)
    assert (status, result['passed']) == ('exit', True)
    assert result['thresholds'] == dict(REFERENCE_THRESHOLDS, min_gpu_count=0, min_cpu_cores=4,
                                        min_ram_gb=16.0, min_nvme_tb=0.0)


@pytest.mark.parametrize('gpu, args, shortfalls', [
    pytest.param([RTX_3090_NVML], {}, [
        'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA GeForce RTX 3090: 25.8 GB < 40.0 GB VRAM), need >= 1 GPU(s) '
        'with >= 40 GB and compute capability >= 8.0'], id='rtx3090-vram'),
    pytest.param([A100_40], {}, [], id='a100-40gb-passes'),
    pytest.param([A100_40], {'min_gpu_memory_gb': 80}, [
        'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA A100-PCIE-40GB: 42.5 GB < 80.0 GB VRAM), need >= 1 GPU(s) '
        'with >= 80 GB and compute capability >= 8.0'], id='a100-40gb-vs-80'),
    pytest.param([H100], {'preset': 'h100', 'min_cpu_cores': 16, 'min_ram_gb': 256, 'require_ecc': False}, [
        'RAM: 137.4 GB installed, need >= 256 GB'], id='h100-preset-overrides'),
])
def test_gpu_and_preset_verdicts(run_module, gpu, args, shortfalls):
    hardware = reference_host(gpu={'devices': gpu},
                              cpu={'physical_cores': 16, 'logical_cpus': 32},
                              memory={'installed_bytes': 128 * GIB, 'installed_source': 'smbios',
                                      'visible_bytes': 125 * 10 ** 9, 'ecc': 'yes'})
    status, result = run_module(hb.main, dict(args, hardware=hardware, fail_on_shortfall=False))
    assert status == 'exit'
    assert result['shortfalls'] == shortfalls
    assert result['passed'] is (not shortfalls)


def test_require_flags_turn_warnings_into_failures(run_module):
    hardware = laptop()
    args = {'hardware': hardware, 'preset': 'development', 'require_ecc': True, 'require_model_path_on_nvme': True}
    status, result = run_module(hb.main, args)
    assert status == 'fail'
    assert result['shortfalls'] == [
        'RAM ECC: cannot be confirmed on this host, ECC enabled (required)',
        'Model path: /data/models on /dev/sda2 (not NVMe), model directory on NVMe (required)']


# --------------------------------------------------------------------------- live collection

def test_missing_hardware_keys_are_gathered_with_model_path(run_module, monkeypatch):
    calls = []
    given = laptop()

    def fake(name):
        def _collect(paths, **kwargs):
            calls.append((name, paths.root, kwargs))
            return given[name]
        return _collect

    for name in ('gpu', 'cpu', 'memory', 'nvme'):
        monkeypatch.setattr(getattr(hb, name), 'collect', fake(name))
    status, result = run_module(hb.main, {'hardware': {'gpu': given['gpu']}, 'model_path': '/srv/llm',
                                          'fail_on_shortfall': False})
    assert status == 'exit'
    assert sorted(calls) == [('cpu', '/', {}), ('memory', '/', {}), ('nvme', '/', {'path': '/srv/llm'})]
    assert result['shortfalls'] == LAPTOP_SHORTFALLS


def test_model_path_default(run_module, monkeypatch):
    seen = []
    monkeypatch.setattr(hb.nvme, 'collect', lambda paths, path: seen.append(path) or laptop()['nvme'])
    given = laptop()
    del given['nvme']
    run_module(hb.main, {'hardware': given, 'fail_on_shortfall': False})
    assert seen == ['/data/models']


# --------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize('args, pattern', [
    pytest.param({'preset': 'h200'},
                 r'^value of preset must be one of: development, h100, reference, got: h200$', id='unknown-preset'),
    pytest.param({'cpu_core_kind': 'threads'},
                 r'^value of cpu_core_kind must be one of: physical, logical, got: threads$', id='cpu-core-kind'),
    pytest.param({'min_compute_capability': 'abc'},
                 r'''^Invalid hardware_baseline thresholds: min_compute_capability: must look like "8\.0" '''
                 r'''\(major\.minor\), got 'abc'$''', id='cc-abc'),
    pytest.param({'min_compute_capability': '9'},
                 r'''^Invalid hardware_baseline thresholds: min_compute_capability: must look like "8\.0" '''
                 r'''\(major\.minor\), got '9'$''', id='cc-no-minor'),
    pytest.param({'min_ram_gb': -1},
                 r'^Invalid hardware_baseline thresholds: min_ram_gb: must be 0 \(no check\) or from 1 to 64000, got -1$', id='negative-ram'),
    pytest.param({'min_gpu_count': -2},
                 r'^Invalid hardware_baseline thresholds: min_gpu_count: must be 0 \(no check\) or from 1 to 64, got -2$', id='negative-gpus'),
    pytest.param({'min_nvme_tb': -0.5, 'min_cpu_cores': -1},
                 r'^Invalid hardware_baseline thresholds: min_cpu_cores: must be 0 \(no check\) or from 1 to 4096, got -1; '
                 r'min_nvme_tb: must be 0 \(no check\) or from 0\.01 to 1000, got -0\.5$', id='two-negatives'),
    pytest.param({'min_gpu_memory_gb': 0.0001},
                 r'^Invalid hardware_baseline thresholds: min_gpu_memory_gb: must be 0 \(no check\) or from 1 to 1024, got 0\.0001$',
                 id='tiny-gpu-memory'),
    pytest.param({'min_compute_capability': '99.0'},
                 r'''^Invalid hardware_baseline thresholds: min_compute_capability: must be "0\.0" \(no check\) or from 3\.0 '''
                 r'''to 12\.9, got '99\.0'$''', id='cc-99'),
    pytest.param({'model_path': 'data/models'},
                 r"^model_path must be absolute, got 'data/models': give the full path of the model directory$", id='relative-model-path'),
    pytest.param({'hardware': {'gpus': {}, 'disk': {}, 'cpu': {}}},
                 r'^hardware: unknown key\(s\) disk, gpus; allowed: cpu, gpu, memory, nvme$', id='hardware-key'),
    pytest.param({'max_gpu_count': 8},
                 r'^Unsupported parameters for \(\S+\) module: max_gpu_count\. Supported parameters include: '
                 r'cpu_core_kind, fail_on_shortfall, hardware, min_compute_capability, min_cpu_cores, '
                 r'min_gpu_count, min_gpu_memory_gb, min_nvme_tb, min_ram_gb, model_path, preset, require_ecc, '
                 r'require_model_path_on_nvme\.$', id='unknown-option'),
    pytest.param({'min_cpu_cores': 'many'},
                 r"^argument 'min_cpu_cores' is of type str and we were unable to convert to int", id='type-int'),
    pytest.param({'min_gpu_memory_gb': 'lots'},
                 r"^argument 'min_gpu_memory_gb' is of type str and we were unable to convert to float",
                 id='type-float'),
    pytest.param({'fail_on_shortfall': 'maybe'},
                 r"^argument 'fail_on_shortfall' is of type str and we were unable to convert to bool",
                 id='type-bool'),
    pytest.param({'hardware': 'gpu'},
                 r"^argument 'hardware' is of type str and we were unable to convert to dict", id='type-dict'),
])
def test_bad_arguments(run_module, args, pattern):
    args = dict(args)
    args.setdefault('hardware', reference_host())
    status, result = run_module(hb.main, args)
    assert status == 'fail'
    assert re.match(pattern, result['msg']), result['msg']
    # A bad argument is reported before any verdict is computed.
    assert 'passed' not in result
    assert 'checks' not in result
