# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nvme_facts module: arguments and result shape.

The host is built in tmp_path by test_nvme.Host (sysfs has symlink cycles, e.g. a
namespace's ``device`` link back to its controller, which pytest's collector would chase
in a committed tree): SATA boot disk sda (/ on sda2), one 3.84 TB NVMe nvme0n1 with one
partition mounted on /data. /data exists, /data/models does not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import nvme
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.modules import nvme_facts
from ansible_collections.openautoglm.deploy.tests.unit.plugins.module_utils.test_nvme import (
    GB,
    TB,
    Host,
)

NVME_SIZE = 3840755982336


@pytest.fixture
def nvme_host(monkeypatch, tmp_path):
    """Module sees the fake host; stat/statvfs answer as that host's kernel would."""
    host = Host(tmp_path)
    host.sata('sda', 480103981056, [536870912, 480103981056 - 536870912 - 2 ** 20])
    host.nvme(0, [(1, NVME_SIZE, [NVME_SIZE - 2 ** 20])])
    host.mount('/', 'ext4', 'sda2', size=470 * GB, free=400 * GB)
    host.mount('/boot/efi', 'vfat', 'sda1')
    host.mount('/data', 'xfs', 'nvme0n1p1', size=3800 * GB, free=3600 * GB)
    host.write_mountinfo()
    monkeypatch.setattr(nvme_facts, 'HostPaths', lambda *args: host.paths)
    monkeypatch.setattr(nvme, '_stat', host.stat)
    monkeypatch.setattr(nvme, '_statvfs', host.statvfs)
    return host


@pytest.mark.parametrize('check_mode', [False, True])
def test_default_path_returns_only_facts(run_module, nvme_host, check_mode):
    outcome, result = run_module(nvme_facts.main, {}, check_mode=check_mode)
    assert outcome == 'exit'
    assert result['changed'] is False
    assert set(result) == set(['changed', 'ansible_facts'])
    assert list(result['ansible_facts']) == ['openautoglm_nvme']
    facts = result['ansible_facts']['openautoglm_nvme']
    assert facts['count'] == 1
    assert facts['namespace_count'] == 1
    assert facts['total_bytes'] == NVME_SIZE
    assert facts['largest_namespace_bytes'] == NVME_SIZE
    assert facts['largest_namespace_bytes'] >= 3.84 * TB
    assert facts['controllers'][0]['pcie']['current_gen'] == 4
    assert facts['path'] == {
        'path': '/data/models', 'existing_path': '/data', 'block_device': '/dev/nvme0n1p1',
        'disks': ['nvme0n1'], 'filesystem': 'xfs', 'mountpoint': '/data', 'on_nvme': True,
        'size_bytes': 3800 * GB, 'free_bytes': 3600 * GB}
    assert facts['notes'] == [
        'model path /data/models does not exist; judged its nearest existing parent /data']


@pytest.mark.parametrize('path, on_nvme, disks', [
    ('/', False, ['sda']),
    ('/etc/../data', True, ['nvme0n1']),
    ('/data/models/', True, ['nvme0n1']),
])
def test_path_option(run_module, nvme_host, path, on_nvme, disks):
    outcome, result = run_module(nvme_facts.main, {'path': path})
    assert outcome == 'exit'
    facts = result['ansible_facts']['openautoglm_nvme']
    assert facts['path']['on_nvme'] is on_nvme
    assert facts['path']['disks'] == disks


def test_no_nvme_host_does_not_fail(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(nvme_facts, 'HostPaths', lambda *args: HostPaths(str(tmp_path)))
    outcome, result = run_module(nvme_facts.main, {'path': '/data/models'})
    assert outcome == 'exit'
    facts = result['ansible_facts']['openautoglm_nvme']
    assert facts['count'] == 0
    assert facts['path']['on_nvme'] is None
    assert any(n.startswith('no NVMe controllers') for n in facts['notes'])


@pytest.mark.parametrize('args, fragments', [
    pytest.param({'paths': '/data'}, ['Unsupported parameters', 'paths'], id='unknown-option'),
    pytest.param({'path': 'data/models'}, ['path must be absolute', 'data/models'],
                 id='relative-path'),
    pytest.param({'path': ''}, ['path must be absolute'], id='empty-path'),
    pytest.param({'path': 12}, ['path must be absolute', '12'], id='path-of-wrong-type'),
])
def test_bad_arguments_fail_naming_the_option(run_module, nvme_host, args, fragments):
    outcome, result = run_module(nvme_facts.main, args)
    assert outcome == 'fail'
    for fragment in fragments:
        assert fragment in result['msg']


def test_a_regular_file_is_not_a_model_directory(run_module, tmp_path):
    weights = tmp_path / 'model.safetensors'
    weights.write_bytes(b'\0' * 16)
    outcome, result = run_module(nvme_facts.main, {'path': str(weights)})
    assert outcome == 'fail' and result['msg'] == (
        'path %s exists and is not a directory (a regular file or a device): give the directory that holds, '
        'or will hold, the model weights' % weights)
    assert weights.read_bytes() == b'\0' * 16
