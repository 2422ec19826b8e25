# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Threshold resolution and the baseline checks over hand-built hardware fact dicts.

The fact dicts carry only the keys baseline.py reads, with the figures real hosts report
(NVML usable VRAM totals, SMBIOS installed RAM, NVMe namespace sizes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import baseline

GB = 10 ** 9
GIB = 2 ** 30

REFERENCE_GPU_REQ = '>= 1 GPU(s) with >= 40 GB and compute capability >= 8.0'


def gpu_dev(index, name, memory, cc, mig='disabled'):
    return {'index': index, 'name': name, 'memory_total_bytes': memory, 'compute_capability': cc,
            'mig_mode': mig}


A100_80 = gpu_dev(0, 'NVIDIA A100-SXM4-80GB', 85899345920, '8.0')
A100_40 = gpu_dev(0, 'NVIDIA A100-PCIE-40GB', 42505273344, '8.0')
H100 = gpu_dev(0, 'NVIDIA H100 80GB HBM3', 85520809984, '9.0')
RTX_3090_NVML = gpu_dev(0, 'NVIDIA GeForce RTX 3090', 25769803776, '8.6')
RTX_3090_PCI = gpu_dev(0, 'NVIDIA GeForce RTX 3090', 24 * GB, '8.6', mig=None)
V100_32 = gpu_dev(0, 'Tesla V100-SXM2-32GB', 34089730048, '7.0')


def reference_host(**over):
    """A host that meets the reference baseline with margin."""
    hardware = {
        'gpu': {'devices': [dict(A100_80)]},
        'cpu': {'physical_cores': 32, 'logical_cpus': 64},
        'memory': {'installed_bytes': 512 * GIB, 'installed_source': 'smbios',
                   'visible_bytes': 540 * GB, 'ecc': 'yes', 'ecc_source': 'smbios'},
        'nvme': {'total_bytes': 3840755982336, 'namespace_count': 1,
                 'path': {'path': '/data/models', 'block_device': '/dev/nvme0n1p1', 'on_nvme': True}},
    }
    hardware.update(over)
    return hardware


def laptop():
    """GPU-less laptop on SATA: below the reference baseline everywhere."""
    return {
        'gpu': {'devices': [], 'count': 0},
        'cpu': {'physical_cores': 4, 'logical_cpus': 8},
        'memory': {'installed_bytes': 23400000000, 'installed_source': 'meminfo',
                   'visible_bytes': 23400000000, 'ecc': 'unknown'},
        'nvme': {'total_bytes': 0, 'namespace_count': 0,
                 'path': {'path': '/data/models', 'block_device': '/dev/sda2', 'on_nvme': False}},
    }


def ref(**over):
    return baseline.resolve_thresholds('reference', over)


def check(result, name):
    matches = [c for c in result['checks'] if c['name'] == name]
    assert len(matches) == 1, result['checks']
    return matches[0]


# --------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize('preset, expected', [
    ('reference', {'min_gpu_count': 1, 'min_gpu_memory_gb': 40, 'min_compute_capability': '8.0',
                   'min_cpu_cores': 16, 'cpu_core_kind': 'physical', 'min_ram_gb': 128,
                   'require_ecc': False, 'min_nvme_tb': 1.0, 'require_model_path_on_nvme': False}),
    ('h100', {'min_gpu_count': 1, 'min_gpu_memory_gb': 80, 'min_compute_capability': '9.0',
              'min_cpu_cores': 32, 'cpu_core_kind': 'physical', 'min_ram_gb': 256,
              'require_ecc': True, 'min_nvme_tb': 2.0, 'require_model_path_on_nvme': True}),
    ('development', {'min_gpu_count': 0, 'min_gpu_memory_gb': 0, 'min_compute_capability': '0.0',
                     'min_cpu_cores': 2, 'cpu_core_kind': 'logical', 'min_ram_gb': 4,
                     'require_ecc': False, 'min_nvme_tb': 0, 'require_model_path_on_nvme': False}),
])
def test_presets(preset, expected):
    assert baseline.resolve_thresholds(preset, {}) == expected
    assert baseline.resolve_thresholds(preset, None) == expected


