# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stage 3 (nvidia_driver) and stage 4 (cuda) apply one driver/CUDA rule, with one message.

With the defaults (cuda_versions ["12.1"]) a host on 525.60.13 passes both stages (CUDA's
minor-version compatibility); a host on 520.61.05 is replaced by stage 3 and refused by stage 4
with the same sentence.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

import pytest

from role_vars import FACTS, RoleVars


def _stage3(driver, **extra):
    role = RoleVars('nvidia_driver', FACTS['debian12'], __nvidia_driver_loaded_version=driver, **extra)
    return role.get('__nvidia_driver_sufficient'), role.get('__nvidia_driver_cuda_problems')


def _stage4(driver, **extra):
    content = base64.b64encode((driver + '\n').encode()).decode()
    role = RoleVars('cuda', FACTS['debian12'], __cuda_driver={'content': content}, **extra)
    return role.get('__cuda_driver_problems')


@pytest.mark.parametrize('driver, accepted', [
    ('525.60.13', True),
    ('525.125.06', True),
    ('535.216.03', True),
    ('520.61.05', False),
    ('515.105.01', False),
])
def test_defaults_same_verdict_in_both_stages(driver, accepted):
    sufficient, stage3_problems = _stage3(driver)
    stage4_problems = _stage4(driver)
    assert sufficient is accepted
    assert (stage4_problems == []) is accepted
    assert stage3_problems == stage4_problems          # one message source
    if not accepted:
        assert stage4_problems == ['CUDA 12.1 needs NVIDIA driver >= 525.60.13 (with minor-version compatibility; '
                                   '530.30.02 for its full feature set), found %s.' % driver]


def test_nvidia_driver_follows_cuda_settings():
    """cuda_versions / cuda_driver_compatibility set for the play reach stage 3 by default."""
    play = dict(cuda_versions=['11.8', '12.1'], cuda_driver_compatibility='full')
    sufficient, problems = _stage3('525.60.13', **play)
    assert sufficient is False
    assert problems == _stage4('525.60.13', **play)
    assert problems[0].startswith('CUDA 12.1 needs NVIDIA driver >= 530.30.02 (for its full feature set')
    assert _stage3('530.30.02', **play)[0] is True
    wanted = RoleVars('nvidia_driver', FACTS['debian12'], **play).get('__nvidia_driver_wanted_minimum')
    assert wanted == '530.30.02'


def test_pinned_version_is_checked_against_the_same_rule():
    role = RoleVars('nvidia_driver', FACTS['debian12'], nvidia_driver_version='525.60.13', nvidia_driver_branch='525')
    assert role.render("nvidia_driver_version | openautoglm.deploy.cuda_driver_problems("
                       "nvidia_driver_cuda_versions, nvidia_driver_cuda_compatibility)") == []
    assert role.get('__nvidia_driver_minimum_version') == '525.60.13'
    assert role.get('__nvidia_driver_wanted_minimum') == '525.60.13'


def _torch_build(torch_version='2.9.1', cuda='', driver=None, gpu=True, variant='auto'):
    facts = dict(FACTS['debian12'])
    if driver is not None:
        facts['openautoglm_gpu'] = {'count': 1 if gpu else 0, 'driver_version': driver}
    role = RoleVars('python_venv', facts, python_venv_cuda_version=cuda, python_venv_torch_version=torch_version,
                    python_venv_torch_variant=variant)
    return role.render("lookup('ansible.builtin.template', role_path ~ '/templates/torch_variant.j2') | trim")


@pytest.mark.parametrize('torch_version, driver, variant', [
    ('2.9.1', '580.65.06', 'cu130'),    # CUDA 13.0 needs 580.65.06
    ('2.9.1', '575.51.03', 'cu128'),    # below 13.0's floor: the newest 12.x build
    ('2.9.1', '525.60.13', 'cu128'),    # minor-version compatibility: every 12.x build runs on 525.60.13
    ('2.9.1', '520.61.05', 'unknown'),  # 2.9 has no CUDA 11 build
    ('2.7.1', '520.61.05', 'cu118'),
    ('2.5.1', '525.60.13', 'cu124'),
    ('2.9.1', '', 'cpu'),               # a GPU without a driver version: cpu
])
def test_python_venv_torch_build_reads_the_same_table(torch_version, driver, variant):
    assert _torch_build(torch_version, driver=driver) == variant


@pytest.mark.parametrize('torch_version, cuda, variant', [
    ('2.9.1', '12.1', 'cu128'),         # the cuda role's default toolkit: the newest 12.x build
    ('2.9.1', '13.0', 'cu130'),
    ('2.9.1', '11.8', 'unknown'),
    ('2.8.0', '12.4', 'cu129'),
    ('2.7.1', '11.8', 'cu118'),
    ('2.13.0', '12.8', 'unknown'),      # a release outside the table: auto cannot choose
    ('2.13.0', '', 'cpu'),              # ... but no GPU and no CUDA: cpu
])
def test_python_venv_torch_build_follows_the_cuda_version(torch_version, cuda, variant):
    assert _torch_build(torch_version, cuda=cuda) == variant


def test_python_venv_cuda_version_and_driver_both_apply():
    assert _torch_build('2.9.1', cuda='13.0', driver='575.51.03') == 'unknown'
    assert _torch_build('2.9.1', cuda='12.8', driver='580.65.06') == 'cu128'
    assert _torch_build('2.9.1', driver='580.65.06', gpu=False) == 'cpu'   # facts without a GPU
    assert _torch_build('2.9.1', cuda='12.1', variant='cu126') == 'cu126'  # an explicit build wins


def test_python_venv_builds_are_in_the_driver_table():
    """Every build names a CUDA release the collection's driver table knows (an unknown one makes
    the filter raise), and each release lists its builds newest CUDA first (auto takes the first)."""
    role = RoleVars('python_venv', FACTS['debian12'])
    for release, builds in role.get('python_venv__torch_builds').items():
        cudas = [(int(build[2:-1]), int(build[-1])) for build in builds]
        assert cudas and cudas == sorted(cudas, reverse=True), (release, builds)
        for major, minor in cudas:
            problems = role.render("'525.60.13' | openautoglm.deploy.cuda_driver_problems(['%d.%d'])" % (major, minor))
            assert (problems == []) == (major < 13), problems   # 525.60.13 runs 11.x and 12.x, not 13.x
