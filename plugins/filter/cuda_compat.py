# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters over the one CUDA/driver table (plugins/module_utils/cuda_compat.py).

cuda_driver_minimum: the oldest driver that runs a list of CUDA versions.
cuda_driver_problems: why a driver cannot run them ([] when it can); the message source
that the nvidia_driver and cuda roles share. Documentation: cuda_driver_minimum.yml,
cuda_driver_problems.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

from ansible_collections.openautoglm.deploy.plugins.module_utils import cuda_compat


def _versions(name, value):
    if isinstance(value, string_types) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError('openautoglm.deploy.%s: the CUDA versions must be a list such as ["12.1"], got %r'
                                 % (name, value))
    return [str(item) for item in value]


def cuda_driver_minimum(cuda_versions, mode='minor', floor=True):
    try:
        return cuda_compat.driver_minimum(_versions('cuda_driver_minimum', cuda_versions), mode, bool(floor))
    except cuda_compat.CudaCompatError as exc:
        raise AnsibleFilterError('openautoglm.deploy.cuda_driver_minimum: %s' % exc)


def cuda_driver_problems(driver_version, cuda_versions, mode='minor'):
    try:
        return cuda_compat.problems(driver_version, _versions('cuda_driver_problems', cuda_versions), mode)
    except cuda_compat.CudaCompatError as exc:
        raise AnsibleFilterError('openautoglm.deploy.cuda_driver_problems: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {'cuda_driver_minimum': cuda_driver_minimum, 'cuda_driver_problems': cuda_driver_problems}