def test_default_preset_is_reference():
    assert baseline.DEFAULT_PRESET == 'reference'


def test_overrides_replace_one_by_one_and_none_keeps_preset():
    thresholds = baseline.resolve_thresholds('h100', {
        'min_cpu_cores': 16, 'min_nvme_tb': 0.96, 'min_ram_gb': None, 'require_ecc': False,
        'min_compute_capability': '8.9'})
    assert thresholds == {
        'min_gpu_count': 1, 'min_gpu_memory_gb': 80, 'min_compute_capability': '8.9',
        'min_cpu_cores': 16, 'cpu_core_kind': 'physical', 'min_ram_gb': 256, 'require_ecc': False,
        'min_nvme_tb': 0.96, 'require_model_path_on_nvme': True}


def test_resolve_does_not_mutate_presets():
    baseline.resolve_thresholds('reference', {'min_ram_gb': 1})
    assert baseline.PRESETS['reference']['min_ram_gb'] == 128


@pytest.mark.parametrize('preset', ['h200', 'Reference', '', None])
def test_unknown_preset(preset):
    with pytest.raises(baseline.BaselineError) as err:
        baseline.resolve_thresholds(preset, {})
    assert str(err.value) == 'preset: unknown preset %r; allowed: development, h100, reference' % (preset,)


def test_unknown_threshold_key():
    with pytest.raises(baseline.BaselineError) as err:
        baseline.resolve_thresholds('reference', {'min_vram_gb': 80})
    assert str(err.value) == (
        'min_vram_gb: not a threshold; allowed: min_gpu_count, min_gpu_memory_gb, '
        'min_compute_capability, min_cpu_cores, cpu_core_kind, min_ram_gb, require_ecc, '
        'min_nvme_tb, require_model_path_on_nvme')


@pytest.mark.parametrize('key, value, shown, bounds', [
    ('min_gpu_count', -1, '-1', '1 to 64'),
    ('min_gpu_count', 65, '65', '1 to 64'),
    ('min_gpu_memory_gb', -0.5, '-0.5', '1 to 1024'),
    ('min_gpu_memory_gb', 0.0001, '0.0001', '1 to 1024'),   # a typo for 1 (GB), or bytes for GB
    ('min_gpu_memory_gb', 80000000000.0, '8e+10', '1 to 1024'),
    ('min_cpu_cores', -16, '-16', '1 to 4096'),
    ('min_ram_gb', -128.0, '-128', '1 to 64000'),
    ('min_ram_gb', 0.5, '0.5', '1 to 64000'),
    ('min_ram_gb', 65000.0, '65000', '1 to 64000'),
    ('min_nvme_tb', -1.0, '-1', '0.01 to 1000'),
    ('min_nvme_tb', 960.0 * 1000, '960000', '0.01 to 1000'),  # GB given as TB
])
def test_implausible_threshold(key, value, shown, bounds):
    with pytest.raises(baseline.BaselineError) as err:
        ref(**{key: value})
    assert str(err.value) == '%s: must be 0 (no check) or from %s, got %s' % (key, bounds, shown)


@pytest.mark.parametrize('key, value', [('min_gpu_memory_gb', 0), ('min_gpu_memory_gb', 1), ('min_gpu_memory_gb', 192.0),
                                        ('min_ram_gb', 64000), ('min_nvme_tb', 0.96), ('min_gpu_count', 8)])
def test_plausible_thresholds_pass(key, value):
    assert ref(**{key: value})[key] == value


@pytest.mark.parametrize('value', ['99.0', '2.1', '13.0', '12.10'])
def test_implausible_compute_capability(value):
    with pytest.raises(baseline.BaselineError) as err:
        ref(min_compute_capability=value)
    assert str(err.value) == 'min_compute_capability: must be "0.0" (no check) or from 3.0 to 12.9, got %r' % value


