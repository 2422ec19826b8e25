# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CPU topology from sysfs: logical CPUs, physical cores, sockets, model."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import list_dir, read_int, read_text

_CPU_DIR = re.compile(r'^cpu\d+$')


def collect(paths):
    """Return the ``openautoglm_cpu`` facts dict (see the cpu_facts documentation)."""
    base = paths.sys('devices', 'system', 'cpu')
    cores = set()
    packages = set()
    logical = 0
    for name in list_dir(base):
        if not _CPU_DIR.match(name):
            continue
        cpu = os.path.join(base, name)
        if read_int(os.path.join(cpu, 'online'), default=1) == 0:
            continue  # offline CPUs (cpu0 has no 'online' file: it is always online)
        logical += 1
        package = read_int(os.path.join(cpu, 'topology', 'physical_package_id'))
        core = read_int(os.path.join(cpu, 'topology', 'core_id'))
        if package is not None and core is not None:
            cores.add((package, core))
            packages.add(package)
    cpuinfo = read_text(paths.proc('cpuinfo'), default='')
    model = None
    for line in cpuinfo.splitlines():
        key, dummy, value = line.partition(':')
        if key.strip() in ('model name', 'Model', 'cpu model'):
            model = value.strip()
            break
    if logical == 0:
        # No sysfs topology (unusual containers): count processors in /proc/cpuinfo.
        logical = len(re.findall(r'^processor\s*:', cpuinfo, re.M))
    notes = []
    if cores:
        physical = len(cores)
    else:
        physical = logical
        notes.append('no CPU topology in sysfs: physical cores assumed equal to logical CPUs')
    usable = None
    if paths.root == '/' and hasattr(os, 'sched_getaffinity'):
        usable = len(os.sched_getaffinity(0))
    return {
        'logical_cpus': logical,
        'physical_cores': physical,
        'sockets': len(packages) or None,
        'threads_per_core': (logical // physical) if physical else None,
        'model': model,
        'usable_cpus': usable,
        'notes': notes,
    }
