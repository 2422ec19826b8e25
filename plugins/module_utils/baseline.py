# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hardware baseline: presets, threshold resolution and the checks.

Units: GPU memory and RAM thresholds are decimal gigabytes (GB = 10**9 bytes), NVMe
capacity decimal terabytes (TB = 10**12 bytes), as on vendor datasheets. See docs/units.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.openautoglm.deploy.plugins.module_utils.units import GB, TB, human_bytes, to_gb, to_gib

THRESHOLD_KEYS = ('min_gpu_count', 'min_gpu_memory_gb', 'min_compute_capability', 'min_cpu_cores',
                  'cpu_core_kind', 'min_ram_gb', 'require_ecc', 'min_nvme_tb', 'require_model_path_on_nvme')

PRESETS = {
    # The reference deployment: A100-class GPU, 16 cores, 128 GB ECC RAM, 1 TB NVMe.
    'reference': {
        'min_gpu_count': 1, 'min_gpu_memory_gb': 40, 'min_compute_capability': '8.0',
        'min_cpu_cores': 16, 'cpu_core_kind': 'physical', 'min_ram_gb': 128, 'require_ecc': False,
        'min_nvme_tb': 1.0, 'require_model_path_on_nvme': False,
    },
    # H100-class serving node: Hopper, 80 GB, ECC confirmed, model directory on NVMe.
    'h100': {
        'min_gpu_count': 1, 'min_gpu_memory_gb': 80, 'min_compute_capability': '9.0',
        'min_cpu_cores': 32, 'cpu_core_kind': 'physical', 'min_ram_gb': 256, 'require_ecc': True,
        'min_nvme_tb': 2.0, 'require_model_path_on_nvme': True,
    },
    # Laptops, CI containers and test VMs: no GPU or NVMe needed.
    'development': {
        'min_gpu_count': 0, 'min_gpu_memory_gb': 0, 'min_compute_capability': '0.0',
        'min_cpu_cores': 2, 'cpu_core_kind': 'logical', 'min_ram_gb': 4, 'require_ecc': False,
        'min_nvme_tb': 0, 'require_model_path_on_nvme': False,
    },
}
# Plausible ranges of the thresholds: 0 skips a check; anything else outside its range is a
# typo (0.0001 GB of GPU memory, compute capability 99.0) and is refused.
BOUNDS = {
    'min_gpu_count': (1, 64),            # GPUs per host
    'min_gpu_memory_gb': (1, 1024),      # per GPU, decimal GB
    'min_cpu_cores': (1, 4096),
    'min_ram_gb': (1, 64000),            # 1 GB to 64 TB
    'min_nvme_tb': (0.01, 1000),         # decimal TB
}
CC_BOUNDS = ((3, 0), (12, 9))            # Kepler (3.0) to Blackwell-era 12.x
DEFAULT_PRESET = 'reference'
CORE_KINDS = ('physical', 'logical')
_CC_RE = re.compile(r'^\d+\.\d+$')


class BaselineError(ValueError):
    """Invalid thresholds; the message names the field and the allowed values."""


def resolve_thresholds(preset, overrides):
    """Preset values overlaid with the non-None *overrides*; raises BaselineError."""
    if preset not in PRESETS:
        raise BaselineError('preset: unknown preset %r; allowed: %s' % (preset, ', '.join(sorted(PRESETS))))
    thresholds = dict(PRESETS[preset])
    for key, value in (overrides or {}).items():
        if key not in THRESHOLD_KEYS:
            raise BaselineError('%s: not a threshold; allowed: %s' % (key, ', '.join(THRESHOLD_KEYS)))
        if value is not None:
            thresholds[key] = value
    errors = []
    for key in ('min_gpu_count', 'min_gpu_memory_gb', 'min_cpu_cores', 'min_ram_gb', 'min_nvme_tb'):
        value, (low, high) = thresholds[key], BOUNDS[key]
        if value != 0 and not low <= value <= high:
            errors.append('%s: must be 0 (no check) or from %s to %s, got %s' % (key, _num(low), _num(high), _num(value)))
    cc = str(thresholds['min_compute_capability'])
    if not _CC_RE.match(cc):
        errors.append('min_compute_capability: must look like "8.0" (major.minor), got %r' % cc)
    elif _cc_tuple(cc) != (0, 0) and not CC_BOUNDS[0] <= _cc_tuple(cc) <= CC_BOUNDS[1]:
        errors.append('min_compute_capability: must be "0.0" (no check) or from %d.%d to %d.%d, got %r'
                      % (CC_BOUNDS[0] + CC_BOUNDS[1] + (cc,)))
    thresholds['min_compute_capability'] = cc
    if thresholds['cpu_core_kind'] not in CORE_KINDS:
        errors.append('cpu_core_kind: must be one of %s, got %r' % (', '.join(CORE_KINDS), thresholds['cpu_core_kind']))
    if errors:
        raise BaselineError('; '.join(errors))
    return thresholds