@pytest.mark.parametrize('value', ['abc', '8', '8.', '.0', 'v8.0', '8.0.1', '8,0', ''])
def test_bad_compute_capability(value):
    with pytest.raises(baseline.BaselineError) as err:
        ref(min_compute_capability=value)
    assert str(err.value) == 'min_compute_capability: must look like "8.0" (major.minor), got %r' % value


@pytest.mark.parametrize('value, expected', [('8.0', '8.0'), ('10.0', '10.0'), (9.0, '9.0'), ('12.1', '12.1'), ('3.0', '3.0'),
                                             ('0.0', '0.0')])
def test_compute_capability_normalised_to_text(value, expected):
    assert ref(min_compute_capability=value)['min_compute_capability'] == expected


@pytest.mark.parametrize('value', ['cores', 'Physical', 'threads', ''])
def test_bad_cpu_core_kind(value):
    with pytest.raises(baseline.BaselineError) as err:
        ref(cpu_core_kind=value)
    assert str(err.value) == 'cpu_core_kind: must be one of physical, logical, got %r' % value


def test_every_invalid_threshold_reported_at_once():
    with pytest.raises(baseline.BaselineError) as err:
        ref(min_ram_gb=-1, min_nvme_tb=-2, min_compute_capability='x', cpu_core_kind='both')
    assert str(err.value) == (
        "min_ram_gb: must be 0 (no check) or from 1 to 64000, got -1; "
        "min_nvme_tb: must be 0 (no check) or from 0.01 to 1000, got -2; "
        "min_compute_capability: must look like \"8.0\" (major.minor), got 'x'; "
        "cpu_core_kind: must be one of physical, logical, got 'both'")


# --------------------------------------------------------------------------- evaluate

def test_reference_host_passes_with_every_check_spelled_out():
    result = baseline.evaluate(reference_host(), ref())
    assert result == {
        'passed': True,
        'shortfalls': [],
        'warnings': [],
        'checks': [
            {'name': 'gpu', 'status': 'pass', 'measured': '1 of 1 GPU(s) qualify', 'required': REFERENCE_GPU_REQ,
             'message': 'GPU: GPU 0 NVIDIA A100-SXM4-80GB (85.9 GB, cc 8.0)'},
            {'name': 'cpu_cores', 'status': 'pass', 'measured': '32 physical cores (64 logical CPUs)',
             'required': '>= 16 physical cores', 'message': 'CPU: 32 physical cores (64 logical CPUs)'},
            {'name': 'ram', 'status': 'pass',
             'measured': '549.8 GB installed (512.0 GiB, from smbios; 540.0 GB visible to the OS)',
             'required': '>= 128 GB installed',
             'message': 'RAM: 549.8 GB installed (512.0 GiB, from smbios; 540.0 GB visible to the OS)'},
            {'name': 'ram_ecc', 'status': 'pass', 'measured': 'ECC yes (from smbios)',
             'required': 'ECC enabled (expected)', 'message': 'RAM ECC: ECC yes (from smbios)'},
            {'name': 'nvme', 'status': 'pass', 'measured': '3.8 TB across 1 NVMe namespace(s)',
             'required': '>= 1 TB NVMe', 'message': 'NVMe: 3.8 TB across 1 NVMe namespace(s)'},
            {'name': 'model_path_nvme', 'status': 'pass', 'measured': '/data/models on /dev/nvme0n1p1 (NVMe)',
             'required': 'model directory on NVMe (recommended)',
             'message': 'Model path: /data/models on /dev/nvme0n1p1 (NVMe)'},
        ],
    }


