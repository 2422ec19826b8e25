# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fio_probe module with run_command mocked (the fio output is a real fio 3.33 run)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import namedtuple

import pytest

from ansible.module_utils import basic

from ansible_collections.openautoglm.deploy.plugins.modules import fio_probe

FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'perf', 'fio-3.33.json')
StatVfs = namedtuple('StatVfs', 'f_bavail f_frsize')


@pytest.fixture
def fio(monkeypatch, tmp_path):
    """A fake fio binary path and a run_command that lays out the test file like fio does."""
    binary = tmp_path / 'fio'
    binary.write_text('#!/bin/sh\n')
    binary.chmod(0o755)
    calls = []
    with open(FIXTURE) as handle:
        output = handle.read()
    state = {'rc': 0, 'out': output, 'err': ''}

    def run_command(self, args, **kwargs):
        calls.append((list(args), kwargs))
        if args[1:] == ['--version']:
            return 0, 'fio-3.33\n', ''
        name = [a for a in args if a.startswith('--filename=')][0].split('=', 1)[1]
        with open(name, 'w') as handle:   # fio writes the test file before reading it
            handle.write('x')
        return state['rc'], state['out'], state['err']

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    return {'path': str(binary), 'calls': calls, 'state': state, 'dir': tmp_path}


def test_runs_fio_on_a_test_file_and_removes_it(run_module, fio):
    models = fio['dir'] / 'models'
    status, result = run_module(fio_probe.main, {'path': str(models), 'fio_path': fio['path'], 'on_nvme': False,
                                                 'disks': ['vda'], 'min_randread_iops': 1000,
                                                 'max_randread_p99_latency_us': 0, 'min_seqread_mb_per_second': 10})
    assert status == 'exit', result
    assert result['ran'] and result['passed'] and not result['changed']
    assert result['probe_dir'] == str(fio['dir'])       # models/ does not exist: its filesystem
    assert result['fio_version'] == 'fio-3.33'
    assert result['summary'].startswith('PASS: %s is not on NVMe (it is on vda).' % models)
    assert result['warnings_list'] == ['%s is not on NVMe (it is on vda)' % models]
    argv, kwargs = fio['calls'][-1]
    test_file = os.path.join(str(fio['dir']), '.openautoglm-fio-probe')
    assert argv[0] == fio['path'] and '--filename=%s' % test_file in argv
    assert not os.path.exists(test_file)
    assert result['measurements']['randread']['iops'] > 1000


def test_shortfalls_do_not_fail_the_module(run_module, fio):
    status, result = run_module(fio_probe.main, {'path': str(fio['dir']), 'fio_path': fio['path'], 'on_nvme': True,
                                                 'min_randread_iops': 10 ** 9, 'require_nvme': True})
    assert status == 'exit'
    assert result['passed'] is False
    assert result['shortfalls'][0].startswith('4k random read: ')
    assert result['shortfalls'][0].endswith('need >= 1 000 000 000')
    assert result['summary'].startswith('FAIL: %s is on NVMe' % fio['dir'])


def test_keep_file(run_module, fio):
    status, result = run_module(fio_probe.main, {'path': str(fio['dir']), 'fio_path': fio['path'], 'keep_file': True})
    assert status == 'exit'
    assert os.path.exists(os.path.join(str(fio['dir']), '.openautoglm-fio-probe'))


def test_check_mode_runs_nothing(run_module, fio):
    status, result = run_module(fio_probe.main, {'path': str(fio['dir']), 'fio_path': fio['path']}, check_mode=True)
    assert status == 'exit'
    assert result['ran'] is False and result['passed'] is None
    assert [c[0][1:] for c in fio['calls']] == [['--version']]


def test_fio_error_fails_with_its_message_and_removes_the_file(run_module, fio):
    fio['state'].update(rc=1, out='', err='fio: looks like your file system does not support direct=1/buffered=0\n'
                                          'fio: destination does not support O_DIRECT\nInvalid argument')
    status, result = run_module(fio_probe.main, {'path': str(fio['dir']), 'fio_path': fio['path']})
    assert status == 'fail'
    assert 'fio failed on' in result['msg'] and 'try direct=false' in result['msg']
    assert not os.path.exists(os.path.join(str(fio['dir']), '.openautoglm-fio-probe'))


def test_missing_fio(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda self, *a, **k: None)
    status, result = run_module(fio_probe.main, {'path': str(tmp_path)})
    assert status == 'fail'
    assert result['msg'].startswith('fio is not installed on this host (not on the PATH): install the fio package')
    status, result = run_module(fio_probe.main, {'path': str(tmp_path), 'skip_if_missing': True})
    assert status == 'exit' and result['ran'] is False
    assert result['summary'].startswith('NOT RUN: fio is not installed')


def test_not_enough_space(run_module, fio, monkeypatch):
    monkeypatch.setattr(fio_probe.os, 'statvfs', lambda path: StatVfs(f_bavail=1000, f_frsize=4096))
    status, result = run_module(fio_probe.main, {'path': str(fio['dir']), 'fio_path': fio['path'], 'size': '1G'})
    assert status == 'fail'
    assert 'GB free, the fio test file needs 1.1 GB (size=1G)' in result['msg']
    assert len(fio['calls']) == 1   # only --version


@pytest.mark.parametrize('args, message', [
    ({'path': 'data/models'}, 'path must be absolute'),
    ({'path': '/data', 'size': 'lots'}, 'size must be a byte count'),
    ({'path': '/data', 'runtime': 0}, 'runtime must be >= 1'),
    ({'path': '/data', 'ioengine': 'spdk'}, 'value of ioengine must be one of'),
])
def test_bad_arguments(run_module, args, message):
    status, result = run_module(fio_probe.main, args)
    assert status == 'fail'
    assert message in result['msg']


@pytest.mark.parametrize('text, value', [('1G', 1024 ** 3), ('64m', 64 * 1024 ** 2), ('4096', 4096), ('2GiB', 2 * 1024 ** 3),
                                         ('x', None), ('', None)])
def test_size_bytes(text, value):
    assert fio_probe.size_bytes(text) == value