def _cc_tuple(text):
    try:
        major, minor = str(text).split('.', 1)
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def _num(value):
    """30.0 -> '30', 1.5 -> '1.5' for messages."""
    return ('%g' % value) if isinstance(value, float) else str(value)


def _check(name, status, measured, required, message):
    return {'name': name, 'status': status, 'measured': measured, 'required': required, 'message': message}


def _gpu_reason(dev, min_mem, min_cc):
    """Why one GPU does not qualify, or None when it does."""
    reasons = []
    mem = dev.get('memory_total_bytes')
    cc = _cc_tuple(dev.get('compute_capability'))
    if mem is None:
        reasons.append('memory unknown')
    elif mem < min_mem:
        reasons.append('%s < %s VRAM' % (human_bytes(mem), human_bytes(min_mem)))
    if cc is None:
        reasons.append('compute capability unknown')
    elif cc < min_cc:
        reasons.append('compute capability %s < %s' % (dev.get('compute_capability'), '%d.%d' % min_cc))
    return ', '.join(reasons) or None


def check_gpu(gpu, t):
    need = t['min_gpu_count']
    min_mem = int(t['min_gpu_memory_gb'] * GB)
    min_cc = _cc_tuple(t['min_compute_capability'])
    required = '>= %d GPU(s) with >= %s GB and compute capability >= %s' % (
        need, _num(t['min_gpu_memory_gb']), t['min_compute_capability'])
    devices = (gpu or {}).get('devices') or []
    qualifying, rejected = [], []
    for dev in devices:
        reason = _gpu_reason(dev, min_mem, min_cc)
        label = 'GPU %s %s' % (dev.get('index'), dev.get('name'))
        if reason:
            rejected.append('%s: %s' % (label, reason))
        else:
            qualifying.append('%s (%s, cc %s)' % (label, human_bytes(dev.get('memory_total_bytes')),
                                                  dev.get('compute_capability')))
    measured = '%d of %d GPU(s) qualify' % (len(qualifying), len(devices))
    if need == 0:
        return _check('gpu', 'skip', measured, required, 'GPU: not required by the thresholds (%s)' % measured)
    if len(qualifying) >= need:
        return _check('gpu', 'pass', measured, required, 'GPU: %s' % '; '.join(qualifying))
    if not devices:
        detail = 'none found'
    else:
        detail = '%s (%s)' % (measured, '; '.join(rejected))
    return _check('gpu', 'fail', measured, required, 'GPU: %s, need %s' % (detail, required))


def check_mig(gpu):
    on = [str(d.get('index')) for d in (gpu or {}).get('devices') or [] if d.get('mig_mode') == 'enabled']
    if not on:
        return None
    return _check('gpu_mig', 'warn', 'MIG enabled on GPU %s' % ', '.join(on), 'MIG disabled for whole-GPU serving',
                  'GPU MIG: enabled on GPU %s; the service sees MIG slices, not the whole GPU memory' % ', '.join(on))


def check_cpu(cpu, t):
    kind = t['cpu_core_kind']
    have = (cpu or {}).get('physical_cores' if kind == 'physical' else 'logical_cpus') or 0
    need = t['min_cpu_cores']
    required = '>= %d %s cores' % (need, kind)
    measured = '%d %s cores (%s logical CPUs)' % (have, kind, (cpu or {}).get('logical_cpus'))
    if need == 0:
        return _check('cpu_cores', 'skip', measured, required, 'CPU: not required by the thresholds (%s)' % measured)
    if have >= need:
        return _check('cpu_cores', 'pass', measured, required, 'CPU: %s' % measured)
    return _check('cpu_cores', 'fail', measured, required,
                  'CPU: %d %s cores, need >= %d' % (have, kind, need))


