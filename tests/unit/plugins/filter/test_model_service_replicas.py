# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.openautoglm.deploy.plugins.filter.model_service_replicas import model_service_replicas


def test_one_replica_is_todays_service():
    assert model_service_replicas(1, gpu_count=8, host='h1') == [dict(
        index=0, name='autoglm', unit='autoglm.service', port=8080, gpu=None, max_batch_size=8, id='h1-autoglm')]


def test_one_per_gpu_pinned_and_numbered():
    reps = model_service_replicas('gpus', gpu_count=3, name='svc', port=9000, max_batch_size=4, host='h2')
    assert [(r['name'], r['port'], r['gpu'], r['id']) for r in reps] == [
        ('svc', 9000, 0, 'h2-svc'), ('svc-1', 9001, 1, 'h2-svc-1'), ('svc-2', 9002, 2, 'h2-svc-2')]
    assert all(r['max_batch_size'] == 4 for r in reps)


@pytest.mark.parametrize('spec', [2, '2', 2.0])
def test_number_as_int_or_string(spec):
    assert [r['gpu'] for r in model_service_replicas(spec, gpu_count=4)] == [0, 1]


def test_cpu_host_replicas_are_not_pinned():
    assert [r['gpu'] for r in model_service_replicas(3, gpu_count=0)] == [None, None, None]


@pytest.mark.parametrize('spec, gpus, port, message', [
    ('gpus', 0, 8080, 'sees no GPU'),
    (0, 1, 8080, 'must be >= 1'),
    ('two', 1, 8080, 'whole number >= 1 or "gpus"'),
    (1.5, 2, 8080, 'whole number'),
    (3, 2, 8080, 'has 2 GPU(s)'),
    (2, 0, 65535, 'outside 1-65535'),
    (1, 0, 0, 'outside 1-65535'),
])
def test_bad_input_names_the_variable(spec, gpus, port, message):
    with pytest.raises(AnsibleFilterError) as err:
        model_service_replicas(spec, gpu_count=gpus, port=port)
    assert message in str(err.value)
