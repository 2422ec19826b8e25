# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVSwitch detection from PCI (class 0x0680) and the Fabric Manager state, on fixtures/hgx_h100.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu, gpu_ids
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths


FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'hgx_h100.yml')


@pytest.fixture
def hgx_root(tmp_path):
    """fixtures/hgx_h100.yml written out as a host tree under tmp_path."""
    with open(FIXTURE) as handle:
        spec = yaml.safe_load(handle)
    for rel, content in spec['files'].items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + '\n')
    for address, attrs in spec['pci_devices'].items():
        dev = tmp_path / 'sys' / 'bus' / 'pci' / 'devices' / address
        dev.mkdir(parents=True)
        for name, value in attrs.items():
            (dev / name).write_text(value + '\n')
    return str(tmp_path)


def test_nvswitches_found_and_not_counted_as_gpus(hgx_root):
    facts = gpu.collect(HostPaths(hgx_root), nvml_lib=None)
    assert facts['count'] == 2 and facts['pci_device_count'] == 2
    assert facts['nvswitch_count'] == 4
    switches = ['0000:05:00.0', '0000:06:00.0', '0000:07:00.0', '0000:08:00.0']
    assert [s['pci_bus_id'] for s in facts['nvswitches']] == switches
    assert facts['nvswitches'][0] == {'pci_bus_id': '0000:05:00.0', 'device_id': '0x22a3', 'generation': 3,
                                      'name': 'NVIDIA NVSwitch (HGX H100/H200)', 'kernel_driver': 'none'}
    # installed but its unit not enabled: required, and a note says so
    assert facts['fabric_manager'] == {'required': True, 'installed': True, 'enabled': False}
    assert any('4 NVSwitch(es)' in n and 'not enabled' in n for n in facts['notes'])


def test_enabled_fabric_manager_gives_no_note(hgx_root):
    root = hgx_root
    wants = os.path.join(root, 'etc', 'systemd', 'system', 'multi-user.target.wants')
    os.makedirs(wants)
    os.symlink('/lib/systemd/system/nvidia-fabricmanager.service', os.path.join(wants, 'nvidia-fabricmanager.service'))
    facts = gpu.collect(HostPaths(root), nvml_lib=None)
    assert facts['fabric_manager'] == {'required': True, 'installed': True, 'enabled': True}
    assert not any('NVSwitch' in n for n in facts['notes'])


def test_no_nvswitch_no_requirement(tmp_path):
    dev = tmp_path / 'sys' / 'bus' / 'pci' / 'devices' / '0000:01:00.0'
    dev.mkdir(parents=True)
    for name, value in (('vendor', '0x10de'), ('class', '0x030200'), ('device', '0x2331')):
        (dev / name).write_text(value + '\n')
    facts = gpu.collect(HostPaths(str(tmp_path)), nvml_lib=None)
    assert facts['count'] == 1 and facts['nvswitch_count'] == 0 and facts['nvswitches'] == []
    assert facts['fabric_manager'] == {'required': False, 'installed': False, 'enabled': False}


def test_unknown_nvswitch_id_is_still_an_nvswitch():
    assert gpu_ids.nvswitch_lookup(0x1234) == {'name': 'NVIDIA NVSwitch (device 0x1234)', 'generation': None}
    assert gpu_ids.nvswitch_lookup(0x1af1)['generation'] == 2