def check_ram(memory, t):
    installed = (memory or {}).get('installed_bytes')
    need = int(t['min_ram_gb'] * GB)
    required = '>= %s GB installed' % _num(t['min_ram_gb'])
    source = (memory or {}).get('installed_source') or 'unknown'
    visible = human_bytes((memory or {}).get('visible_bytes'))
    if installed is None:
        measured = 'installed memory unknown (%s visible to the OS)' % visible
    else:
        measured = '%s installed (%s GiB, from %s; %s visible to the OS)' % (
            human_bytes(installed), to_gib(installed), source, visible)
    if need == 0:
        return _check('ram', 'skip', measured, required, 'RAM: not required by the thresholds (%s)' % measured)
    if installed is not None and installed >= need:
        return _check('ram', 'pass', measured, required, 'RAM: %s' % measured)
    have = 'installed memory unknown' if installed is None else '%s GB installed' % to_gb(installed)
    return _check('ram', 'fail', measured, required, 'RAM: %s, need >= %s GB' % (have, _num(t['min_ram_gb'])))


def check_ecc(memory, t):
    ecc = (memory or {}).get('ecc', 'unknown')
    required = 'ECC enabled' + (' (required)' if t['require_ecc'] else ' (expected)')
    measured = 'ECC %s%s' % (ecc, (' (from %s)' % memory.get('ecc_source')) if memory and memory.get('ecc_source') else '')
    if ecc == 'yes':
        return _check('ram_ecc', 'pass', measured, required, 'RAM ECC: %s' % measured)
    status = 'fail' if t['require_ecc'] else 'warn'
    return _check('ram_ecc', status, measured, required,
                  'RAM ECC: %s, %s' % ('not enabled' if ecc == 'no' else 'cannot be confirmed on this host', required))


def check_nvme(nvme, t):
    total = (nvme or {}).get('total_bytes') or 0
    count = (nvme or {}).get('namespace_count') or 0
    need = int(t['min_nvme_tb'] * TB)
    required = '>= %s TB NVMe' % _num(t['min_nvme_tb'])
    measured = ('%s across %d NVMe namespace(s)' % (human_bytes(total), count)) if count else 'no NVMe found'
    if need == 0:
        return _check('nvme', 'skip', measured, required, 'NVMe: not required by the thresholds (%s)' % measured)
    if total >= need:
        return _check('nvme', 'pass', measured, required, 'NVMe: %s' % measured)
    if not count:
        return _check('nvme', 'fail', measured, required, 'NVMe: none found, need %s' % required)
    return _check('nvme', 'fail', measured, required,
                  'NVMe: %s TB found, need %s' % (round(float(total) / TB, 2), required))


def check_model_path(nvme, t):
    info = (nvme or {}).get('path') or {}
    on = info.get('on_nvme')
    where = info.get('block_device') or info.get('filesystem') or 'unknown device'
    measured = '%s on %s (%s)' % (info.get('path'), where, {True: 'NVMe', False: 'not NVMe', None: 'unknown'}[on])
    required = 'model directory on NVMe' + (' (required)' if t['require_model_path_on_nvme'] else ' (recommended)')
    if on:
        return _check('model_path_nvme', 'pass', measured, required, 'Model path: %s' % measured)
    status = 'fail' if t['require_model_path_on_nvme'] else 'warn'
    return _check('model_path_nvme', status, measured, required, 'Model path: %s, %s' % (measured, required))


def evaluate(hardware, thresholds):
    """Run every check over ``hardware`` = {'gpu','cpu','memory','nvme'} fact dicts."""
    checks = [
        check_gpu(hardware.get('gpu'), thresholds),
        check_mig(hardware.get('gpu')),
        check_cpu(hardware.get('cpu'), thresholds),
        check_ram(hardware.get('memory'), thresholds),
        check_ecc(hardware.get('memory'), thresholds),
        check_nvme(hardware.get('nvme'), thresholds),
        check_model_path(hardware.get('nvme'), thresholds),
    ]
    checks = [c for c in checks if c is not None]
    shortfalls = [c['message'] for c in checks if c['status'] == 'fail']
    warnings = [c['message'] for c in checks if c['status'] == 'warn']
    return {
        'passed': not shortfalls,
        'checks': checks,
        'shortfalls': shortfalls,
        'warnings': warnings,
    }
