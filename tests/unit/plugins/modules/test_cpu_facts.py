# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cpu_facts module over a fixture topology tree (HostPaths patched)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.modules import cpu_facts
from ansible_collections.openautoglm.deploy.tests.unit.plugins.module_utils.test_cpu import build_topology


@pytest.mark.parametrize('check_mode', [False, True])
def test_returns_only_facts_and_unchanged(run_module, tmp_path, monkeypatch, check_mode):
    build_topology(tmp_path, sockets=2, cores=8, threads=2)
    monkeypatch.setattr(cpu_facts, 'HostPaths', lambda: HostPaths(str(tmp_path)))

    status, result = run_module(cpu_facts.main, {}, check_mode=check_mode)

    assert status == 'exit'
    assert result == {
        'changed': False,
        'ansible_facts': {'openautoglm_cpu': {
            'logical_cpus': 32,
            'physical_cores': 16,
            'sockets': 2,
            'threads_per_core': 2,
            'model': 'AMD EPYC 9124 16-Core Processor',
            'usable_cpus': None,
            'notes': [],
        }},
    }


def test_live_host_has_at_least_one_cpu(run_module):
    # Read-only on the real /sys and /proc: whatever the machine, one CPU is online.
    status, result = run_module(cpu_facts.main, {})
    facts = result['ansible_facts']['openautoglm_cpu']
    assert status == 'exit'
    assert facts['logical_cpus'] >= 1
    assert 1 <= facts['physical_cores'] <= facts['logical_cpus']
    assert 1 <= facts['usable_cpus'] <= facts['logical_cpus']


def test_unknown_option_fails(run_module, monkeypatch):
    monkeypatch.setattr(cpu_facts.cpu, 'collect', lambda paths: pytest.fail('collected despite bad args'))
    status, result = run_module(cpu_facts.main, {'cores': 16})
    assert status == 'fail'
    assert re.match(r'^Unsupported parameters for \(\S+\) module: cores\. Supported parameters include: \.$',
                    result['msg']), result['msg']