def test_gpu_less_laptop_lists_every_shortfall_at_once():
    result = baseline.evaluate(laptop(), ref())
    assert result['passed'] is False
    assert result['shortfalls'] == [
        'GPU: none found, need ' + REFERENCE_GPU_REQ,
        'CPU: 4 physical cores, need >= 16',
        'RAM: 23.4 GB installed, need >= 128 GB',
        'NVMe: none found, need >= 1 TB NVMe',
    ]
    assert result['warnings'] == [
        'RAM ECC: cannot be confirmed on this host, ECC enabled (expected)',
        'Model path: /data/models on /dev/sda2 (not NVMe), model directory on NVMe (recommended)',
    ]
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'fail'), ('cpu_cores', 'fail'), ('ram', 'fail'), ('ram_ecc', 'warn'),
        ('nvme', 'fail'), ('model_path_nvme', 'warn')]
    assert check(result, 'gpu')['measured'] == '0 of 0 GPU(s) qualify'
    assert check(result, 'nvme')['measured'] == 'no NVMe found'
    assert check(result, 'ram')['measured'] == (
        '23.4 GB installed (21.8 GiB, from meminfo; 23.4 GB visible to the OS)')


def test_laptop_passes_development_preset():
    result = baseline.evaluate(laptop(), baseline.resolve_thresholds('development', {}))
    assert result['passed'] is True
    assert result['shortfalls'] == []
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'skip'), ('cpu_cores', 'pass'), ('ram', 'pass'), ('ram_ecc', 'warn'),
        ('nvme', 'skip'), ('model_path_nvme', 'warn')]
    assert check(result, 'cpu_cores')['message'] == 'CPU: 8 logical cores (8 logical CPUs)'
    assert check(result, 'gpu')['message'] == 'GPU: not required by the thresholds (0 of 0 GPU(s) qualify)'
    assert check(result, 'nvme')['message'] == 'NVMe: not required by the thresholds (no NVMe found)'


