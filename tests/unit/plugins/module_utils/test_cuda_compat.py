# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one CUDA/driver table: NVIDIA's minor-version and toolkit driver figures, and the rule."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.openautoglm.deploy.plugins.filter import cuda_compat as cuda_filter
from ansible_collections.openautoglm.deploy.plugins.module_utils import cuda_compat


@pytest.mark.parametrize('cuda, minor, full', [
    ('11.8', '450.80.02', '520.61.05'),     # CUDA Compatibility, Table 1 / release notes, Table 3
    ('12.0', '525.60.13', '525.60.13'),
    ('12.1', '525.60.13', '530.30.02'),
    ('12.4', '525.60.13', '550.54.14'),
    ('13.0', '580.65.06', '580.65.06'),
])
def test_table_figures(cuda, minor, full):
    req = cuda_compat.requirement(cuda)
    assert (req['minor'], req['full'], req['driver']) == (minor, full, minor)
    assert cuda_compat.requirement(cuda, 'full')['driver'] == full


@pytest.mark.parametrize('driver, versions, mode, ok', [
    ('525.60.13', ['12.1'], 'minor', True),          # the reference pairing
    ('525.60.13', ['11.8', '12.1'], 'minor', True),
    ('525.60.13', ['12.1'], 'full', False),
    ('530.30.02', ['12.1'], 'full', True),
    ('520.61.05', ['12.1'], 'minor', False),
    ('520.61.05', ['11.8'], 'minor', True),
    ('525.60.2', ['12.1'], 'minor', False),          # numeric, not string, comparison
    ('535.216.03', ['11.8', '12.1', '12.4'], 'minor', True),
    ('570.86.15', ['13.0'], 'minor', False),
    ('580.65.06', ['13.0'], 'minor', True),
])
def test_problems(driver, versions, mode, ok):
    assert (cuda_compat.problems(driver, versions, mode) == []) is ok


def test_problem_sentence_names_version_driver_and_both_rules():
    assert cuda_compat.problems('520.61.05', ['11.8', '12.1']) == [
        'CUDA 12.1 needs NVIDIA driver >= 525.60.13 (with minor-version compatibility; 530.30.02 for its full '
        'feature set), found 520.61.05.']


@pytest.mark.parametrize('versions, mode, minimum', [
    ([], 'minor', '525.60.13'),                      # the project floor
    (['11.8'], 'minor', '525.60.13'),                # floor above 11.x's 450.80.02
    (['12.1'], 'minor', '525.60.13'),
    (['11.8', '12.1'], 'full', '530.30.02'),
    (['12.4', '12.1'], 'full', '550.54.14'),
    (['13.0'], 'minor', '580.65.06'),
])
def test_driver_minimum(versions, mode, minimum):
    assert cuda_compat.driver_minimum(versions, mode) == minimum


def test_driver_minimum_without_floor():
    assert cuda_compat.driver_minimum(['11.8'], floor=False) == '450.80.02'


def test_filters_refuse_nonsense_with_the_known_values():
    with pytest.raises(AnsibleFilterError, match=r'CUDA 12\.7 is not in the driver table.*known: 11\.8, 12\.0'):
        cuda_filter.cuda_driver_minimum(['12.7'])
    with pytest.raises(AnsibleFilterError, match=r'must be a list such as \["12\.1"\]'):
        cuda_filter.cuda_driver_problems('535.1', '12.1')
    with pytest.raises(AnsibleFilterError, match='mode must be one of minor, full'):
        cuda_filter.cuda_driver_problems('535.1', ['12.1'], 'lenient')
    with pytest.raises(AnsibleFilterError, match='driver version must look like 535.216.03'):
        cuda_filter.cuda_driver_problems('latest', ['12.1'])
