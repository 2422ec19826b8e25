# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one table of CUDA toolkit versions and the NVIDIA driver each needs (Linux x86_64).

Read by the nvidia_driver role (which driver it leaves alone), the cuda role (its driver
check) and python_venv (which PyTorch build a driver can run), through the filters in
plugins/filter/cuda_compat.py. Source: NVIDIA, "CUDA Compatibility" (minor-version
compatibility, Table 1) and the CUDA Toolkit Release Notes (toolkit driver versions, Table 3).

* ``minor``: the oldest driver that runs applications built with that toolkit under CUDA's
  minor-version compatibility (one value per CUDA major release: 11.x >= 450.80.02,
  12.x >= 525.60.13, 13.x >= 580). Limits under it: no PTX JIT of newer PTX, and features
  that need the newer driver are unavailable.
* ``full``: the driver the toolkit release shipped with (every feature of that release).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Oldest driver this project deploys or leaves in place (the CUDA 12.x minor-version floor).
SUPPORTED_DRIVER_FLOOR = '525.60.13'

MODES = ('minor', 'full')

MINOR_COMPAT_DRIVER = {
    '11': '450.80.02',
    '12': '525.60.13',
    '13': '580.65.06',
}

# CUDA "major.minor": driver of the toolkit's GA release.
TOOLKIT_DRIVER = {
    '11.8': '520.61.05',
    '12.0': '525.60.13',
    '12.1': '530.30.02',
    '12.2': '535.54.03',
    '12.3': '545.23.06',
    '12.4': '550.54.14',
    '12.5': '555.42.02',
    '12.6': '560.28.03',
    '12.8': '570.26',
    '12.9': '575.51.03',
    '13.0': '580.65.06',
}

_VERSION_RE = re.compile(r'^[0-9]+(\.[0-9]+){1,2}$')


class CudaCompatError(ValueError):
    """Bad input to the table (an unknown CUDA version, a malformed driver version, a bad mode)."""


def _key(version):
    return tuple(int(part) for part in version.split('.'))


def version_ge(have, want):
    """Numeric comparison of dotted driver versions ('525.60.13' >= '525.60.2')."""
    return _key(have) >= _key(want)


def check_mode(mode):
    if mode not in MODES:
        raise CudaCompatError('the driver compatibility mode must be one of %s, got %r' % (', '.join(MODES), mode))
    return mode


def requirement(cuda_version, mode='minor'):
    """Dict (cuda, mode, driver, minor, full) for one CUDA version; CudaCompatError if unknown."""
    check_mode(mode)
    cuda_version = str(cuda_version)
    if cuda_version not in TOOLKIT_DRIVER:
        raise CudaCompatError('CUDA %s is not in the driver table (plugins/module_utils/cuda_compat.py); known: %s'
                              % (cuda_version, ', '.join(sorted(TOOLKIT_DRIVER, key=_key))))
    minor = MINOR_COMPAT_DRIVER[cuda_version.split('.', maxsplit=1)[0]]
    full = TOOLKIT_DRIVER[cuda_version]
    return {'cuda': cuda_version, 'mode': mode, 'minor': minor, 'full': full,
            'driver': minor if mode == 'minor' else full}


def driver_minimum(cuda_versions, mode='minor', floor=True):
    """Oldest driver that runs every CUDA version in cuda_versions (and meets the project floor)."""
    wanted = [requirement(version, mode)['driver'] for version in cuda_versions]
    if floor:
        wanted.append(SUPPORTED_DRIVER_FLOOR)
    if not wanted:
        return ''
    return max(wanted, key=_key)


def problems(driver_version, cuda_versions, mode='minor'):
    """Sentences, one per CUDA version the driver cannot run; [] when it runs them all.

    The single message source for the driver/CUDA rule: the nvidia_driver and cuda roles
    print these sentences as they are.
    """
    driver_version = str(driver_version).strip()
    if not _VERSION_RE.match(driver_version):
        raise CudaCompatError('driver version must look like 535.216.03, got %r' % (driver_version,))
    found = []
    for version in cuda_versions:
        req = requirement(version, mode)
        if not version_ge(driver_version, req['driver']):
            how = ('with minor-version compatibility; %s for its full feature set' % req['full']
                   if mode == 'minor' else 'for its full feature set (cuda_driver_compatibility=full)')
            found.append('CUDA %s needs NVIDIA driver >= %s (%s), found %s.'
                         % (req['cuda'], req['driver'], how, driver_version))
    return found