@pytest.mark.parametrize('devices, thresholds, status, message', [
    pytest.param([RTX_3090_PCI], {}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA GeForce RTX 3090: 24.0 GB < 40.0 GB VRAM), need '
                 + REFERENCE_GPU_REQ, id='rtx3090-table-24gb'),
    pytest.param([RTX_3090_NVML], {}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA GeForce RTX 3090: 25.8 GB < 40.0 GB VRAM), need '
                 + REFERENCE_GPU_REQ, id='rtx3090-nvml-24gib'),
    pytest.param([V100_32], {'min_gpu_memory_gb': 32}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 Tesla V100-SXM2-32GB: compute capability 7.0 < 8.0), '
                 'need >= 1 GPU(s) with >= 32 GB and compute capability >= 8.0', id='v100-cc'),
    pytest.param([V100_32], {}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 Tesla V100-SXM2-32GB: 34.1 GB < 40.0 GB VRAM, compute '
                 'capability 7.0 < 8.0), need ' + REFERENCE_GPU_REQ, id='v100-vram-and-cc'),
    pytest.param([A100_40], {}, 'pass', 'GPU: GPU 0 NVIDIA A100-PCIE-40GB (42.5 GB, cc 8.0)',
                 id='a100-40gb-usable-42.5gb'),
    pytest.param([gpu_dev(0, 'NVIDIA A100 PCIe 40GB', 40 * GB, '8.0')], {}, 'pass',
                 'GPU: GPU 0 NVIDIA A100 PCIe 40GB (40.0 GB, cc 8.0)', id='a100-40gb-table-exactly-40'),
    pytest.param([gpu_dev(0, 'short', 40 * GB - 1, '8.0')], {}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 short: 40.0 GB < 40.0 GB VRAM), need ' + REFERENCE_GPU_REQ,
                 id='one-byte-short'),
    pytest.param([H100], {'min_gpu_memory_gb': 80, 'min_compute_capability': '9.0'}, 'pass',
                 'GPU: GPU 0 NVIDIA H100 80GB HBM3 (85.5 GB, cc 9.0)', id='h100-80'),
    pytest.param([A100_80], {'min_gpu_memory_gb': 80, 'min_compute_capability': '9.0'}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA A100-SXM4-80GB: compute capability 8.0 < 9.0), '
                 'need >= 1 GPU(s) with >= 80 GB and compute capability >= 9.0', id='a100-80-below-hopper'),
    pytest.param([gpu_dev(0, 'NVIDIA B200', 180 * GB, '10.0')], {'min_compute_capability': '9.0'}, 'pass',
                 'GPU: GPU 0 NVIDIA B200 (180.0 GB, cc 10.0)', id='cc-10-compares-numerically'),
    pytest.param([gpu_dev(0, 'NVIDIA L40S', 48 * GB, '8.9')], {'min_compute_capability': '9.0'}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA L40S: compute capability 8.9 < 9.0), need '
                 '>= 1 GPU(s) with >= 40 GB and compute capability >= 9.0', id='cc-8.9'),
    pytest.param([gpu_dev(0, 'NVIDIA GPU (device 0x1234)', None, None)], {}, 'fail',
                 'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA GPU (device 0x1234): memory unknown, compute '
                 'capability unknown), need ' + REFERENCE_GPU_REQ, id='unknown-device'),
    pytest.param([H100, dict(RTX_3090_NVML, index=1)], {}, 'pass',
                 'GPU: GPU 0 NVIDIA H100 80GB HBM3 (85.5 GB, cc 9.0)', id='mixed-one-needed'),
    pytest.param([H100, dict(RTX_3090_NVML, index=1)], {'min_gpu_count': 2}, 'fail',
                 'GPU: 1 of 2 GPU(s) qualify (GPU 1 NVIDIA GeForce RTX 3090: 25.8 GB < 40.0 GB VRAM), need '
                 '>= 2 GPU(s) with >= 40 GB and compute capability >= 8.0', id='mixed-two-needed'),
    pytest.param([H100, dict(H100, index=1)], {'min_gpu_count': 2}, 'pass',
                 'GPU: GPU 0 NVIDIA H100 80GB HBM3 (85.5 GB, cc 9.0); GPU 1 NVIDIA H100 80GB HBM3 (85.5 GB, cc 9.0)',
                 id='two-h100'),
    pytest.param([], {'min_gpu_count': 0}, 'skip',
                 'GPU: not required by the thresholds (0 of 0 GPU(s) qualify)', id='count-0-skips'),
    pytest.param([RTX_3090_NVML], {'min_gpu_count': 0}, 'skip',
                 'GPU: not required by the thresholds (0 of 1 GPU(s) qualify)', id='count-0-skips-with-gpu'),
])
def test_gpu_check(devices, thresholds, status, message):
    result = baseline.evaluate(reference_host(gpu={'devices': devices}), ref(**thresholds))
    gpu_check = check(result, 'gpu')
    assert (gpu_check['status'], gpu_check['message']) == (status, message)
    assert result['passed'] is (status != 'fail')
    assert result['shortfalls'] == ([message] if status == 'fail' else [])


def test_gpu_facts_missing_altogether_is_none_found():
    result = baseline.evaluate(reference_host(gpu=None), ref())
    assert result['shortfalls'] == ['GPU: none found, need ' + REFERENCE_GPU_REQ]


def test_mig_enabled_adds_warning_check():
    devices = [dict(H100, mig_mode='enabled'), dict(H100, index=1), dict(H100, index=2, mig_mode='enabled')]
    result = baseline.evaluate(reference_host(gpu={'devices': devices}), ref())
    assert result['passed'] is True
    assert check(result, 'gpu_mig') == {
        'name': 'gpu_mig', 'status': 'warn', 'measured': 'MIG enabled on GPU 0, 2',
        'required': 'MIG disabled for whole-GPU serving',
        'message': 'GPU MIG: enabled on GPU 0, 2; the service sees MIG slices, not the whole GPU memory'}
    assert result['warnings'] == [
        'GPU MIG: enabled on GPU 0, 2; the service sees MIG slices, not the whole GPU memory']
    assert [c['name'] for c in result['checks']] == [
        'gpu', 'gpu_mig', 'cpu_cores', 'ram', 'ram_ecc', 'nvme', 'model_path_nvme']


