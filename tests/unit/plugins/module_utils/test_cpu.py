# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cpu.collect() over sysfs topology trees built in tmp_path.

Linux numbers the first hardware thread of every core first (cpu0-7 on socket 0, cpu8-15
on socket 1 for 2 x 8 cores) and their SMT siblings after; core_id restarts at 0 on each
socket, so physical cores must be counted as distinct (package, core) pairs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import cpu
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths

EPYC_CPUINFO = (
    'processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n'
    'model name\t: AMD EPYC 9124 16-Core Processor\nstepping\t: 1\n\n'
    'processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9124 16-Core Processor\n\n')


def _write(path, text):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with open(path, 'w') as handle:
        handle.write(text)


def add_cpu(root, num, package=None, core=None, online=None):
    """cpu<num> dir; topology files when package/core given; 'online' file when online given."""
    cpu_dir = os.path.join(str(root), 'sys', 'devices', 'system', 'cpu', 'cpu%d' % num)
    if not os.path.isdir(cpu_dir):
        os.makedirs(cpu_dir)
    if package is not None:
        _write(os.path.join(cpu_dir, 'topology', 'physical_package_id'), '%d\n' % package)
    if core is not None:
        _write(os.path.join(cpu_dir, 'topology', 'core_id'), '%d\n' % core)
    if online is not None:
        _write(os.path.join(cpu_dir, 'online'), '%d\n' % online)


def build_topology(root, sockets, cores, threads, offline=(), cpuinfo=EPYC_CPUINFO):
    """Linux-ordered topology; CPUs in *offline* have online=0 and no topology dir."""
    per_pass = sockets * cores
    for num in range(sockets * cores * threads):
        socket = (num % per_pass) // cores
        core = num % cores
        if num in offline:
            add_cpu(root, num, online=0)
        else:
            add_cpu(root, num, socket, core, online=None if num == 0 else 1)
    base = os.path.join(str(root), 'sys', 'devices', 'system', 'cpu')
    # Siblings of the cpuN dirs that must not be counted.
    for extra in ('cpufreq', 'cpuidle', 'smt', 'vulnerabilities'):
        os.makedirs(os.path.join(base, extra))
    _write(os.path.join(base, 'online'), '0-%d\n' % (sockets * cores * threads - 1))
    if cpuinfo is not None:
        _write(os.path.join(str(root), 'proc', 'cpuinfo'), cpuinfo)


def test_two_sockets_eight_cores_two_threads(tmp_path):
    build_topology(tmp_path, sockets=2, cores=8, threads=2)
    assert cpu.collect(HostPaths(str(tmp_path))) == {
        'logical_cpus': 32,
        'physical_cores': 16,
        'sockets': 2,
        'threads_per_core': 2,
        'model': 'AMD EPYC 9124 16-Core Processor',
        'usable_cpus': None,   # only read on the live host
        'notes': [],
    }


@pytest.mark.parametrize('sockets, cores, threads, logical, physical', [
    (1, 4, 1, 4, 4),
    (1, 16, 2, 32, 16),
    (2, 8, 2, 32, 16),
    (2, 32, 2, 128, 64),
    (4, 4, 1, 16, 16),
])
def test_topology_table(tmp_path, sockets, cores, threads, logical, physical):
    build_topology(tmp_path, sockets, cores, threads)
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores'], facts['sockets'], facts['threads_per_core']) == (
        logical, physical, sockets, threads)
    assert facts['notes'] == []


def test_offline_smt_siblings_skipped(tmp_path):
    # SMT switched off: cpu16-31 offline, one thread per core remains.
    build_topology(tmp_path, sockets=2, cores=8, threads=2, offline=range(16, 32))
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores'], facts['sockets'], facts['threads_per_core']) == (
        16, 16, 2, 1)


def test_offline_cpu_with_stale_topology_is_not_counted(tmp_path):
    build_topology(tmp_path, sockets=1, cores=4, threads=2)
    # cpu3 and its sibling cpu7 offline but still showing topology files.
    add_cpu(tmp_path, 3, 0, 3, online=0)
    add_cpu(tmp_path, 7, 0, 3, online=0)
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores']) == (6, 3)


def test_cpu0_without_online_file_is_online(tmp_path):
    add_cpu(tmp_path, 0, 0, 0)
    add_cpu(tmp_path, 1, 0, 1, online=1)
    add_cpu(tmp_path, 2, 0, 2, online=0)
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores'], facts['sockets']) == (2, 2, 1)


def test_no_topology_assumes_physical_equals_logical(tmp_path):
    for num in range(6):
        add_cpu(tmp_path, num)
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert facts == {
        'logical_cpus': 6,
        'physical_cores': 6,
        'sockets': None,
        'threads_per_core': 1,
        'model': None,
        'usable_cpus': None,
        'notes': ['no CPU topology in sysfs: physical cores assumed equal to logical CPUs'],
    }


def test_no_sysfs_cpus_counts_cpuinfo_processors(tmp_path):
    _write(os.path.join(str(tmp_path), 'proc', 'cpuinfo'),
           ''.join('processor\t: %d\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n\n' % n
                   for n in range(4)))
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores'], facts['threads_per_core'], facts['sockets']) == (
        4, 4, 1, None)
    assert facts['model'] == 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz'
    assert facts['notes'] == ['no CPU topology in sysfs: physical cores assumed equal to logical CPUs']


def test_nothing_readable(tmp_path):
    facts = cpu.collect(HostPaths(str(tmp_path)))
    assert (facts['logical_cpus'], facts['physical_cores'], facts['threads_per_core'], facts['model']) == (
        0, 0, None, None)


@pytest.mark.parametrize('cpuinfo, model', [
    pytest.param(EPYC_CPUINFO, 'AMD EPYC 9124 16-Core Processor', id='x86-model-name'),
    pytest.param('processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\n'
                 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n',
                 'Raspberry Pi 4 Model B Rev 1.4', id='arm-Model'),
    pytest.param('system type\t\t: MT7621\nprocessor\t\t: 0\ncpu model\t\t: MIPS 1004Kc V2.15\n',
                 'MIPS 1004Kc V2.15', id='mips-cpu-model'),
    pytest.param('processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n', None, id='arm-no-model'),
    pytest.param('', None, id='empty'),
])
def test_cpuinfo_model(tmp_path, cpuinfo, model):
    build_topology(tmp_path, 1, 2, 1, cpuinfo=cpuinfo)
    assert cpu.collect(HostPaths(str(tmp_path)))['model'] == model


def test_usable_cpus_read_on_live_host_only(monkeypatch):
    monkeypatch.setattr(cpu.os, 'sched_getaffinity', lambda pid: set([0, 1, 2]), raising=False)
    assert cpu.collect(HostPaths('/'))['usable_cpus'] == 3
