# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_facts module: argument handling and result shape, against fixture trees."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.modules import memory_facts

GIB = 1024 ** 3


@pytest.fixture
def host_root(monkeypatch, fixture_root):
    """Point the module at a named fixture tree instead of the live /sys and /proc."""

    def _use(name):
        root = fixture_root(name)
        monkeypatch.setattr(memory_facts, 'HostPaths', lambda *args: HostPaths(root))
        return root

    return _use


@pytest.mark.parametrize('check_mode', [False, True])
def test_vm_returns_only_facts(run_module, host_root, check_mode):
    host_root('memory_vm')
    outcome, result = run_module(memory_facts.main, {}, check_mode=check_mode)
    assert outcome == 'exit'
    assert result['changed'] is False
    assert set(result) == set(['changed', 'ansible_facts'])
    assert list(result['ansible_facts']) == ['openautoglm_memory']
    facts = result['ansible_facts']['openautoglm_memory']
    assert facts['installed_bytes'] == 16 * GIB
    assert facts['installed_source'] == 'memory_blocks'
    assert facts['visible_bytes'] == 16375476 * 1024
    assert facts['ecc'] == 'unknown'
    assert facts['dimms'] == []
    assert 'no EDAC memory controllers' in facts['notes']
    assert any(note.startswith('SMBIOS tables not readable') for note in facts['notes'])


def test_edac_host(run_module, host_root):
    host_root('memory_edac')
    outcome, result = run_module(memory_facts.main, {})
    assert outcome == 'exit'
    facts = result['ansible_facts']['openautoglm_memory']
    assert facts['ecc'] == 'yes'
    assert facts['ecc_source'] == 'edac'
    assert facts['ecc_type'] == 'SECDED'
    assert facts['edac_controllers'] == 2
    assert facts['edac_ce_count'] == 5
    assert facts['edac_ue_count'] == 0
    assert facts['installed_source'] == 'meminfo'


def test_empty_root_does_not_fail(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(memory_facts, 'HostPaths', lambda *args: HostPaths(str(tmp_path)))
    outcome, result = run_module(memory_facts.main, {})
    assert outcome == 'exit'
    facts = result['ansible_facts']['openautoglm_memory']
    assert facts['installed_bytes'] is None
    assert facts['ecc'] == 'unknown'
    assert facts['notes']


@pytest.mark.parametrize('args, name', [
    ({'path': '/data'}, 'path'),
    ({'gather_subset': ['all']}, 'gather_subset'),
])
def test_unknown_option_fails(run_module, host_root, args, name):
    host_root('memory_vm')
    outcome, result = run_module(memory_facts.main, args)
    assert outcome == 'fail'
    assert 'Unsupported parameters' in result['msg']
    assert name in result['msg']