@pytest.mark.parametrize('mig', ['disabled', 'unsupported', None])
def test_no_mig_check_unless_enabled(mig):
    result = baseline.evaluate(reference_host(gpu={'devices': [dict(H100, mig_mode=mig)]}), ref())
    assert 'gpu_mig' not in [c['name'] for c in result['checks']]


@pytest.mark.parametrize('cpu, thresholds, status, message', [
    ({'physical_cores': 16, 'logical_cpus': 32}, {}, 'pass', 'CPU: 16 physical cores (32 logical CPUs)'),
    ({'physical_cores': 15, 'logical_cpus': 30}, {}, 'fail', 'CPU: 15 physical cores, need >= 16'),
    # 8 cores x 2 threads: 16 logical CPUs are not 16 cores.
    ({'physical_cores': 8, 'logical_cpus': 16}, {}, 'fail', 'CPU: 8 physical cores, need >= 16'),
    ({'physical_cores': 8, 'logical_cpus': 16}, {'cpu_core_kind': 'logical'}, 'pass',
     'CPU: 16 logical cores (16 logical CPUs)'),
    ({'physical_cores': 8, 'logical_cpus': 16}, {'min_cpu_cores': 0}, 'skip',
     'CPU: not required by the thresholds (8 physical cores (16 logical CPUs))'),
    ({}, {}, 'fail', 'CPU: 0 physical cores, need >= 16'),
])
def test_cpu_check(cpu, thresholds, status, message):
    result = baseline.evaluate(reference_host(cpu=cpu), ref(**thresholds))
    cpu_check = check(result, 'cpu_cores')
    assert (cpu_check['status'], cpu_check['message']) == (status, message)


@pytest.mark.parametrize('memory, thresholds, status, message', [
    # 128 GiB of DIMMs = 137.4 GB installed; the kernel sees 125 GB.
    pytest.param({'installed_bytes': 128 * GIB, 'installed_source': 'smbios', 'visible_bytes': 125 * GB},
                 {}, 'pass', 'RAM: 137.4 GB installed (128.0 GiB, from smbios; 125.0 GB visible to the OS)',
                 id='installed-not-visible'),
    pytest.param({'installed_bytes': 125 * GB, 'installed_source': 'meminfo', 'visible_bytes': 125 * GB},
                 {}, 'fail', 'RAM: 125.0 GB installed, need >= 128 GB', id='visible-only-would-fail'),
    pytest.param({'installed_bytes': 128 * GB, 'installed_source': 'memory_blocks', 'visible_bytes': 120 * GB},
                 {}, 'pass', 'RAM: 128.0 GB installed (119.2 GiB, from memory_blocks; 120.0 GB visible to the OS)',
                 id='exactly-128gb'),
    pytest.param({'installed_bytes': 64 * GIB, 'installed_source': 'smbios', 'visible_bytes': 66 * GB},
                 {}, 'fail', 'RAM: 68.7 GB installed, need >= 128 GB', id='ram-under-baseline'),
    pytest.param({'installed_bytes': 256 * GIB, 'installed_source': 'smbios'}, {'min_ram_gb': 256}, 'pass',
                 'RAM: 274.9 GB installed (256.0 GiB, from smbios; unknown visible to the OS)', id='256gib-vs-256gb'),
    pytest.param({'installed_bytes': 240 * GIB, 'installed_source': 'smbios'}, {'min_ram_gb': 262.5}, 'fail',
                 'RAM: 257.7 GB installed, need >= 262.5 GB', id='fractional-threshold'),
    pytest.param({'installed_bytes': None, 'installed_source': None, 'visible_bytes': None}, {}, 'fail',
                 'RAM: installed memory unknown, need >= 128 GB', id='unknown'),
    pytest.param({'installed_bytes': None, 'installed_source': None, 'visible_bytes': None},
                 {'min_ram_gb': 0}, 'skip',
                 'RAM: not required by the thresholds (installed memory unknown (unknown visible to the OS))',
                 id='threshold-0-skips'),
])
def test_ram_check_judges_installed_memory(memory, thresholds, status, message):
    memory = dict(memory, ecc='yes')
    result = baseline.evaluate(reference_host(memory=memory), ref(**thresholds))
    ram = check(result, 'ram')
    assert (ram['status'], ram['message']) == (status, message)
    assert ram['required'] == '>= %s GB installed' % ('%g' % ref(**thresholds)['min_ram_gb'])


