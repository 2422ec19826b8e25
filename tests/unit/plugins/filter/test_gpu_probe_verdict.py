# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_probe_verdict filter: input checks and the verdict passed through."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.openautoglm.deploy.plugins.filter.gpu_probe_verdict import FilterModule

verdict = FilterModule().filters()['gpu_probe_verdict']

H100 = {'index': 0, 'uuid': 'GPU-aaaa', 'name': 'NVIDIA H100 80GB HBM3',
        'memory_bandwidth_bytes_per_second': 2.95e12, 'bf16_flops_per_second': 7.2e14, 'error': None}


def test_passes_and_names_failing_gpu():
    assert verdict({'gpus': [H100]})['passed']
    slow = dict(H100, index=3, uuid='GPU-bbbb', bf16_flops_per_second=3e14)
    result = verdict({'gpus': [H100, slow]}, min_bf16_fraction='0.6')
    assert not result['passed']
    assert result['shortfalls'] == ['GPU 3 (GPU-bbbb, NVIDIA H100 80GB HBM3): bf16 matmul 300 TFLOP/s < 593 TFLOP/s '
                                    '(60% of H100 SXM datasheet 989)']


def test_extra_datasheet_entry():
    sheet = [{'match': 'RTX 6000 Ada', 'model': 'RTX 6000 Ada', 'memory_bandwidth_tbps': 0.96, 'bf16_tflops': 364}]
    gpu = dict(H100, name='NVIDIA RTX 6000 Ada Generation', memory_bandwidth_bytes_per_second=0.8e12,
               bf16_flops_per_second=2.5e14)
    result = verdict({'gpus': [gpu]}, datasheet=sheet)
    assert result['passed'] and result['gpus'][0]['datasheet'] == 'RTX 6000 Ada'


@pytest.mark.parametrize('data, kwargs, message', [
    ('text', {}, 'input must be the JSON document'),
    ({'gpus': 'x'}, {}, 'input must be the JSON document'),
    ({'gpus': []}, {'min_bandwidth_fraction': 0}, 'min_bandwidth_fraction must be a fraction'),
    ({'gpus': []}, {'min_bf16_fraction': 'most'}, 'min_bf16_fraction must be a fraction'),
    ({'gpus': []}, {'datasheet': [{'match': 'X'}]}, 'each datasheet entry needs'),
])
def test_bad_input(data, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        verdict(data, **kwargs)
