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


@pytest.mark.parametrize('driver, variant', [
    ('525.60.13', 'cu121'),     # minor-version compatibility: cu121 wheels run on 525.60.13
    ('520.61.05', 'cu118'),
    ('', 'cpu'),
])
def test_python_venv_torch_build_reads_the_same_table(driver, variant):
    facts = dict(FACTS['debian12'], openautoglm_gpu={'count': 1, 'driver_version': driver})
    role = RoleVars('python_venv', facts, python_venv_cuda_version='')
    assert role.render("lookup('ansible.builtin.template', role_path ~ '/templates/torch_variant.j2') | trim") \
        == variant