@pytest.mark.parametrize('memory, require_ecc, status, message', [
    ({'ecc': 'yes', 'ecc_source': 'edac'}, False, 'pass', 'RAM ECC: ECC yes (from edac)'),
    ({'ecc': 'yes', 'ecc_source': 'smbios'}, True, 'pass', 'RAM ECC: ECC yes (from smbios)'),
    ({'ecc': 'unknown'}, False, 'warn', 'RAM ECC: cannot be confirmed on this host, ECC enabled (expected)'),
    ({'ecc': 'unknown'}, True, 'fail', 'RAM ECC: cannot be confirmed on this host, ECC enabled (required)'),
    ({}, False, 'warn', 'RAM ECC: cannot be confirmed on this host, ECC enabled (expected)'),
    ({'ecc': 'no', 'ecc_source': 'smbios'}, False, 'warn', 'RAM ECC: not enabled, ECC enabled (expected)'),
    ({'ecc': 'no', 'ecc_source': 'smbios'}, True, 'fail', 'RAM ECC: not enabled, ECC enabled (required)'),
])
def test_ecc_check(memory, require_ecc, status, message):
    memory = dict(memory, installed_bytes=512 * GIB, installed_source='smbios')
    result = baseline.evaluate(reference_host(memory=memory), ref(require_ecc=require_ecc))
    ecc = check(result, 'ram_ecc')
    assert (ecc['status'], ecc['message']) == (status, message)
    assert result['passed'] is (status != 'fail')
    assert (message in result['warnings']) is (status == 'warn')


@pytest.mark.parametrize('nvme, min_tb, status, message', [
    pytest.param({'total_bytes': 512110190592, 'namespace_count': 1}, 1.0, 'fail',
                 'NVMe: 0.51 TB found, need >= 1 TB NVMe', id='512gb-under-1tb'),
    pytest.param({'total_bytes': 960197124096, 'namespace_count': 1}, 1.0, 'fail',
                 'NVMe: 0.96 TB found, need >= 1 TB NVMe', id='960gb-under-1tb'),
    pytest.param({'total_bytes': 960197124096, 'namespace_count': 1}, 0.96, 'pass',
                 'NVMe: 960.2 GB across 1 NVMe namespace(s)', id='960gb-lowered'),
    pytest.param({'total_bytes': 1000204886016, 'namespace_count': 1}, 1.0, 'pass',
                 'NVMe: 1.0 TB across 1 NVMe namespace(s)', id='1tb-drive'),
    pytest.param({'total_bytes': 2 * 512110190592, 'namespace_count': 2}, 1.0, 'pass',
                 'NVMe: 1.0 TB across 2 NVMe namespace(s)', id='two-namespaces-sum'),
    pytest.param({'total_bytes': 0, 'namespace_count': 0}, 1.0, 'fail',
                 'NVMe: none found, need >= 1 TB NVMe', id='sata-only'),
    pytest.param(None, 1.0, 'fail', 'NVMe: none found, need >= 1 TB NVMe', id='no-facts'),
    pytest.param({'total_bytes': 3840755982336, 'namespace_count': 1}, 2.0, 'pass',
                 'NVMe: 3.8 TB across 1 NVMe namespace(s)', id='h100-2tb'),
    pytest.param({'total_bytes': 0, 'namespace_count': 0}, 0, 'skip',
                 'NVMe: not required by the thresholds (no NVMe found)', id='threshold-0-skips'),
])
def test_nvme_check(nvme, min_tb, status, message):
    result = baseline.evaluate(reference_host(nvme=nvme), ref(min_nvme_tb=min_tb))
    nvme_check = check(result, 'nvme')
    assert (nvme_check['status'], nvme_check['message']) == (status, message)
    assert (message in result['shortfalls']) is (status == 'fail')


