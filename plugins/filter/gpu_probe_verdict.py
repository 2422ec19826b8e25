# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter openautoglm.deploy.gpu_probe_verdict: judge gpu_bench.py output against datasheets.

Documentation: plugins/filter/gpu_probe_verdict.yml, docs/monitoring.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

from ansible_collections.openautoglm.deploy.plugins.module_utils.perf import gpu_verdict


def gpu_probe_verdict(measurements, min_bandwidth_fraction=0.7, min_bf16_fraction=0.6, datasheet=None,
                      min_gpu_count=0):
    if not isinstance(measurements, dict) or not isinstance(measurements.get('gpus', []), list):
        raise AnsibleFilterError('openautoglm.deploy.gpu_probe_verdict: input must be the JSON document '
                                 'gpu_bench.py prints (a dict with a gpus list), got %r' % (measurements,))
    for name, value in (('min_bandwidth_fraction', min_bandwidth_fraction), ('min_bf16_fraction', min_bf16_fraction)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = -1
        if not 0 < value <= 1.5:
            raise AnsibleFilterError('openautoglm.deploy.gpu_probe_verdict: %s must be a fraction in (0, 1.5], '
                                     'got %r' % (name, value))
    for entry in datasheet or []:
        if not isinstance(entry, dict) or not isinstance(entry.get('match'), string_types) or \
                not {'model', 'memory_bandwidth_tbps', 'bf16_tflops'} <= set(entry):
            raise AnsibleFilterError('openautoglm.deploy.gpu_probe_verdict: each datasheet entry needs match '
                                     '(regex), model, memory_bandwidth_tbps and bf16_tflops, got %r' % (entry,))
    return gpu_verdict(measurements, float(min_bandwidth_fraction), float(min_bf16_fraction), datasheet,
                       int(min_gpu_count))


class FilterModule(object):
    def filters(self):
        return {'gpu_probe_verdict': gpu_probe_verdict}
