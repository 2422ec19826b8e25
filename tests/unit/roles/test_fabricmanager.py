# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nvidia_driver's Fabric Manager selection, rendered from facts (no NVSwitch host in CI).

Debian's archive has no nvidia-fabricmanager package, so molecule cannot install it; the
selection (when, which package, which exact version) is tested here as data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from role_vars import FACTS, ROLES, RoleVars


def _role(release, nvswitches, **extra):
    facts = dict(FACTS[release], openautoglm_gpu={'count': 8, 'nvswitch_count': nvswitches})
    return RoleVars('nvidia_driver', facts, **extra)


@pytest.mark.parametrize('setting, nvswitches, wanted', [
    ('auto', 4, True), ('auto', 0, False), ('always', 0, True), ('never', 4, False),
])
def test_when_fabric_manager_is_wanted(setting, nvswitches, wanted):
    assert _role('ubuntu2204', nvswitches, nvidia_driver_fabricmanager=setting).get('__nvidia_driver_fm_wanted') \
        is wanted


@pytest.mark.parametrize('release, extra, name', [
    # pinned driver: exactly that version
    ('ubuntu2204', dict(nvidia_driver_version='535.216.03'), 'nvidia-fabricmanager-535=535.216.03*'),
    ('ubuntu2004', dict(nvidia_driver_version='535.216.03'), 'nvidia-fabricmanager-535=535.216.03*'),
    ('rocky9', dict(nvidia_driver_version='535.216.03', nvidia_driver_source='cuda_repo'),
     'nvidia-fabric-manager-535.216.03'),
    # driver left alone: the loaded version
    ('ubuntu2404', dict(nvidia_driver_branch='550', __nvidia_driver_satisfied=True,
                        __nvidia_driver_loaded_version='550.127.05'), 'nvidia-fabricmanager-550=550.127.05*'),
    # driver just installed: the installed package's version, without the Debian revision
    ('debian12', dict(nvidia_driver_source='cuda_repo', __nvidia_driver_satisfied=False,
                      __nvidia_driver_packages=['cuda-drivers-535']),
     'nvidia-fabricmanager-535=535.216.03*'),
    ('centos_stream8', dict(nvidia_driver_source='dnf_module', __nvidia_driver_satisfied=False,
                            __nvidia_driver_packages=['@nvidia-driver:535-dkms']),
     'nvidia-fabric-manager-535.216.03'),
])
def test_package_at_exactly_the_driver_version(release, extra, name):
    facts = dict(FACTS[release], openautoglm_gpu={'count': 8, 'nvswitch_count': 4},
                 packages={'cuda-drivers-535': [{'version': '535.216.03-1'}],
                           'nvidia-driver': [{'version': '535.216.03'}]})
    role = RoleVars('nvidia_driver', facts, **extra)
    assert role.get('__nvidia_driver_fm_install_name') == name
    assert role.get('__nvidia_driver_fm_available') is True


def test_debian_distro_driver_has_no_fabric_manager():
    assert _role('debian12', 4).get('__nvidia_driver_fm_available') is False
    assert _role('debian12', 4, nvidia_driver_source='cuda_repo').get('__nvidia_driver_fm_available') is True


def test_fabric_manager_tasks_hold_and_enable_it():
    with open(os.path.join(ROLES, 'nvidia_driver', 'tasks', 'fabricmanager.yml')) as handle:
        tasks = yaml.safe_load(handle)
    modules = dict((t['name'], [k for k in t if '.' in k][0]) for t in tasks)
    assert modules['Hold Fabric Manager with the driver'] == 'ansible.builtin.dpkg_selections'
    assert modules['Lock the Fabric Manager version with the driver'] == 'community.general.dnf_versionlock'
    enable = [t for t in tasks if t['name'] == 'Enable and start Fabric Manager'][0]
    assert enable['ansible.builtin.systemd_service']['name'] == 'nvidia-fabricmanager'
    with open(os.path.join(ROLES, 'nvidia_driver', 'tasks', 'main.yml')) as handle:
        main = yaml.safe_load(handle)
    names = [t['name'] for t in main]
    assert names.index('Install NVIDIA Fabric Manager on NVSwitch systems') > names.index('Install the driver for the OS family')