@pytest.mark.parametrize('path, required, status, message', [
    ({'path': '/data/models', 'block_device': '/dev/sda2', 'on_nvme': False}, False, 'warn',
     'Model path: /data/models on /dev/sda2 (not NVMe), model directory on NVMe (recommended)'),
    ({'path': '/data/models', 'block_device': '/dev/sda2', 'on_nvme': False}, True, 'fail',
     'Model path: /data/models on /dev/sda2 (not NVMe), model directory on NVMe (required)'),
    ({'path': '/data/models', 'block_device': None, 'filesystem': 'overlay', 'on_nvme': None}, True, 'fail',
     'Model path: /data/models on overlay (unknown), model directory on NVMe (required)'),
    ({'path': '/srv/llm', 'block_device': None, 'on_nvme': None}, False, 'warn',
     'Model path: /srv/llm on unknown device (unknown), model directory on NVMe (recommended)'),
    ({'path': '/data/models', 'block_device': '/dev/md0', 'on_nvme': True}, True, 'pass',
     'Model path: /data/models on /dev/md0 (NVMe)'),
])
def test_model_path_check(path, required, status, message):
    nvme = {'total_bytes': 3840755982336, 'namespace_count': 1, 'path': path}
    result = baseline.evaluate(reference_host(nvme=nvme), ref(require_model_path_on_nvme=required))
    mp = check(result, 'model_path_nvme')
    assert (mp['status'], mp['message']) == (status, message)
    assert result['passed'] is (status != 'fail')


def test_all_thresholds_zero_skip_everything_measurable():
    thresholds = baseline.resolve_thresholds('development', {'min_cpu_cores': 0, 'min_ram_gb': 0})
    result = baseline.evaluate({'gpu': None, 'cpu': None, 'memory': None, 'nvme': None}, thresholds)
    assert result['passed'] is True
    assert [(c['name'], c['status']) for c in result['checks']] == [
        ('gpu', 'skip'), ('cpu_cores', 'skip'), ('ram', 'skip'), ('ram_ecc', 'warn'),
        ('nvme', 'skip'), ('model_path_nvme', 'warn')]


def test_h100_preset_on_reference_host_lists_every_shortfall():
    result = baseline.evaluate(reference_host(), baseline.resolve_thresholds('h100', {}))
    assert result['shortfalls'] == [
        'GPU: 0 of 1 GPU(s) qualify (GPU 0 NVIDIA A100-SXM4-80GB: compute capability 8.0 < 9.0), '
        'need >= 1 GPU(s) with >= 80 GB and compute capability >= 9.0',
    ]
    small = reference_host(cpu={'physical_cores': 16, 'logical_cpus': 32},
                           memory={'installed_bytes': 128 * GIB, 'installed_source': 'smbios', 'ecc': 'unknown'},
                           gpu={'devices': [H100]})
    result = baseline.evaluate(small, baseline.resolve_thresholds('h100', {}))
    assert result['shortfalls'] == [
        'CPU: 16 physical cores, need >= 32',
        'RAM: 137.4 GB installed, need >= 256 GB',
        'RAM ECC: cannot be confirmed on this host, ECC enabled (required)',
    ]
