#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fio_probe
short_description: Measure random and sequential read performance of the model store with fio
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Runs fio against a B(test file) in the directory that holds (or will hold) the model
    weights, never against a raw device. Two jobs run one after the other - 4k random reads at
    high queue depth (O(randread_numjobs) x O(randread_iodepth) outstanding I/Os), and 1M
    sequential reads, as model loading does - each for O(runtime) seconds.
  - fio lays the test file out by writing it (O(size) bytes); the file is removed afterwards
    unless O(keep_file) is set. The filesystem needs O(size) free space plus 5%.
  - Judges the results against the thresholds (IOPS, p99 latency, MB/s) and says whether the
    directory is on NVMe, as reported by M(openautoglm.deploy.nvme_facts) and passed in
    O(on_nvme). The module itself does not fail on a shortfall; RV(passed) and RV(summary) say.
  - When O(path) does not exist yet, its nearest existing parent is probed - the filesystem
    the directory will be created on.
attributes:
  check_mode:
    support: full
    description: In check mode fio does not run; RV(ran) is V(false).
  diff_mode:
    support: none
    description: Nothing is changed (the test file is removed again).
options:
  path:
    description: Absolute path of the model directory.
    type: path
    required: true
  size:
    description: Size of the test file, as fio reads it (V(1G) = 1 GiB). Larger than the page cache is not needed with O(direct).
    type: str
    default: 1G
  runtime:
    description: Seconds each job runs.
    type: int
    default: 10
  randread_bs:
    description: Block size of the random-read job.
    type: str
    default: 4k
  randread_iodepth:
    description: Queue depth of each random-read job.
    type: int
    default: 64
  randread_numjobs:
    description: Parallel random-read jobs (threads), each with O(randread_iodepth) I/Os in flight.
    type: int
    default: 4
  seqread_bs:
    description: Block size of the sequential-read job.
    type: str
    default: 1M
  seqread_iodepth:
    description: Queue depth of the sequential-read job.
    type: int
    default: 16
  ioengine:
    description: fio I/O engine.
    type: str
    choices: [libaio, io_uring, psync, posixaio]
    default: libaio
  direct:
    description: Use O_DIRECT (bypass the page cache). Filesystems without O_DIRECT support (tmpfs) need V(false).
    type: bool
    default: true
  fio_path:
    description: fio binary; by default C(fio) from the PATH.
    type: path
  min_randread_iops:
    description: Minimum 4k random-read IOPS.
    type: int
    default: 100000
  max_randread_p99_latency_us:
    description: Maximum p99 completion latency of the random reads, microseconds; V(0) skips the check.
    type: int
    default: 2000
  min_seqread_mb_per_second:
    description: Minimum sequential-read throughput, decimal MB/s (10^6 bytes/s).
    type: int
    default: 1500
  on_nvme:
    description:
      - Whether O(path) is on NVMe, from C(ansible_facts.openautoglm_nvme.path.on_nvme); V(null) means unknown.
    type: bool
  disks:
    description: Disks behind O(path) (C(ansible_facts.openautoglm_nvme.path.disks)), named in the verdict.
    type: list
    elements: str
    default: []
  notes:
    description: Why the backing device is unknown (C(ansible_facts.openautoglm_nvme.notes)), named in the verdict.
    type: list
    elements: str
    default: []
  require_nvme:
    description: Fail the verdict (not only warn) when O(path) is not known to be on NVMe.
    type: bool
    default: false
  keep_file:
    description: Keep the test file for the next run (fio then skips laying it out).
    type: bool
    default: false
  skip_if_missing:
    description: Without fio, return RV(ran=false) and a verdict saying so instead of failing.
    type: bool
    default: false
notes:
  - The fio package of Debian/Ubuntu provides the binary (the perf_probe role installs it).
seealso:
  - module: openautoglm.deploy.nvme_facts
"""

EXAMPLES = r"""
- name: Find out whether the model directory is on NVMe
  openautoglm.deploy.nvme_facts:
    path: /data/models

- name: Probe the model store
  openautoglm.deploy.fio_probe:
    path: /data/models
    on_nvme: "{{ ansible_facts.openautoglm_nvme.path.on_nvme }}"
    disks: "{{ ansible_facts.openautoglm_nvme.path.disks }}"
    min_randread_iops: 200000
  register: storage

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ storage.summary }}"
"""

RETURN = r"""
ran:
  description: Whether fio ran (not in check mode, not when fio is missing and O(skip_if_missing)).
  returned: always
  type: bool
probe_dir:
  description: Directory the test file was placed in (O(path) or its nearest existing parent).
  returned: always
  type: str
  sample: /data
passed:
  description: Whether every check passed; V(null) when fio did not run.
  returned: always
  type: bool
summary:
  description: One-line verdict, including whether the directory is on NVMe.
  returned: always
  type: str
  sample: "FAIL: /data/models is not on NVMe (it is on vda). 41 200 IOPS 4k random read (p99 5 800 us), 850.3 MB/s sequential read; below threshold: ..."
checks:
  description: Each check with measured and required values.
  returned: when fio ran
  type: list
  elements: dict
  contains:
    name:
      description: randread_iops, randread_p99_latency, seqread_throughput or on_nvme.
      type: str
    status:
      description: pass, warn, fail or skip.
      type: str
    measured:
      description: Measured value.
      type: raw
    required:
      description: Threshold.
      type: raw
    unit:
      description: Unit of both values.
      type: str
    message:
      description: The check in words.
      type: str
