# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_facts module: fixture sysfs tree (HostPaths patched) and a fake pynvml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.modules import gpu_facts
from ansible_collections.openautoglm.deploy.tests.unit.plugins.module_utils.test_gpu import (
    DRIVER_NOT_LOADED, H100, RTX_3090, FakeNvml, add_pci_gpu, make, write_modules)


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """Point the module at tmp_path instead of / and install a fake pynvml."""
    monkeypatch.setattr(gpu_facts, 'HostPaths', lambda: HostPaths(str(tmp_path)))

    def _install(lib):
        monkeypatch.setattr(gpu.nvml, 'pynvml', lib)
        return lib
    return _install


@pytest.mark.parametrize('check_mode', [False, True])
def test_returns_only_facts_and_unchanged(run_module, tmp_path, fake_host, check_mode):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330)
    add_pci_gpu(tmp_path, '0000:65:00.0', device=0x2204)
    write_modules(tmp_path, ['nvidia'])
    lib = fake_host(FakeNvml([make(H100), make(RTX_3090)], cuda=12020))

    status, result = run_module(gpu_facts.main, {}, check_mode=check_mode)

    assert status == 'exit'
    assert sorted(result) == ['ansible_facts', 'changed']
    assert result['changed'] is False
    assert list(result['ansible_facts']) == ['openautoglm_gpu']
    facts = result['ansible_facts']['openautoglm_gpu']
    assert (facts['source'], facts['count'], facts['cuda_driver_version']) == ('nvml', 2, '12.2')
    assert [d['name'] for d in facts['devices']] == ['NVIDIA H100 80GB HBM3', 'NVIDIA GeForce RTX 3090']
    assert facts['total_memory_bytes'] == 85520809984 + 25769803776
    assert lib.calls == ['nvmlInit', 'nvmlShutdown']


def test_driver_not_loaded_uses_pci_table(run_module, tmp_path, fake_host):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, driver='nouveau')
    write_modules(tmp_path, ['nouveau'])
    fake_host(FakeNvml([make(H100)], init_error=DRIVER_NOT_LOADED))
    status, result = run_module(gpu_facts.main, {})
    facts = result['ansible_facts']['openautoglm_gpu']
    assert status == 'exit'
    assert (facts['source'], facts['count'], facts['nvml_error'], facts['nouveau_loaded']) == (
        'pci', 1, 'Driver Not Loaded', True)
    assert (facts['devices'][0]['name'], facts['devices'][0]['kernel_driver'],
            facts['devices'][0]['memory_total_bytes']) == ('NVIDIA H100 SXM5 80GB', 'nouveau', 80 * 10 ** 9)


def test_gpu_less_host_without_nvml_bindings(run_module, fake_host):
    fake_host(None)
    status, result = run_module(gpu_facts.main, {})
    facts = result['ansible_facts']['openautoglm_gpu']
    assert status == 'exit'
    assert (facts['count'], facts['devices'], facts['source']) == (0, [], 'pci')
    assert 'nvidia-ml-py' in facts['nvml_error']
    assert facts['notes'] == ['no NVIDIA GPU found (NVML and PCI scan)']


def test_reads_the_live_root_by_default(run_module, monkeypatch):
    seen = []
    monkeypatch.setattr(gpu_facts.gpu, 'collect', lambda paths: seen.append(paths.root) or {'count': 0})
    status, result = run_module(gpu_facts.main, {})
    assert (status, seen) == ('exit', ['/'])
    assert result['ansible_facts'] == {'openautoglm_gpu': {'count': 0}}


def test_unknown_option_fails(run_module, monkeypatch):
    monkeypatch.setattr(gpu_facts.gpu, 'collect', lambda paths: pytest.fail('collected despite bad args'))
    status, result = run_module(gpu_facts.main, {'index': 0})
    assert status == 'fail'
    assert re.match(r'^Unsupported parameters for \(\S+\) module: index\. Supported parameters include: \.$',
                    result['msg']), result['msg']