shortfalls:
  description: Messages of the failed checks.
  returned: always
  type: list
  elements: str
warnings_list:
  description: Messages of the checks that only warn (for example not on NVMe without O(require_nvme)).
  returned: always
  type: list
  elements: str
measurements:
  description: Per job (randread, seqread) iops, bandwidth_bytes_per_second, mean_latency_us, p99_latency_us, io_bytes, runtime_ms.
  returned: when fio ran
  type: dict
fio_version:
  description: Output of C(fio --version).
  returned: when fio was found
  type: str
  sample: fio-3.33
cmd:
  description: The fio command line.
  returned: when fio ran
  type: list
  elements: str
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.openautoglm.deploy.plugins.module_utils.perf import (
    PROBE_FILE, fio_jobs, parse_fio, storage_verdict)

_UNITS = {'': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4}


def size_bytes(text):
    """fio size string ('512M', '1g', '4096') -> bytes (fio's default base 1024)."""
    match = re.match(r'^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$', text, re.IGNORECASE)
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def nearest_existing_dir(path):
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            size=dict(type='str', default='1G'),
            runtime=dict(type='int', default=10),
            randread_bs=dict(type='str', default='4k'),
            randread_iodepth=dict(type='int', default=64),
            randread_numjobs=dict(type='int', default=4),
            seqread_bs=dict(type='str', default='1M'),
            seqread_iodepth=dict(type='int', default=16),
            ioengine=dict(type='str', default='libaio', choices=['libaio', 'io_uring', 'psync', 'posixaio']),
            direct=dict(type='bool', default=True),
            fio_path=dict(type='path'),
            min_randread_iops=dict(type='int', default=100000),
            max_randread_p99_latency_us=dict(type='int', default=2000),
            min_seqread_mb_per_second=dict(type='int', default=1500),
            on_nvme=dict(type='bool'),
            disks=dict(type='list', elements='str', default=[]),
            notes=dict(type='list', elements='str', default=[]),
            require_nvme=dict(type='bool', default=False),
            keep_file=dict(type='bool', default=False),
            skip_if_missing=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.isabs(p['path']):
        module.fail_json(msg='path must be absolute, got %r: give the full path of the model directory' % p['path'])
    size = size_bytes(p['size'])
    if not size:
        module.fail_json(msg='size must be a byte count with an optional k/M/G/T suffix such as 1G, got %r' % p['size'])
    for name in ('runtime', 'randread_iodepth', 'randread_numjobs', 'seqread_iodepth'):
        if p[name] < 1:
            module.fail_json(msg='%s must be >= 1, got %d' % (name, p[name]))

    probe_dir = nearest_existing_dir(p['path'])
    result = dict(changed=False, ran=False, probe_dir=probe_dir, passed=None, shortfalls=[], warnings_list=[])

    fio = p['fio_path'] or module.get_bin_path('fio')
    if not fio or not os.access(fio, os.X_OK):
        msg = ('fio is not installed on this host (%s): install the fio package, or point fio_path at a fio '
               'binary' % (p['fio_path'] or 'not on the PATH'))
        if p['skip_if_missing']:
            result.update(summary='NOT RUN: ' + msg, msg=msg)
            module.exit_json(**result)
        module.fail_json(msg=msg, **result)
    rc, out, err = module.run_command([fio, '--version'])
    result['fio_version'] = out.strip() if rc == 0 else None

    if module.check_mode:
        result.update(summary='NOT RUN: check mode', msg='check mode: fio not run')
        module.exit_json(**result)

    stat = os.statvfs(probe_dir)
    free = stat.f_bavail * stat.f_frsize
    test_file = os.path.join(probe_dir, PROBE_FILE)
    existing = os.path.getsize(test_file) if os.path.isfile(test_file) else 0
    if free + existing < size * 1.05:
        module.fail_json(msg='%s has %.1f GB free, the fio test file needs %.1f GB (size=%s): free space or lower '
                             'size' % (probe_dir, free / 1e9, size * 1.05 / 1e9, p['size']), **result)

    cmd = [fio] + fio_jobs(test_file, p['size'], p['runtime'], p['randread_iodepth'], p['randread_bs'],
                           p['randread_numjobs'], p['seqread_bs'], p['seqread_iodepth'], p['ioengine'],
                           p['direct'])
    result['cmd'] = cmd
    try:
        rc, out, err = module.run_command(cmd, cwd=probe_dir)
    finally:
        if not p['keep_file'] and os.path.exists(test_file):
            os.remove(test_file)
    start = out.find('{')
    try:
        report = json.loads(out[start:]) if start >= 0 else None
        results = parse_fio(report) if report else None
    except ValueError as exc:
        results = None
        err = '%s\n%s' % (err, exc)
    if rc != 0 or results is None:
        hint = ''
        if 'Invalid argument' in (err + out) and p['direct']:
            hint = ' (the filesystem may not support O_DIRECT: try direct=false)'
        module.fail_json(msg='fio failed on %s with rc %d%s: %s' % (test_file, rc, hint, (err or out).strip()[-2000:]),
                         **result)

    verdict = storage_verdict(
        results, p['path'], p['on_nvme'], p['disks'], p['min_randread_iops'], p['max_randread_p99_latency_us'],
        p['min_seqread_mb_per_second'], p['require_nvme'], p['notes'])
    result.update(ran=True, measurements=results, passed=verdict['passed'], checks=verdict['checks'],
                  shortfalls=verdict['shortfalls'], warnings_list=verdict['warnings'], summary=verdict['summary'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
